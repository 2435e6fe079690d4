"""Tests of ``ndwconv.recipes.tasks.classify.cifar`` (the CIFAR-100 reader, statistics,
normalisation and augmentation).

Fixtures are written here byte by byte in the format of the official "python version"
files (https://www.cs.toronto.edu/~kriz/cifar.html): a protocol-2 pickle as Python 2's
cPickle wrote it (byte strings as ``SHORT_BINSTRING`` / ``BINSTRING``, ints as ``BININT*``,
lists and dicts built with ``APPENDS`` / ``SETITEMS`` in batches of 1000, memo ``BINPUT``s),
the image array as numpy 1 pickled it (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype('u1')`` with its version-3 state, the raw bytes C-ordered).
The writer shares no code with the reader. References: the row layout as the dataset page
states it (1024 red values, then green, then blue, each row-major), float64 numpy for the
channel statistics, a per-sample numpy loop for the augmentation, and the published
per-channel statistics of the training set (pytorch-cifar100, conf/global_settings.py).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ndwconv.recipes.tasks.classify import cifar

CifarFormatError = cifar.CifarFormatError
load_cifar100 = cifar.load_cifar100


# --------------------------------------------------------------------------- Python 2 pickles


class Py2Pickle:
    """Emit a protocol-2 pickle the way Python 2.7's cPickle wrote the official files."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")  # PROTO 2
        self.memo = 0

    def _put(self) -> None:
        self.memo += 1
        if self.memo < 256:
            self.out += b"q" + bytes([self.memo])  # BINPUT
        else:
            self.out += b"r" + struct.pack("<I", self.memo)  # LONG_BINPUT

    def str_(self, value: bytes) -> None:  # a Python 2 str
        if len(value) < 256:
            self.out += b"U" + bytes([len(value)]) + value  # SHORT_BINSTRING
        else:
            self.out += b"T" + struct.pack("<i", len(value)) + value  # BINSTRING
        self._put()

    def int_(self, value: int) -> None:
        if 0 <= value < 256:
            self.out += b"K" + bytes([value])  # BININT1
        elif 0 <= value < 65536:
            self.out += b"M" + struct.pack("<H", value)  # BININT2
        else:
            self.out += b"J" + struct.pack("<i", value)  # BININT

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + f"{module}\n{name}\n".encode()  # GLOBAL
        self._put()

    def value(self, v: object) -> None:
        if isinstance(v, bytes):
            self.str_(v)
        elif isinstance(v, bool):
            raise TypeError("no bools in the CIFAR files")
        elif isinstance(v, int):
            self.int_(v)
        elif isinstance(v, list):
            self.out += b"]"  # EMPTY_LIST
            self._put()
            for start in range(0, len(v), 1000):
                chunk = v[start : start + 1000]
                if len(chunk) == 1:
                    self.value(chunk[0])
                    self.out += b"a"  # APPEND
                else:
                    self.out += b"("  # MARK
                    for item in chunk:
                        self.value(item)
                    self.out += b"e"  # APPENDS
        elif isinstance(v, dict):
            self.out += b"}"  # EMPTY_DICT
            self._put()
            items = list(v.items())
            for start in range(0, len(items), 1000):
                self.out += b"("  # MARK
                for key, item in items[start : start + 1000]:
                    self.value(key)
                    self.value(item)
                self.out += b"u"  # SETITEMS
        elif isinstance(v, np.ndarray):
            self.array(v)
        else:
            raise TypeError(type(v))

    def array(self, a: np.ndarray) -> None:
        # numpy 1: ndarray.__reduce__ = (_reconstruct, (ndarray, (0,), 'b'), state),
        # state = (1, shape, dtype, is_fortran, raw bytes); dtype.__reduce__ =
        # (dtype, ('u1', 0, 1), (3, '|', None, None, None, -1, -1, 0)).
        self.global_("numpy.core.multiarray", "_reconstruct")
        self.global_("numpy", "ndarray")
        self.int_(0)
        self.out += b"\x85"  # TUPLE1
        self._put()
        self.str_(b"b")
        self.out += b"\x87"  # TUPLE3
        self._put()
        self.out += b"R"  # REDUCE
        self._put()
        self.out += b"("  # MARK: the state tuple
        self.int_(1)
        for d in a.shape:
            self.int_(d)
        self.out += {1: b"\x85", 2: b"\x86"}[a.ndim]  # TUPLE1 / TUPLE2
        self._put()
        self.global_("numpy", "dtype")
        self.str_(f"{a.dtype.kind}{a.dtype.itemsize}".encode())
        self.int_(0)
        self.int_(1)
        self.out += b"\x87"  # TUPLE3
        self._put()
        self.out += b"R"  # REDUCE
        self._put()
        self.out += b"("  # MARK: the dtype's state
        self.int_(3)
        self.str_(b"|" if a.dtype.itemsize == 1 else b"<")
        self.out += b"NNN"  # NONE × 3
        self.out += b"J" + struct.pack("<i", -1) + b"J" + struct.pack("<i", -1)
        self.int_(0)
        self.out += b"t"  # TUPLE
        self._put()
        self.out += b"b"  # BUILD
        self.out += b"\x89"  # NEWFALSE: C order
        self.str_(a.tobytes(order="C"))
        self.out += b"t"  # TUPLE
        self._put()
        self.out += b"b"  # BUILD

    def done(self) -> bytes:
        return bytes(self.out + b".")  # STOP


def py2_pickle(value: object) -> bytes:
    writer = Py2Pickle()
    writer.value(value)
    return writer.done()


def fixture_content(n_train: int, n_test: int, seed: int) -> dict[str, dict]:
    """The three dicts of a small CIFAR-100 in the official layout (keys, types, dtypes)."""
    rng = np.random.default_rng(seed)
    superclass = rng.permutation(np.repeat(np.arange(20), 5))  # 5 classes a superclass
    content = {
        "meta": {
            b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)],
        }
    }
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [int(v) for v in rng.integers(0, 100, n)]
        content[split] = {
            b"filenames": [f"image_{split}_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": [int(superclass[f]) for f in fine],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
    return content


def write_cifar_fixture(folder: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Write ``folder/cifar-100-python/{train,test,meta}`` in the official format."""
    root = folder / "cifar-100-python"
    root.mkdir(parents=True)
    for name, value in fixture_content(n_train, n_test, seed).items():
        (root / name).write_bytes(py2_pickle(value))
    return root


def make_tar(root: Path, target: Path, skip: str | None = None) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        for file in sorted(root.iterdir()):
            if file.name != skip:
                archive.add(file, arcname=f"cifar-100-python/{file.name}")
    return target


@pytest.fixture()
def fixture_dir(tmp_path: Path) -> Path:
    return write_cifar_fixture(tmp_path, n_train=23, n_test=7, seed=5)


# --------------------------------------------------------------------------- the fixture itself


def test_fixture_is_a_python2_numpy1_pickle():
    """The writer emits what Python 2 wrote: no unicode, no _codecs, the numpy 1 globals."""
    blob = py2_pickle(fixture_content(3, 2, 0)["train"])
    ops = [op.name for op, _, _ in pickletools.genops(blob)]
    globals_ = {arg for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert "BINUNICODE" not in ops and "SHORT_BINBYTES" not in ops and "BINBYTES" not in ops
    assert ops[0] == "PROTO" and ops[-1] == "STOP"
    # The standard unpickler, as the dataset page says to load the files, reads it back.
    content = fixture_content(3, 2, 0)["train"]
    loaded = pickle.loads(blob, encoding="bytes")
    assert loaded.keys() == content.keys()
    np.testing.assert_array_equal(loaded[b"data"], content[b"data"])
    assert loaded[b"data"].dtype == np.uint8
    assert loaded[b"fine_labels"] == content[b"fine_labels"]


# --------------------------------------------------------------------------- reading


@pytest.mark.parametrize("labels", ["fine", "coarse"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_folder_layout_and_labels(fixture_dir: Path, split: str, labels: str):
    content = fixture_content(23, 7, 5)
    data = load_cifar100(fixture_dir, split=split, labels=labels)
    raw = content[split][b"data"]
    n = {"train": 23, "test": 7}[split]
    assert len(data) == n and data.images.shape == (n, 3, 32, 32)
    assert data.images.dtype == np.uint8 and data.labels.dtype == np.int64
    # The dataset page: 1024 red values, then 1024 green, then 1024 blue, each row-major.
    rng = np.random.default_rng(0)
    for _ in range(200):
        i, c, y, x = (
            rng.integers(0, n),
            rng.integers(0, 3),
            rng.integers(0, 32),
            rng.integers(0, 32),
        )
        assert data.images[i, c, y, x] == raw[i, 1024 * c + 32 * y + x]
    np.testing.assert_array_equal(data.images[0, 0, 0], raw[0, :32])  # first row of red
    np.testing.assert_array_equal(data.images[0, 2, 31], raw[0, 3040:])  # last row of blue
    key = b"fine_labels" if labels == "fine" else b"coarse_labels"
    assert data.labels.tolist() == content[split][key]
    names = content["meta"][b"fine_label_names" if labels == "fine" else b"coarse_label_names"]
    assert data.classes == [v.decode() for v in names]
    assert len(data.classes) == {"fine": 100, "coarse": 20}[labels]
    data.images[0, 0, 0, 0] ^= 1  # writable: the training pipeline may work in place


def test_parent_folder_and_tar_round_trip(fixture_dir: Path, tmp_path: Path):
    archive = make_tar(fixture_dir, tmp_path / "cifar-100-python.tar.gz")
    for split in ("train", "test"):
        for labels in ("fine", "coarse"):
            a = load_cifar100(fixture_dir, split, labels)
            b = load_cifar100(archive, split, labels)
            c = load_cifar100(fixture_dir.parent, split, labels)
            for other in (b, c):
                np.testing.assert_array_equal(a.images, other.images)
                np.testing.assert_array_equal(a.labels, other.labels)
                assert a.classes == other.classes


def test_nothing_written_or_modified(fixture_dir: Path, tmp_path: Path):
    archive = make_tar(fixture_dir, tmp_path / "c.tar.gz")
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()
    }
    load_cifar100(fixture_dir, "test")
    load_cifar100(archive, "test", "coarse")
    after = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.rglob("*") if p.is_file()
    }
    assert before == after


# --------------------------------------------------------------------------- refusals


def test_bad_arguments_and_sources(fixture_dir: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="split"):
        load_cifar100(fixture_dir, split="validation")
    with pytest.raises(ValueError, match="labels"):
        load_cifar100(fixture_dir, labels="super")
    with pytest.raises(FileNotFoundError, match=r"source: .*nowhere"):
        load_cifar100(tmp_path / "nowhere")
    text = tmp_path / "notes.txt"
    text.write_text("not an archive")
    with pytest.raises(CifarFormatError, match="neither a folder nor a tar archive"):
        load_cifar100(text)
    (fixture_dir / "test").unlink()
    with pytest.raises(FileNotFoundError, match="'test'"):
        load_cifar100(fixture_dir, "test")


def test_archive_missing_member(fixture_dir: Path, tmp_path: Path):
    archive = make_tar(fixture_dir, tmp_path / "c.tar.gz", skip="meta")
    with pytest.raises(CifarFormatError, match="no member 'cifar-100-python/meta'"):
        load_cifar100(archive)


def test_truncated_archive_refused(fixture_dir: Path, tmp_path: Path):
    archive = make_tar(fixture_dir, tmp_path / "c.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    # meta and test lie before train (the biggest member) and stay whole
    assert len(load_cifar100(archive, "test")) == 7
    with pytest.raises(CifarFormatError, match=re.escape(str(archive))):
        load_cifar100(archive, "train")


def rewrite(folder: Path, name: str, edit) -> None:
    content = fixture_content(23, 7, 5)[name]
    edit(content)
    (folder / name).write_bytes(py2_pickle(content))


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("train", lambda d: d.pop(b"coarse_labels"), "missing: coarse_labels"),
        ("train", _set(b"extra", b"x"), "unexpected: b'extra'"),
        ("train", _set(b"data", np.zeros((23, 3072), np.int16)), "dtype uint8, found int16"),
        ("train", _set(b"data", np.zeros((23, 1024), np.uint8)), r"shape \(N, 3072\)"),
        ("train", _set(b"data", np.zeros((0, 3072), np.uint8)), r"N ≥ 1"),
        ("train", _set(b"data", [1, 2, 3]), "data must be a numpy array"),
        ("train", lambda d: d[b"fine_labels"].append(0), "fine_labels has 24 entries"),
        ("train", lambda d: d[b"fine_labels"].__setitem__(3, 100), r"fine_labels\[3\] = 100"),
        ("train", lambda d: d[b"coarse_labels"].__setitem__(0, 20), r"coarse_labels\[0\] = 20"),
        ("train", lambda d: d[b"fine_labels"].__setitem__(0, b"7"), "must hold ints"),
        ("train", _set(b"filenames", [b"a"]), "filenames has 1 entries"),
        ("train", _set(b"batch_label", 3), "batch_label must be a byte string"),
        ("test", lambda d: d.pop(b"data"), "missing: data"),
        ("meta", lambda d: d[b"fine_label_names"].pop(), "fine_label_names has 99 names"),
        ("meta", _set(b"coarse_label_names", [b"x"] * 20), "repeated names"),
        ("meta", _set(b"label_names", []), "unexpected: b'label_names'"),
    ],
)
def test_malformed_files_refused(fixture_dir: Path, name: str, edit, message: str):
    rewrite(fixture_dir, name, edit)
    split = "test" if name == "test" else "train"
    with pytest.raises(CifarFormatError, match=message) as err:
        load_cifar100(fixture_dir, split)
    assert str(fixture_dir / name) in str(err.value)


def test_inconsistent_superclass_refused(fixture_dir: Path):
    def edit(d):
        f = d[b"fine_labels"][0]
        i = (
            next(j for j, g in enumerate(d[b"fine_labels"]) if g == f and j > 0)
            if (d[b"fine_labels"].count(f) > 1)
            else None
        )
        if i is None:
            d[b"fine_labels"][1] = f
            i = 1
        d[b"coarse_labels"][i] = (d[b"coarse_labels"][0] + 1) % 20

    rewrite(fixture_dir, "train", edit)
    with pytest.raises(CifarFormatError, match="disagree: fine class"):
        load_cifar100(fixture_dir)


def test_not_a_pickle_and_python3_pickles_refused(fixture_dir: Path):
    (fixture_dir / "train").write_bytes(b"\x80\x02}q\x01(U\x04data")  # truncated
    with pytest.raises(CifarFormatError, match="not a readable CIFAR-100 pickle"):
        load_cifar100(fixture_dir)
    # Python 3 writes byte strings at protocol 2 through _codecs.encode: not the format.
    (fixture_dir / "train").write_bytes(pickle.dumps(fixture_content(4, 1, 0)["train"], 2))
    with pytest.raises(CifarFormatError, match=r"refused global _codecs\.encode"):
        load_cifar100(fixture_dir)


class _Payload:
    """Unpickles into ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_malicious_pickles_refused_and_never_run(fixture_dir: Path, tmp_path: Path):
    import os

    marker = tmp_path / "ran"
    live = pickle.dumps(_Payload(open, str(marker), "w"), 2)
    pickle.loads(live).close()  # the payload is live: a plain unpickler creates the file
    assert marker.exists()
    marker.unlink()

    content = fixture_content(23, 7, 5)
    cases = [
        _Payload(open, str(marker), "w"),
        _Payload(os.system, f"touch {marker}"),
        _Payload(eval, f"open({str(marker)!r}, 'w')"),
    ]
    for payload in cases:
        refused = f"{payload.func.__module__}.{payload.func.__name__}"  # io.open, posix.system…
        split = dict(content["train"])
        split[b"batch_label"] = payload  # inside an otherwise official dict
        (fixture_dir / "train").write_bytes(pickle.dumps(split, 4))
        with pytest.raises(CifarFormatError, match=f"refused global {re.escape(refused)}") as err:
            load_cifar100(fixture_dir)
        assert str(fixture_dir / "train") in str(err.value)
        assert not marker.exists()
    # The same through the archive, and in meta (read first).
    (fixture_dir / "meta").write_bytes(pickle.dumps(cases[0], 2))
    archive = make_tar(fixture_dir, tmp_path / "evil.tar.gz")
    with pytest.raises(CifarFormatError, match=r"evil\.tar\.gz:cifar-100-python/meta: refused"):
        load_cifar100(archive)
    assert not marker.exists()


def test_restricted_load_admits_numpy_arrays_only():
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    # numpy 2 spells _reconstruct numpy._core.multiarray; both spellings load.
    out = cifar.restricted_load(io.BytesIO(pickle.dumps(array, 4)), "x")
    np.testing.assert_array_equal(out, array)
    with pytest.raises(CifarFormatError, match=r"x: refused global collections\.OrderedDict"):
        cifar.restricted_load(
            io.BytesIO(pickle.dumps(__import__("collections").OrderedDict(), 2)), "x"
        )


# --------------------------------------------------------------------------- statistics


def test_published_statistics():
    """pytorch-cifar100 (weiaicunzai), conf/global_settings.py: the training set's mean and
    population std per channel; the rounded values quoted across the literature agree."""
    np.testing.assert_allclose(cifar.CIFAR100_MEAN, (0.5071, 0.4865, 0.4409), atol=5e-5)
    np.testing.assert_allclose(cifar.CIFAR100_STD, (0.2673, 0.2564, 0.2762), atol=5e-5)


def test_channel_stats_against_float64_numpy(fixture_dir: Path):
    images = load_cifar100(fixture_dir).images
    x = images.astype(np.float64) / 255.0
    mean, std = cifar.channel_stats(images)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12)  # ddof = 0
    mean_t, std_t = cifar.channel_stats(torch.from_numpy(images))
    assert (mean_t, std_t) == (mean, std)
    # more images than one chunk of the computation, other channel counts and sizes
    many = np.random.default_rng(8).integers(0, 256, (2100, 2, 3, 5), dtype=np.uint8)
    x = many.astype(np.float64) / 255.0
    mean, std = cifar.channel_stats(many)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        cifar.channel_stats(images.astype(np.float32))


def test_normalise_against_float64():
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (4, 3, 5, 6), dtype=np.uint8)
    ref = (batch / 255.0 - np.array(cifar.CIFAR100_MEAN)[:, None, None]) / np.array(
        cifar.CIFAR100_STD
    )[:, None, None]
    out = cifar.normalise(torch.from_numpy(batch))
    assert out.dtype == torch.float32 and out.shape == batch.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        cifar.normalise(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="one value per channel"):
        cifar.normalise(torch.zeros(1, 2, 2, 2, dtype=torch.uint8))


# --------------------------------------------------------------------------- augmentation


def reference_augment(batch: np.ndarray, top, left, flip, padding: int = 4) -> np.ndarray:
    """Per-sample numpy loop in float64: pad with zeros, slice, mirror."""
    b, _, h, w = batch.shape
    out = np.empty(batch.shape, np.float64)
    for i in range(b):
        padded = np.pad(
            batch[i].astype(np.float64), ((0, 0), (padding, padding), (padding, padding))
        )
        crop = padded[:, top[i] : top[i] + h, left[i] : left[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_augment_matches_numpy_loop(dtype):
    rng = np.random.default_rng(1)
    batch_np = rng.integers(0, 256, (64, 3, 32, 32)).astype(np.float64)
    batch = torch.from_numpy(batch_np).to(dtype)
    draws = cifar.draw_augmentation(64, torch.Generator().manual_seed(9))
    out = cifar.augment(batch, torch.Generator().manual_seed(9))
    ref = reference_augment(batch_np, draws.top.numpy(), draws.left.numpy(), draws.flip.numpy())
    assert out.dtype == dtype and out.shape == batch.shape
    np.testing.assert_array_equal(out.double().numpy(), ref)
    # the draws cover every offset 0..8 and both flips (so the test above saw them all)
    assert set(draws.top.tolist()) | set(draws.left.tolist()) == set(range(9))
    assert 0 < int(draws.flip.sum()) < 64


def test_augment_every_output_is_a_padded_crop():
    """Property without the draws: each output is one of the 9·9·2 crops of its padded input."""
    rng = np.random.default_rng(2)
    batch = rng.integers(1, 256, (16, 3, 12, 10), dtype=np.uint8)  # no zeros: padding shows
    out = cifar.augment(torch.from_numpy(batch), torch.Generator().manual_seed(4)).numpy()
    for i in range(16):
        candidates = [
            reference_augment(batch[i : i + 1], [t], [lf], [f])[0]
            for t in range(9)
            for lf in range(9)
            for f in (False, True)
        ]
        assert sum(np.array_equal(out[i], cand) for cand in candidates) >= 1


def test_augment_determinism_and_input_untouched():
    batch = torch.randint(0, 256, (32, 3, 32, 32), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )
    copy = batch.clone()
    a = cifar.augment(batch, torch.Generator().manual_seed(11))
    b = cifar.augment(batch, torch.Generator().manual_seed(11))
    c = cifar.augment(batch, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(batch, copy)


def test_augment_distribution():
    """Offsets uniform on 0..8, flips with probability 1/2 (torchvision's RandomCrop(32,
    padding=4) and RandomHorizontalFlip()): 20 000 draws within 5 standard errors."""
    draws = cifar.draw_augmentation(20000, torch.Generator().manual_seed(0))
    for offsets in (draws.top, draws.left):
        counts = torch.bincount(offsets, minlength=9).double() / 20000
        assert counts.shape == (9,)
        assert torch.all((counts - 1 / 9).abs() < 5 * (1 / 9 * 8 / 9 / 20000) ** 0.5)
    assert abs(draws.flip.double().mean().item() - 0.5) < 5 * (0.25 / 20000) ** 0.5


def test_augment_bad_inputs():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(TypeError, match=r"batch must be a torch\.Tensor"):
        cifar.augment(np.zeros((1, 3, 4, 4), np.uint8), g)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        cifar.augment(torch.zeros(3, 4, 4, dtype=torch.uint8), g)
    with pytest.raises(ValueError, match="uint8 or floating"):
        cifar.augment(torch.zeros(1, 3, 4, 4, dtype=torch.int32), g)
    with pytest.raises(TypeError, match="generator"):
        cifar.augment(torch.zeros(1, 3, 4, 4), 0)
    with pytest.raises(ValueError, match="padding"):
        cifar.augment(torch.zeros(1, 3, 4, 4), g, padding=-1)
