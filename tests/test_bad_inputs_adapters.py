"""Bad input to the adapters (tiler, volumes, atomic writes): one row per case.

Each row is ``(id, make, error type, message fragment)``: ``make(tmp_path)`` returns a
callable that must raise the error, and the message must name what is wrong.
"""

import re

import numpy as np
import pytest

from ndwconv.adapters import volumes
from ndwconv.adapters.atomic import atomic_write, scratch_file
from ndwconv.adapters.tiling import sliding_window

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")


def _tile(source=None, predictor=lambda x: x, **kwargs):
    source = np.zeros((1, 8, 8), np.float32) if source is None else source
    kwargs.setdefault("tile", 4)
    return lambda: sliding_window(predictor, source, progress=False, **kwargs)


def _read_only(shape=(1, 8, 8)):
    out = np.zeros(shape, np.float32)
    out.flags.writeable = False
    return out


def _nifti(tmp_path, data, name="v.nii"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _hdf5(tmp_path, data, name="v.h5", dataset="x"):
    path = tmp_path / name
    with h5py.File(path, "w") as handle:
        handle.create_dataset(dataset, data=data)
    return path


def _changing_channels():
    calls = []

    def predictor(x):
        calls.append(1)
        return x if len(calls) == 1 else x.repeat(1, 2, 1, 1)

    return predictor


def _truncated_gz(tmp_path):
    path = _nifti(tmp_path, np.ones((8, 8, 8), np.float32), "t.nii.gz")
    path.write_bytes(path.read_bytes()[:-40])
    return path


def _folder(path):
    path.mkdir()
    return path


ZEROS = np.zeros((2, 2, 2), np.float32)

CASES = [
    # tiler
    (
        "tiler-zero-length-axis",
        lambda t: _tile(np.zeros((1, 8, 0), np.float32)),
        ValueError,
        "length 0",
    ),
    (
        "tiler-predictor-numpy",
        lambda t: _tile(predictor=lambda x: x.numpy()),
        TypeError,
        "numpy.ndarray",
    ),
    ("tiler-predictor-list", lambda t: _tile(predictor=lambda x: [x]), TypeError, "builtins.list"),
    (
        "tiler-predictor-channels-change",
        lambda t: _tile(
            np.zeros((1, 8, 8), np.float32), _changing_channels(), overlap=0, batch_size=1
        ),
        ValueError,
        "channels",
    ),
    ("tiler-out-read-only", lambda t: _tile(out=_read_only()), ValueError, "out is read-only"),
    (
        "tiler-out-complex",
        lambda t: _tile(out=np.zeros((1, 8, 8), np.complex64)),
        TypeError,
        "out has dtype complex64",
    ),
    (
        "tiler-out-string",
        lambda t: _tile(out=np.zeros((1, 8, 8), "U3")),
        TypeError,
        "out has dtype",
    ),
    (
        "tiler-out-wrong-shape",
        lambda t: _tile(out=np.zeros((1, 8, 9), np.float32)),
        ValueError,
        "out has shape",
    ),
    (
        "tiler-nan-into-int-out",
        lambda t: _tile(np.full((1, 8, 8), np.nan, np.float32), out=np.zeros((1, 8, 8), np.int16)),
        ValueError,
        "NaN/inf values cannot be stored in integer dtype int16",
    ),
    (
        "tiler-overflow-float16-out",
        lambda t: _tile(np.full((1, 8, 8), 1e6, np.float32), out=np.zeros((1, 8, 8), np.float16)),
        ValueError,
        "beyond the range of float16",
    ),
    # volumes: load
    ("load-folder", lambda t: lambda: volumes.load(t), IsADirectoryError, "is a folder"),
    (
        "load-missing",
        lambda t: lambda: volumes.load(t / "none.nii"),
        FileNotFoundError,
        "none.nii: no such file",
    ),
    (
        "load-rgb-nifti",
        lambda t: (
            lambda: volumes.load(
                _nifti(t, np.zeros((2, 2, 2), [("R", "u1"), ("G", "u1"), ("B", "u1")]))
            )
        ),
        ValueError,
        "not real numbers",
    ),
    (
        "load-complex-nifti",
        lambda t: lambda: volumes.load(_nifti(t, np.zeros((2, 2, 2), np.complex64))),
        ValueError,
        "complex64",
    ),
    (
        "load-string-hdf5",
        lambda t: lambda: volumes.load(_hdf5(t, np.array([b"a", b"b"]))),
        ValueError,
        "v.h5:/x",
    ),
    (
        "load-compound-hdf5",
        lambda t: lambda: volumes.load(_hdf5(t, np.zeros(3, "f4,i4"))),
        ValueError,
        "not real numbers",
    ),
    ("load-truncated-gz", lambda t: lambda: volumes.load(_truncated_gz(t)), ValueError, "t.nii.gz"),
    # volumes: save
    (
        "save-into-folder",
        lambda t: lambda: volumes.save(ZEROS, _folder(t / "d.nii"), overwrite=True),
        IsADirectoryError,
        "is a folder",
    ),
    (
        "save-missing-folder",
        lambda t: lambda: volumes.save(ZEROS, t / "no" / "o.nii"),
        FileNotFoundError,
        "o.nii",
    ),
    (
        "save-existing",
        lambda t: lambda: (volumes.save(ZEROS, t / "o.nii"), volumes.save(ZEROS, t / "o.nii")),
        FileExistsError,
        "o.nii: exists",
    ),
    (
        "save-string-array",
        lambda t: lambda: volumes.save(np.zeros((2, 2, 2), "U2"), t / "s.h5"),
        TypeError,
        "s.h5",
    ),
    (
        "save-nonfinite",
        lambda t: lambda: volumes.save(ZEROS + np.nan, t / "n.nii"),
        ValueError,
        "8 non-finite",
    ),
    # atomic writes
    (
        "atomic-missing-folder",
        lambda t: lambda: atomic_write(t / "no" / "f.txt", lambda p: None),
        FileNotFoundError,
        "f.txt",
    ),
    (
        "atomic-folder-target",
        lambda t: lambda: atomic_write(t, lambda p: None),
        IsADirectoryError,
        "is a folder",
    ),
    (
        "scratch-missing-folder",
        lambda t: lambda: scratch_file(t / "no", "r.nii", ".result").__enter__(),
        FileNotFoundError,
        "r.nii",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_with_a_message_naming_it(tmp_path, make, error, fragment):
    action = make(tmp_path)
    with pytest.raises(error, match=re.escape(fragment)):
        action()
