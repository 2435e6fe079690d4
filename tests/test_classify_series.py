"""Series classification: MNIST-1D offline, UCR .tsv/.ts readers, z-normalisation, 1-D models.

References: published data set sizes (UCR archive 2018, Dau et al., "The UCR time series
archive", IEEE/CAA J. Autom. Sinica 2019: ArrowHead 36 train / 175 test, length 251,
3 classes; OSULeaf 200 / 242, length 427, 6 classes; MNIST-1D, Greydanus 2020, arXiv
2011.14439: 4000 / 1000, length 40, 10 classes), sktime's own .ts reader, the
UCR-format .tsv that sktime bundles beside ArrowHead's .ts, float64 loops, and parameter
counts by hand arithmetic (conv: c_in·c_out·k + c_out; BN: 2c; linear: i·o + o).
"""

from __future__ import annotations

import hashlib
import random
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ndwconv
from ndwconv.recipes.models import build_model, count_parameters, make_weighted
from ndwconv.recipes.tasks.classify import series
from ndwconv.recipes.tasks.classify.series import (
    SeriesData,
    bundled_ucr,
    load_ucr,
    mnist1d,
    sort_labels,
    znormalise,
)

pytest.importorskip("sktime", reason='the bundled UCR sets need pip install -e ".[examples]"')
pytest.importorskip("mnist1d", reason='MNIST-1D needs pip install -e ".[examples]"')


# --- MNIST-1D ---------------------------------------------------------------------------


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")


def test_mnist1d_offline_published_split(tmp_path, monkeypatch):
    import requests
    from mnist1d.data import get_dataset_args, make_dataset

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(requests, "get", _no_network)
    monkeypatch.setattr(requests.Session, "request", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    series._mnist1d_arrays.cache_clear()

    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what is checked)
    random.seed(123)
    expected_np, expected_py = np.random.rand(3), random.random()  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what is checked)
    random.seed(123)
    train, test = mnist1d(), mnist1d(split="test")
    # the caller's global random streams are untouched
    assert np.array_equal(np.random.rand(3), expected_np)  # noqa: NPY002
    assert random.random() == expected_py
    assert list(tmp_path.iterdir()) == []  # nothing written in the working directory

    # the published split (Greydanus 2020): 4000 / 1000 series of length 40, 10 classes
    assert train.x.shape == (4000, 1, 40) and test.x.shape == (1000, 1, 40)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64
    assert train.classes == [str(k) for k in range(10)]
    assert set(train.y.tolist()) == set(range(10)) == set(test.y.tolist())
    # the generator centres the whole set and scales it to unit standard deviation
    whole = np.concatenate([train.x, test.x]).astype(np.float64)
    assert abs(whole.mean()) < 1e-6 and abs(whole.std() - 1) < 1e-6

    # the package's generator with its default arguments (seed 42), nothing else
    args = get_dataset_args()
    assert (args.num_samples, args.train_split, args.final_seq_length, args.seed) == (
        5000,
        0.8,
        40,
        42,
    )
    reference = make_dataset(args)
    assert np.array_equal(train.x[:, 0], reference["x"].astype(np.float32))
    assert np.array_equal(test.y, reference["y_test"])
    # the returned arrays are the caller's to modify
    train.x[0] = 0
    assert not np.array_equal(mnist1d().x[0], train.x[0])


def test_mnist1d_bad_arguments():
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed"):
            mnist1d(seed)
    with pytest.raises(ValueError, match="split"):
        mnist1d(split="valid")


# --- bundled UCR sets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "train", "test", "length", "classes"),
    [("ArrowHead", 36, 175, 251, 3), ("OSULeaf", 200, 242, 427, 6)],
)
def test_bundled_sets_published_sizes(name, train, test, length, classes):
    folder = bundled_ucr(name)
    assert (folder / f"{name}_TRAIN.ts").is_file()
    a, b = load_ucr(name, "train"), load_ucr(folder, "test")
    assert a.x.shape == (train, 1, length) and b.x.shape == (test, 1, length)
    assert a.num_classes == b.num_classes == classes and a.classes == b.classes
    assert set(a.y.tolist()) == set(range(classes))


def test_ts_reader_matches_sktime_multivariate():
    from sktime.datasets import load_from_tsfile

    path = bundled_ucr("BasicMotions") / "BasicMotions_TEST.ts"
    data = load_ucr(path, "test")
    x_ref, y_ref = load_from_tsfile(str(path), return_data_type="numpy3d")
    assert data.x.shape == (40, 6, 100)
    assert np.array_equal(data.x, x_ref.astype(np.float32))
    # sktime lower-cases the labels; the file (and ours) keep "Standing" etc.
    assert data.classes == ["Badminton", "Running", "Standing", "Walking"]
    assert [data.classes[k].lower() for k in data.y] == [str(v).lower() for v in y_ref]


def test_tsv_and_ts_of_the_same_split_agree():
    folder = bundled_ucr("ArrowHead")  # sktime ships the training split in both formats
    from_tsv = load_ucr(folder / "ArrowHead_TRAIN.tsv", "train")
    from_ts = load_ucr(folder / "ArrowHead_TRAIN.ts", "train")
    assert np.array_equal(from_tsv.x, from_ts.x) and np.array_equal(from_tsv.y, from_ts.y)
    first = (folder / "ArrowHead_TRAIN.tsv").read_text().splitlines()[0].split("\t")
    assert from_tsv.classes[from_tsv.y[0]] == first[0]
    assert np.array_equal(from_tsv.x[0, 0], np.array(first[1:], dtype=np.float32))


def test_bundled_missing_extra(monkeypatch):
    monkeypatch.setattr(series, "BUNDLED_PACKAGE", "ndwconv_no_such_package")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[examples\]"'):
        bundled_ucr("ArrowHead")
    with pytest.raises(ImportError, match="examples"):
        load_ucr("ArrowHead")


def test_bundled_unknown_name():
    with pytest.raises(FileNotFoundError, match=r"available: .*ArrowHead"):
        bundled_ucr("NoSuchSet")


# --- UCR readers on fixtures ------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_tsv_folder_shares_classes_across_splits(tmp_path):
    folder = tmp_path / "Toy"
    # a trailing tab and Windows line ends are tolerated
    _write(folder / "Toy_TRAIN.tsv", "2\t0.5\t1\t2\t\r\n-1\t3\t4\t5\r\n2\t1e-3\t-2\t7\n")
    _write(folder / "Toy_TEST.tsv", "10\t1\t1\t1\n-1\t0\t0\t0\n")
    before = _digest(folder)
    train, test = load_ucr(folder, "train"), load_ucr(str(folder), "test")
    assert _digest(folder) == before
    # numeric labels sorted numerically over both splits: -1, 2, 10
    assert train.classes == test.classes == ["-1", "2", "10"]
    assert train.y.tolist() == [1, 0, 1] and test.y.tolist() == [2, 0]
    assert train.x.dtype == np.float32
    assert (
        train.x[:, 0].tolist()
        == np.array([[0.5, 1, 2], [3, 4, 5], [1e-3, -2, 7]], np.float32).tolist()
    )
    # one file alone knows only its own labels
    assert load_ucr(folder / "Toy_TEST.tsv", "test").classes == ["-1", "10"]


def test_ts_multivariate_fixture(tmp_path):
    text = (
        "# a comment\n@problemName Toy\n@timeStamps false\n@univariate false\n"
        "@dimensions 2\n@equalLength true\n@seriesLength 3\n@classLabel true up down flat\n"
        "@data\n1,2,3:4,5,6:up\n\n0,0,0:-1,-2,-3.5:flat\n"
    )
    path = _write(tmp_path / "Toy_TRAIN.ts", text)
    data = load_ucr(path, "train")
    assert data.classes == ["down", "flat", "up"]  # every header class, sorted as text
    assert data.y.tolist() == [2, 1]
    assert data.x.tolist() == [[[1, 2, 3], [4, 5, 6]], [[0, 0, 0], [-1, -2, -3.5]]]


def test_sort_labels():
    assert sort_labels(["10", "9", "-1.5", "9"]) == ["-1.5", "9", "10"]
    assert sort_labels(["b", "10", "9", "a"]) == ["10", "9", "a", "b"]
    with pytest.raises(ValueError, match=r"'1' and '1\.0' are the same number"):
        sort_labels(["1", "1.0", "2"])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("X_TRAIN.tsv", "1\t1\t2\t3\n2\t1\tNaN\tNaN\n", r"X_TRAIN\.tsv, line 2: variable-length"),
        ("X_TRAIN.tsv", "1\t1\t2\t3\n2\tNaN\t1\t1\n", r"line 2: a missing value"),
        ("X_TRAIN.tsv", "1\t1\t2\t3\n\n2\t1\tx\t3\n", r"line 3: series value 2 is 'x'"),
        ("X_TRAIN.tsv", "1\t1\t2\t3\n2\t1\t2\n", r"line 2: 2 values, earlier lines have 3"),
        ("X_TRAIN.tsv", "1,2,3\n", r"line 1: expected a label and values separated by tabs"),
        ("X_TRAIN.tsv", "", r"no series found"),
        ("X_TRAIN.ts", "@classLabel true a b\n@data\n1,2:c\n", r"line 3: class label 'c'"),
        ("X_TRAIN.ts", "@classLabel true a\n@data\n1,?,2:a\n", r"line 3: missing value"),
        ("X_TRAIN.ts", "@classLabel true a\n@data\n1,2:a\n1,2,3:a\n", r"line 4: shape"),
        ("X_TRAIN.ts", "@classLabel true a\n@data\n1,2:1,2,3:a\n", r"line 3: dimensions of"),
        ("X_TRAIN.ts", "@classLabel true a\n@seriesLength 3\n@data\n1,2:a\n", r"@seriesLength"),
        ("X_TRAIN.ts", "@classLabel false\n@data\n1,2\n", r"@classLabel true"),
        ("X_TRAIN.ts", "@timeStamps true\n@classLabel true a\n@data\n", r"line 1: @timeStamps"),
        ("X_TRAIN.ts", "@classLabel true a\n1,2:a\n", r"line 2: expected a header line"),
        ("X_TRAIN.ts", "@classLabel true a\n", r"no @data line"),
        ("X_TRAIN.csv", "1,2,3\n", r"unknown series format"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=message) as info:
        load_ucr(path, "train")
    assert name in str(info.value)


def test_source_and_split_errors(tmp_path):
    train = _write(tmp_path / "Toy" / "Toy_TRAIN.tsv", "1\t1\t2\n")
    with pytest.raises(ValueError, match="is a train file but split='test'"):
        load_ucr(train, "test")
    with pytest.raises(FileNotFoundError, match=r"no test split found.*Toy_TEST"):
        load_ucr(train.parent, "test")
    with pytest.raises(ValueError, match="split must be"):
        load_ucr(train.parent, "validation")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ucr(tmp_path / "missing", "train")
    with pytest.raises(TypeError, match="source"):
        load_ucr(3, "train")
    with pytest.raises(ValueError, match=r"SeriesData.x must be a float32"):
        SeriesData(np.zeros((2, 3)), np.zeros(2, np.int64), ["a"])


# --- z-normalisation --------------------------------------------------------------------


def test_znormalise_matches_float64_loop():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(4, 3, 17)) * rng.uniform(0.1, 50, size=(4, 3, 1)) + 7).astype(np.float32)
    x[1, 2] = 3.25  # a constant series
    original = x.copy()
    z = znormalise(x)
    assert np.array_equal(x, original) and z.dtype == np.float32
    expected = np.empty(x.shape, np.float64)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            values = [float(v) for v in x[i, c]]
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
            expected[i, c] = [0.0 if std == 0 else (v - mean) / std for v in values]
    assert np.allclose(z, expected, rtol=0, atol=1e-6)
    assert np.all(z[1, 2] == 0) and np.isfinite(z).all()
    assert znormalise(np.array([[1, 2, 3]])).dtype == np.float32
    assert znormalise(x.astype(np.float64)).dtype == np.float64
    with pytest.raises(ValueError, match="NaN"):
        znormalise(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="time axis"):
        znormalise(np.zeros((2, 0)))


# --- models -----------------------------------------------------------------------------


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k + c_out


def _bn(c: int) -> int:
    return 2 * c


def _linear(i: int, o: int) -> int:
    return i * o + o


def test_parameter_counts_by_arithmetic():
    # MNIST-1D CNN: 1→25 k5, 25→25 k3 twice, lengths 40→19→10→5, linear 125→10
    cnn = _conv(1, 25, 5) + 2 * _conv(25, 25, 3) + _linear(25 * 5, 10)
    assert cnn == 5210
    assert count_parameters(build_model("mnist1d_cnn")) == cnn
    # FCN for a univariate 3-class set: 128 k8, 256 k5, 128 k3, each with BN; linear 128→3
    fcn = (
        _conv(1, 128, 8) + _bn(128) + _conv(128, 256, 5) + _bn(256) + _conv(256, 128, 3)
        + _bn(128) + _linear(128, 3)
    )  # fmt: skip
    assert count_parameters(build_model("fcn", num_classes=3)) == fcn == 265_091

    # ResNet: blocks 1→64, 64→128 (1×1 conv + BN shortcuts), 128→128 (BN shortcut)
    def block(c_in: int, c: int) -> int:
        body = _conv(c_in, c, 8) + _conv(c, c, 5) + _conv(c, c, 3) + 3 * _bn(c)
        return body + (_conv(c_in, c, 1) + _bn(c) if c_in != c else _bn(c))

    resnet = block(1, 64) + block(64, 128) + block(128, 128) + _linear(128, 3)
    assert count_parameters(build_model("resnet_ts", num_classes=3)) == resnet == 504_387
    assert count_parameters(build_model("fcn", in_channels=6, num_classes=4)) == fcn + (
        5 * 128 * 8 + 128 * 1 + 1
    )
    assert count_parameters(build_model("fcn", num_classes=3, kernels=(7, 5, 3))) == fcn - 128


def test_shapes_and_dimensions():
    x = torch.randn(2, 1, 40)
    for name in ("mnist1d_cnn", "fcn", "resnet_ts"):
        assert build_model(name)(x).shape == (2, 10)
    assert build_model("fcn", in_channels=2, num_classes=3, ndim=2)(
        torch.randn(2, 2, 9, 7)
    ).shape == (2, 3)
    net = build_model("resnet_ts", ndim=4, num_classes=3, widths=(4, 4))
    assert net(torch.randn(2, 1, 3, 4, 5, 6)).shape == (2, 3)
    assert build_model("mnist1d_cnn", ndim=2)(torch.randn(2, 1, 40, 40)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"length=40.*\(2, 1, 41\)"):
        build_model("mnist1d_cnn")(torch.randn(2, 1, 41))
    for kwargs in ({"kernels": (8, 5)}, {"widths": (0, 1, 2)}, {"num_classes": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            build_model("fcn", **kwargs)


def test_even_kernel_same_padding_is_keras_same():
    # Keras/TF "same": total padding k-1 = 7, (k-1)//2 = 3 before and 4 after
    fcn = build_model("fcn", num_classes=3)
    conv = fcn.features[0]
    x = torch.randn(2, 1, 30)
    expected = F.conv1d(F.pad(x, (3, 4)), conv.weight, conv.bias)
    assert torch.allclose(conv(x), expected, atol=1e-6)


def test_what_is_weighted():
    def kernels(net):
        return [layer.kernel_size[0] for _, layer in ndwconv.weighted_layers(net)]

    assert kernels(make_weighted(build_model("mnist1d_cnn"), "default")) == [5, 3, 3]
    assert kernels(make_weighted(build_model("fcn"), "default")) == [5, 3]  # kernel 8 plain
    assert kernels(make_weighted(build_model("resnet_ts"), "default")) == [5, 3] * 3
    assert kernels(make_weighted(build_model("fcn", kernels=(7, 5, 3)), "default")) == [7, 5, 3]
    # same initial weights in both arms: conversion keeps every parameter
    torch.manual_seed(0)
    plain = build_model("resnet_ts", num_classes=3)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    weighted = make_weighted(plain, "default")
    after = weighted.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
