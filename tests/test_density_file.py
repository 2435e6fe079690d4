"""Density files: write, read, and use them with convert, Table.load and the recipes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import ndwconv
from ndwconv import Gaussian, Table, load_densities, save_densities
from ndwconv.recipes.models import build_model, make_weighted


def _reference_phi(half: list[float], ndim: int) -> torch.Tensor:
    """Φ of an odd cubic kernel from its half profile: an outer product written out."""
    profile = torch.tensor([*half, 1.0, *reversed(half)], dtype=torch.float64)
    phi = profile
    for _ in range(ndim - 1):
        phi = phi[..., None] * profile
    return phi


def test_round_trip_keeps_every_density_and_meta(tmp_path):
    path = tmp_path / "d.json"
    layers = {"a.0": Table([0.3]), "b": Table({3: [0.9], 5: [0.1, 0.6]}), "c": Gaussian(1.5)}
    meta = {"method": "direct-l", "objective": 27.5, "bounds": {"3": [[0.5, 1.5]]}}
    save_densities(path, shared=Table({3: [0.75]}), layers=layers, meta=meta)
    found = load_densities(path)
    assert found.shared == Table({3: [0.75]})
    assert dict(found.layers) == layers
    assert found.meta == meta
    document = json.loads(path.read_text())
    assert document["format"] == "ndwconv.densities/1"
    assert document["shared"] == {"family": "table", "by_size": {"3": [0.75]}}
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]  # no temporary left behind


def test_convert_takes_the_path_and_gives_each_layer_its_density(tmp_path):
    path = tmp_path / "d.json"
    save_densities(path, shared=Table({3: [0.75]}), layers={"2": Table([0.2])})
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 1, 3))
    for source in (path, str(path), load_densities(path)):
        converted = ndwconv.convert(net, source)
        phis = {name: m.phi().to(torch.float64) for name, m in ndwconv.weighted_layers(converted)}
        assert sorted(phis) == ["0", "2", "3"]
        torch.testing.assert_close(phis["0"], _reference_phi([0.75], 2))
        torch.testing.assert_close(phis["2"], _reference_phi([0.2], 2))
        torch.testing.assert_close(phis["3"], _reference_phi([0.75], 2))


def test_a_per_layer_file_skips_layers_it_does_not_name(tmp_path):
    path = tmp_path / "d.json"
    save_densities(path, layers={"1": Table([0.5])})
    net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3))
    converted, report = ndwconv.convert(net, path, return_report=True)
    assert [type(m).__name__ for m in converted] == ["Conv1d", "WeightedConv1d"]
    assert report.skipped[0].name == "0"


def test_table_load(tmp_path):
    path = tmp_path / "d.json"
    save_densities(path, shared=Table({3: [0.75]}), layers={"x": Table([0.2])})
    assert Table.load(path) == Table({3: [0.75]})
    assert Table.load(path, layer="x") == Table([0.2])
    assert Table.load(path, layer="other") == Table({3: [0.75]})
    only_layers = tmp_path / "l.json"
    save_densities(only_layers, layers={"x": Table([0.2])})
    with pytest.raises(KeyError, match=r"no shared density.*'x'"):
        Table.load(only_layers)
    gaussian = tmp_path / "g.json"
    save_densities(gaussian, shared=Gaussian(1.0))
    with pytest.raises(TypeError, match="'gaussian' density"):
        Table.load(gaussian)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "is not JSON"),
        ('{"format": "other/1", "shared": null}', "expected \"format\""),
        ('{"format": "ndwconv.densities/1"}', "needs a shared density"),
        ('{"format": "ndwconv.densities/1", "shared": {"family": "nope"}}', "unknown density"),
        ('{"format": "ndwconv.densities/1", "shared": "default", "extra": 1}', "unknown key"),
        ('{"format": "ndwconv.densities/1", "layers": {"a": [-1.0]}}', "must be finite and > 0"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_densities(path)


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_densities(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="folder"):
        save_densities(tmp_path / "no" / "d.json", shared="default")
    with pytest.raises(ValueError, match="meta is not JSON-safe"):
        save_densities(tmp_path / "d.json", shared="default", meta={"x": float("nan")})
    with pytest.raises(ValueError, match="needs a shared density"):
        save_densities(tmp_path / "d.json")
    assert not list(tmp_path.iterdir())


def test_an_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("x" * 10_000)
    save_densities(path, shared=Table({3: [0.5]}))
    assert load_densities(path).shared == Table({3: [0.5]})


def test_recipe_models_take_a_density_file(tmp_path):
    path = tmp_path / "d.json"
    save_densities(path, shared=Table({3: [0.6]}), layers={"body.0": Table([0.25])})
    net = make_weighted(build_model("dncnn", ndim=2, depth=3, width=4), str(path))
    phis = {name: m.phi().to(torch.float64) for name, m in ndwconv.weighted_layers(net)}
    names = sorted(phis)
    assert "body.0" in names and len(names) == 3
    for name in names:
        half = [0.25] if name == "body.0" else [0.6]
        torch.testing.assert_close(phis[name], _reference_phi(half, 2))
    # the document itself (what a checkpoint's description embeds) gives the same model
    again = make_weighted(
        build_model("dncnn", ndim=2, depth=3, width=4), load_densities(path).to_dict()
    )
    assert [str(m.density) for _, m in ndwconv.weighted_layers(again)] == [
        str(m.density) for _, m in ndwconv.weighted_layers(net)
    ]
    partial = tmp_path / "p.json"
    save_densities(partial, layers={"body.0": Table([0.25])})
    with pytest.raises(ValueError, match="none for layer"):
        make_weighted(build_model("dncnn", ndim=2, depth=3, width=4), str(partial))
