"""Bad input to ``ndwconv denoise`` and the denoising recipe's volume helpers, one row each.

A command-line row is ``(id, argv builder, exit code, fragment)``: usage errors exit 2
with argparse's message, every other error exits 1 with one line ``ndwconv: error: …``
and never a traceback. A Python row is ``(id, callable, exception type, fragment)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ndwconv.cli import main

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")
pytest.importorskip("safetensors")

from ndwconv.adapters.receptive import receptive_radius  # noqa: E402
from ndwconv.recipes.engine.checkpoint import save_checkpoint  # noqa: E402
from ndwconv.recipes.models import DnCNN  # noqa: E402
from ndwconv.recipes.tasks.denoise.inference import denoise_image  # noqa: E402
from ndwconv.recipes.tasks.denoise.volume_data import (  # noqa: E402
    check_block_shape,
    min_holdout_length,
)


def _checkpoint(path: Path, ndim: int) -> Path:
    torch.manual_seed(0)
    model = DnCNN(ndim=ndim, channels=1, depth=2, width=2).eval()
    meta = {
        "task": "denoise",
        "step": 0,
        "config": {},
        "description": {
            "method": "standard",
            "model": {"name": "dncnn", "depth": 2, "width": 2, "ndim": ndim},
            "density": None,
            "data": {"channels": 1},
        },
    }
    save_checkpoint(path, model, meta, rng=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    values = np.random.default_rng(0).random((12, 11, 10)).astype(np.float32)
    found = {"root": root}
    for name, data in {
        "good": values,
        "nan": np.where(values > 0.9, np.nan, values).astype(np.float32),
        "allnan": np.full((6, 6, 6), np.nan, np.float32),
        "flat2d": values[..., 0],
    }.items():
        found[name] = root / f"{name}.nii"
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(found[name]))
    found["other"] = root / "other"
    found["other"].mkdir()
    found["twin"] = root / "other" / "good.nii"
    nib.save(nib.Nifti1Image(values, np.eye(4)), str(found["twin"]))
    found["h5"] = root / "stack.h5"
    with h5py.File(found["h5"], "w") as handle:
        handle["/a"] = values
    found["file"] = root / "a-file"
    found["file"].write_text("x")
    found["taken"] = root / "taken"
    found["taken"].mkdir()
    (found["taken"] / "good.nii").write_text("an earlier result")
    found["blocked"] = root / "blocked"
    (found["blocked"] / "good.nii").mkdir(parents=True)
    found["ckpt"] = _checkpoint(root / "model3d.safetensors", 3)
    found["ckpt2d"] = _checkpoint(root / "model2d.safetensors", 2)
    return found


Argv = Callable[[dict, Path], list]


def _args(*inputs: str, out: str | None = "OUT", model: str = "ckpt", extra=()) -> Argv:
    def build(f: dict, tmp: Path) -> list:
        argv = [str(f[i]) if i in f else i for i in inputs]
        if out is not None:
            argv += ["-o", str(f[out]) if out in f else str(tmp / out)]
        return [*argv, "--model", str(f.get(model, tmp / model)), "--quiet", *extra]

    return build


CLI_ROWS: list[tuple[str, Argv, int, str]] = [
    ("tile-zero", _args("good", extra=("--tile", "0")), 2, "--tile: must be an integer ≥ 1"),
    ("tile-word", _args("good", extra=("--tile", "big")), 2, "--tile: must be an integer"),
    ("overlap-one", _args("good", extra=("--overlap", "1.0")), 2, "--overlap: must be a frac"),
    ("overlap-negative", _args("good", extra=("--overlap", "-0.1")), 2, "in [0, 1)"),
    ("overlap-nan", _args("good", extra=("--overlap", "nan")), 2, "--overlap: must be"),
    ("batch-zero", _args("good", extra=("--batch", "0")), 2, "--batch: must be an integer ≥ 1"),
    ("dtype-unknown", _args("good", extra=("--dtype", "int8")), 2, "--dtype: invalid choice"),
    ("blend-unknown", _args("good", extra=("--blend", "max")), 2, "--blend: invalid choice"),
    ("nonfinite-unknown", _args("good", extra=("--nonfinite", "drop")), 2, "--nonfinite"),
    ("no-out", _args("good", out=None), 2, "-o/--out is required"),
    (
        "out-and-output-dir",
        _args("good", extra=("--output-dir", "elsewhere")),
        2,
        "not allowed with argument -o/--out",
    ),
    ("device-unknown", _args("good", extra=("--device", "gpu0")), 1, "not a device name"),
    ("out-is-a-file", _args("good", out="file"), 1, "is a file, not a folder"),
    ("input-missing", _args("absent.nii"), 1, "absent.nii: no such file"),
    ("input-is-a-folder", _args("other"), 1, "is a folder, not a volume file"),
    ("input-twice", _args("good", "good"), 1, "listed twice"),
    ("output-is-the-input", _args("good", out="root"), 1, "is the input; choose another -o"),
    ("output-exists", _args("good", out="taken"), 1, "exists; pass --overwrite"),
    (
        "output-is-a-folder",
        _args("good", out="blocked", extra=("--overwrite",)),
        1,
        "is a folder; remove it or choose another -o folder",
    ),
    ("model-missing", _args("good", model="none.safetensors"), 1, "does not exist"),
    ("model-2d-on-volume", _args("good", model="ckpt2d"), 1, "2-D model cannot denoise"),
    ("volume-2d", _args("flat2d"), 1, "cannot denoise this 2-D volume"),
    ("input-nan", _args("nan"), 1, "non-finite (NaN/inf) voxels; pass --nonfinite zero"),
    (
        "input-all-nan",
        _args("allnan", extra=("--nonfinite", "zero")),
        1,
        "no finite voxels",
    ),
    ("two-inputs-one-output", _args("good", "twin"), 1, "has the same output file as"),
    (  # stack.h5 holds one dataset, so naming none is fine; a wrong name is an error
        "hdf5-missing-dataset",
        lambda f, tmp: _args(f"{f['h5']}:/nope")(f, tmp),
        1,
        "/nope",
    ),
]


@pytest.mark.parametrize(
    ("argv", "code", "fragment"), [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS]
)
def test_denoise_command_bad_input(capsys, tmp_path, files, argv, code, fragment):
    assert main(["denoise", *argv(files, tmp_path)]) == code
    out, err = capsys.readouterr()
    assert fragment in err
    assert "Traceback" not in err
    if code == 1:
        errors = [line for line in err.splitlines() if line.startswith("ndwconv: error: ")]
        assert len(errors) == 1 and all(
            line.startswith(("ndwconv: error: ", "ndwconv: warning: ")) for line in err.splitlines()
        ), err
    else:
        assert err.splitlines()[-1].startswith("ndwconv denoise: error: ")
    if not out:  # a run that wrote nothing leaves no output folder behind
        assert not (tmp_path / "OUT").exists()


PY_ROWS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("radius-no-conv", lambda: receptive_radius(nn.ReLU()), ValueError, "no convolution"),
    ("holdout-out-of-range", lambda: min_holdout_length(1.5, 16), ValueError, "holdout"),
    (
        "block-short-axis",
        lambda: check_block_shape("vol", (10, 16, 16), 16),
        ValueError,
        "vol: axis 0 has length 10",
    ),
    (
        "block-short-holdout-axis",
        lambda: check_block_shape("vol", (16, 16, 30), 16, 0.25, 2),
        ValueError,
        "axis 2 has length 30 (shape (16, 16, 30)) but needs at least 43",
    ),
    (
        "block-short-validation",
        lambda: check_block_shape("val", (40, 8, 40), 16, validation=True),
        ValueError,
        "axis 1 has length 8",
    ),
    (
        "tile-not-above-overlap",
        lambda: denoise_image(nn.Conv2d(1, 1, 3, padding=1), torch.rand(1, 9, 9), 4, 4),
        ValueError,
        "tile must be None or an int > overlap",
    ),
    (
        "image-without-channels",
        lambda: denoise_image(nn.Conv2d(1, 1, 3, padding=1), torch.rand(9)),
        ValueError,
        "noisy must be a (C, H, W) tensor",
    ),
]


@pytest.mark.parametrize(
    ("call", "kind", "fragment"), [r[1:] for r in PY_ROWS], ids=[r[0] for r in PY_ROWS]
)
def test_denoise_python_bad_input(call, kind, fragment):
    with pytest.raises(kind) as raised:
        call()
    assert fragment in str(raised.value)
