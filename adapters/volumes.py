"""NIfTI (nibabel) and HDF5 (h5py) volumes with their metadata.

:func:`load` opens a volume lazily and returns a :class:`Volume`: the voxels stay on
disk (a nibabel ``ArrayProxy`` or an open ``h5py.Dataset``) and :meth:`Volume.read`
fetches one region at a time as float32, so a tiler can walk volumes larger than
memory. :func:`save` writes a result next to its input, reusing the input's header,
affine and on-disk dtype, and never leaves a half-written file behind.

Paths:
    ``scan.nii`` / ``scan.nii.gz``  NIfTI-1 or NIfTI-2 (chosen from the header).
    ``stack.h5:/group/dataset``     one HDF5 dataset (``.h5``, ``.hdf5``, ``.he5``); the
                                    dataset part may be left out when the file holds
                                    exactly one dataset (``load``) or defaults to
                                    ``/data`` (``save``).

Scaling (NIfTI ``scl_slope``/``scl_inter``): the file value is ``raw * slope + inter``.
``Volume.data`` indexes to scaled values (nibabel's proxy applies them), and
:meth:`Volume.read` returns them as float32; ``Volume.scl_slope``/``scl_inter`` record
the file's scaling and are None when it stores none (slope 0 or NaN, as NIfTI
defines) or the identity (slope 1, inter 0). nibabel clears the scaling fields of the
header it hands back, so ``Volume.header`` shows them as NaN.

dtype policy of :func:`save` (the template is ``like``, else the saved Volume itself).
A saved :class:`Volume` is read from its stored values at full precision (never through
float32), so ``save(volume, path, like=volume)`` writes every voxel back unchanged, for
every dtype NIfTI and HDF5 hold. Values are converted by
:func:`ndwconv.adapters.convert.to_dtype`, the conversion the tiler uses for its ``out``:
    ``"input"``    keep the template's on-disk dtype. Integer dtypes get values rounded
                   to nearest and clipped to the dtype's range (never truncated or
                   wrapped; a finite value beyond a float dtype's range is an
                   error); if the template has scaling, values are quantised on its grid,
                   ``raw = clip(rint((x - inter) / slope))``, and written with the same
                   slope/inter, so data read from the template round-trips exactly.
                   Without scaling (or for float dtypes) slope/inter are reset (the file
                   stores slope 1, inter 0). A plain array without template keeps its
                   own dtype.
    ``"float32"``  write float32 (``header.set_data_dtype(np.float32)``), slope/inter
                   reset.

Non-finite voxels: :func:`load` leaves the data untouched (call
:meth:`Volume.check_finite`); :func:`save` raises ValueError with the number of
NaN/inf values unless ``nonfinite="allow"``, in which case float dtypes store them as
they are and integer dtypes store NaN as 0 and ±inf as the range limits.

Only real numbers are volumes: RGB and complex NIfTI files and string, compound or
complex HDF5 datasets are refused by :func:`load`. A ``.nii.gz`` is decompressed to its
end by :func:`load` (streaming), so a damaged stream or a bad gzip CRC is an error there.
Outputs and scratch files are written through :mod:`ndwconv.adapters.atomic`, whose
temporaries a killed process leaves are removed by the next write of the same file.

Requires the ``volumes`` extra: ``pip install -e ".[volumes]"`` in the repository root.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ndwconv.density import UNITS, Density, as_density, is_density_file

from .atomic import atomic_write, scratch_file
from .convert import to_dtype

__all__ = ["Volume", "is_physical", "load", "physical_density", "save", "split_path"]

_EXTRA = 'pip install -e ".[volumes]" in the ndwconv repository root'
_HDF5_PATH = re.compile(r"^(?P<file>.*\.(?:h5|hdf5|he5))(?::(?P<dataset>/.*))?$", re.IGNORECASE)
_DEFAULT_DATASET = "/data"


def is_physical(density: Any) -> bool:
    """Whether ``density`` gives distances as lengths, such as ``"gaussian:1.0mm"``.

    Such a density is resolved against a volume's voxel spacing by ``physical_density``.

    Raises:
        TypeError, ValueError: for a density ``ndwconv.as_density`` cannot read.
    """
    if is_density_file(density) or (isinstance(density, Mapping) and "format" in density):
        return False  # density files hold densities in voxels
    unit = as_density(density).unit
    return unit is not None and UNITS[unit][0] == "mm"


def physical_density(density: Any, spacing: Any) -> Density:
    """Resolve a density given in lengths against a voxel spacing in mm.

    ``"gaussian:Smm"`` (one σ) or ``"gaussian:S1,S2,S3mm"`` (one per axis) becomes
    ``Gaussian(sigma=S, spacing=spacing)``: a tap's distance from the kernel centre is
    measured in mm, so on anisotropic voxels (e.g. 1 × 1 × 3 mm) the thick axis is
    weighted down as its neighbours lie further away. Any other density is returned as
    ``ndwconv.as_density`` reads it, unchanged by the spacing. The spec grammar (µm too)
    is the core's, ``ndwconv.density.spec``.

    Args:
        density: a density spec (anything ``ndwconv.as_density`` takes).
        spacing: voxel size per spatial axis in mm (``Volume.spacing``, spatial axes only).

    Returns:
        An ``ndwconv.Density`` without a unit.

    Raises:
        ValueError: on a spacing that is empty or not finite and > 0, σ values that are
            not numbers (the message names them), or a density given in a time unit.

    Example:
        >>> print(physical_density("gaussian:1.5mm", (1.0, 1.0, 3.0)))
        gaussian:1.5;spacing=1,1,3
        >>> print(physical_density("table:0.5", (1.0, 1.0, 3.0)))
        table:0.5
    """
    resolved = as_density(density)
    if resolved.unit is not None and UNITS[resolved.unit][0] != "mm":
        raise ValueError(
            f"density {density!r} is in {resolved.unit}, a time; voxel spacings are lengths "
            "in mm: give σ in mm (e.g. 'gaussian:1.0mm')"
        )
    return resolved.resolve(spacing)


def split_path(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(file, dataset)`` of a volume path: ``"a.h5:/g/x"`` → ``("a.h5", "/g/x")``.

    NIfTI paths and HDF5 paths without a dataset give ``(path, None)``.

    Example:
        >>> split_path("scan.h5:/mri/t1"), split_path("scan.nii.gz")
        (('scan.h5', '/mri/t1'), ('scan.nii.gz', None))
    """
    path = os.fspath(path)
    match = _HDF5_PATH.match(path)
    return (match.group("file"), match.group("dataset")) if match else (path, None)


def _import_nibabel() -> Any:
    try:
        import nibabel
    except ImportError as exc:
        raise ImportError(f"NIfTI volumes need nibabel: {_EXTRA}") from exc
    return nibabel


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"HDF5 volumes need h5py: {_EXTRA}") from exc
    return h5py


@dataclass
class Volume:
    """A volume on disk (or in memory) with the metadata needed to write results back.

    Attributes:
        data: array-like of shape ``(X, Y, Z)`` or ``(X, Y, Z, T)``: a NumPy array, a
            nibabel ``ArrayProxy`` (indexes to scaled values) or an open ``h5py.Dataset``.
        affine: 4×4 float64 voxel-to-world transform, or None when unknown.
        spacing: one float per array axis (NIfTI zooms, so a 4-D series ends with the
            time step in the header's time unit; HDF5 attributes, see :func:`load`).
        header: nibabel header (NIfTI) or dict of dataset attributes (HDF5), or None.
        source: path the volume was loaded from (``file.h5:/dataset`` for HDF5).
        kind: ``"nifti1"``, ``"nifti2"``, ``"hdf5"`` or ``"array"``.
        dtype: on-disk dtype of the stored (unscaled) values.
        scl_slope, scl_inter: NIfTI scaling, None when the file stores none.

    Example:
        >>> vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
        >>> vol.shape, vol.ndim, vol.spacing
        ((2, 3, 4), 3, (1.0, 1.0, 1.0))
        >>> vol.read((slice(0, 1), slice(None), 0))
        array([[0., 4., 8.]], dtype=float32)
    """

    data: Any
    affine: np.ndarray | None = None
    spacing: tuple[float, ...] = ()
    header: Any = None
    source: str = ""
    kind: str = "array"
    dtype: np.dtype | None = None
    scl_slope: float | None = None
    scl_inter: float | None = None
    _file: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dtype is None:
            self.dtype = np.dtype(self.data.dtype)
        if not self.spacing:
            self.spacing = (1.0,) * self.ndim
        if self.affine is not None:
            self.affine = np.asarray(self.affine, dtype=np.float64)
            if self.affine.shape != (4, 4):
                raise ValueError(f"affine must be 4×4, got shape {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    def read(self, slices: Any = None) -> np.ndarray:
        """Read a region (all of it when ``slices`` is None) as float32, scaling applied.

        Only the requested region is read from disk, so tiles of a large volume cost
        memory proportional to the tile.
        """
        region = self.data if slices is None else self.data[slices]
        return np.asarray(region, dtype=np.float32)

    def check_finite(self) -> None:
        """Raise ValueError naming the count of NaN/inf voxels; reads slab by slab."""
        if np.issubdtype(self.dtype, np.integer) and self.scl_slope is None:
            return
        count = sum(
            int(np.count_nonzero(~np.isfinite(self.read(index)))) for index in range(self.shape[0])
        )
        if count:
            raise ValueError(f"{self.source or 'volume'}: {count} non-finite (NaN/inf) voxels")

    def close(self) -> None:
        """Close the HDF5 file behind ``data`` (NIfTI proxies open the file per read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def load(path: str | os.PathLike, ndim: int | None = None) -> Volume:
    """Open a NIfTI or HDF5 volume lazily.

    Args:
        path: ``.nii``/``.nii.gz`` file, or ``file.h5[:/group/dataset]``.
        ndim: if given, the number of axes the data must have: 3 for a volume
            ``(X, Y, Z)``, 4 for a series ``(X, Y, Z, T)``. Nothing is squeezed.

    HDF5 metadata comes from the dataset's attributes: spacing from ``spacing``, else
    ``element_size_um`` (ilastik/Fiji, kept in µm), else ``pixdim``, else 1 per axis;
    the affine from a 4×4 ``affine`` attribute, else None. The HDF5 file stays open
    until :meth:`Volume.close` (or use the Volume as a context manager).

    For NIfTI the file is checked to hold every voxel the header promises (a ``.nii.gz``
    is decompressed once to its end, streaming, which also checks the gzip CRC) so that
    truncation and corruption fail here and not in the middle of a run.

    Returns:
        The :class:`Volume`.

    Raises:
        FileNotFoundError: the file does not exist.
        IsADirectoryError: the path is a folder.
        ValueError: unknown extension, unreadable/truncated/corrupt file, missing or
            ambiguous HDF5 dataset, voxels that are not real numbers (RGB, complex,
            string, compound), or a dimensionality other than ``ndim``.
    """
    path = os.fspath(path)
    hdf5 = _HDF5_PATH.match(path)
    file, dataset = split_path(path)
    if os.path.isdir(file):
        raise IsADirectoryError(f"{file}: is a folder, expected a volume file")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file}: no such file")
    if hdf5:
        volume = _load_hdf5(file, dataset)
    elif _nifti_suffix(path):
        volume = _load_nifti(path)
    else:
        raise ValueError(f"{path}: unknown extension, expected .nii, .nii.gz or .h5[:/dataset]")
    if ndim is not None and volume.ndim != ndim:
        volume.close()
        raise ValueError(f"{path}: expected {ndim}-D data, got shape {volume.shape}")
    return volume


def _nifti_suffix(path: str) -> str | None:
    lower = path.lower()
    return next((s for s in (".nii.gz", ".nii") if lower.endswith(s)), None)


def _load_nifti(path: str) -> Volume:
    nib = _import_nibabel()
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image):
            raise ValueError(f"not NIfTI but {type(img).__name__}")
        _check_complete(path, img)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable NIfTI file ({exc})") from exc
    header = img.header
    _check_voxel_dtype(np.dtype(header.get_data_dtype()), path)
    proxy = img.dataobj
    slope, inter = float(proxy.slope), float(proxy.inter)
    scaled = (slope, inter) != (1.0, 0.0)
    return Volume(
        data=proxy,
        affine=np.asarray(img.affine, dtype=np.float64),
        spacing=tuple(float(z) for z in header.get_zooms()),
        header=header,
        source=path,
        kind="nifti2" if isinstance(img, nib.Nifti2Image) else "nifti1",
        dtype=np.dtype(header.get_data_dtype()),
        scl_slope=slope if scaled else None,
        scl_inter=inter if scaled else None,
    )


def _check_voxel_dtype(dtype: np.dtype, source: str) -> None:
    """Refuse voxels that are not real numbers (RGB, complex, strings, compound records)."""
    if dtype.kind not in "biuf":
        raise ValueError(
            f"{source}: voxels of dtype {dtype} are not real numbers (RGB, complex, string "
            "or compound data); only bool, integer and float volumes can be read"
        )


_GZIP_CHUNK = 1 << 20


def _check_complete(path: str, img: Any) -> None:
    """Fail if the file ends before the last voxel the header promises, or is corrupt.

    A ``.nii.gz`` is decompressed to its end, in chunks of ``_GZIP_CHUNK`` bytes, so that
    the gzip trailer (CRC-32 and length of every member) is checked: a damaged byte in
    the compressed stream is an error here rather than wrong voxels later.
    """
    # The proxy's offset is where nibabel reads from (it fixes up vox_offset 0 in .nii).
    end = int(img.dataobj.offset) + img.header.get_data_dtype().itemsize * int(
        np.prod(img.shape, dtype=np.int64)
    )
    if path.lower().endswith(".gz"):
        size = 0
        try:
            with gzip.open(path, "rb") as stream:
                while chunk := stream.read(_GZIP_CHUNK):
                    size += len(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"corrupt or truncated gzip stream after {size} bytes of data ({exc})"
            ) from exc
    else:
        size = os.path.getsize(path)
    if size < end:
        raise ValueError(f"truncated: {size} bytes of data, header needs {end}")


def _load_hdf5(file: str, dataset: str | None) -> Volume:
    h5py = _import_h5py()
    try:
        handle = h5py.File(file, "r")
    except OSError as exc:
        raise ValueError(f"{file}: not a readable HDF5 file ({exc})") from exc
    try:
        names = _datasets(handle, h5py)
        if dataset is None:
            if len(names) != 1:
                raise ValueError(
                    f"{file}: holds {len(names)} datasets, name one as "
                    f"{file}:/dataset; available: {', '.join(names) or 'none'}"
                )
            dataset = names[0]
        node = handle.get(dataset)
        if not isinstance(node, h5py.Dataset):
            raise ValueError(
                f"{file}: no dataset {dataset}; available: {', '.join(names) or 'none'}"
            )
        _check_voxel_dtype(node.dtype, f"{file}:{node.name}")
        attrs = dict(node.attrs)
        source = f"{file}:{node.name}"
        scaling = [key for key in _HDF5_SCALING if key in attrs]
        if scaling:
            warnings.warn(
                f"{source}: attribute(s) {', '.join(scaling)} are not applied; voxels are read "
                "and written as stored",
                stacklevel=3,
            )
        volume = Volume(
            data=node,
            affine=attrs.get("affine"),
            spacing=_hdf5_spacing(attrs, node.ndim, source),
            header=attrs,
            source=source,
            kind="hdf5",
            dtype=node.dtype,
            _file=handle,
        )
    except Exception:
        handle.close()
        raise
    return volume


# attributes other tools use to scale stored values; volumes reads values as stored
_HDF5_SCALING = ("scale_factor", "add_offset", "scl_slope", "scl_inter", "slope", "intercept")


def _datasets(handle: Any, h5py: Any) -> list[str]:
    names: list[str] = []
    handle.visititems(
        lambda name, node: names.append("/" + name) if isinstance(node, h5py.Dataset) else None
    )
    return names


def _hdf5_spacing(attrs: dict, ndim: int, source: str) -> tuple[float, ...]:
    for key in ("spacing", "element_size_um", "pixdim"):
        if key in attrs:
            spacing = tuple(float(s) for s in np.ravel(attrs[key]))
            if len(spacing) != ndim:
                raise ValueError(
                    f"{source}: attribute {key} has {len(spacing)} values for {ndim}-D data"
                )
            return spacing
    return (1.0,) * ndim


def save(
    volume_or_array: Volume | np.ndarray,
    path: str | os.PathLike,
    like: Volume | None = None,
    dtype_policy: Literal["input", "float32"] = "input",
    overwrite: bool = False,
    nonfinite: Literal["raise", "allow"] = "raise",
) -> str:
    """Write a volume atomically, in the format named by ``path``'s suffix.

    The header, affine, spacing and on-disk dtype come from ``like``, else from the
    saved Volume itself (see the module docstring for the dtype and scaling policy).
    The file is first written to a temporary file in the same folder, then moved into
    place with ``os.replace``: a failure leaves neither a partial output nor the
    temporary file. An HDF5 output is a new file holding only that dataset.

    Args:
        volume_or_array: a :class:`Volume` (read whole) or an array ``(X, Y, Z[, T])``;
            an ``np.memmap`` is checked, converted and written slab by slab (through a
            scratch file beside the output, removed afterwards), never loaded whole.
        path: ``.nii``, ``.nii.gz`` or ``file.h5[:/group/dataset]`` (default ``/data``).
        like: template volume, typically the input the data was computed from.
        dtype_policy: ``"input"`` keeps the template's on-disk dtype, ``"float32"``
            writes float32.
        overwrite: allow replacing an existing file (never an input file).
        nonfinite: ``"raise"`` refuses NaN/inf values, ``"allow"`` writes them.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError, PermissionError: the output folder is missing or cannot be
            written (the message names ``path``).
        IsADirectoryError: ``path`` is a folder.
        TypeError: values that are not bool, integer or float.
        ValueError: ``path`` is an input file, unknown extension, bad policy,
            non-finite values with ``nonfinite="raise"``, or finite values beyond the
            range of a float output dtype.

    Example:
        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "ramp.h5:/volumes/ramp")
        >>> _ = save(np.arange(8.0).reshape(2, 2, 2), out)
        >>> with load(out, ndim=3) as vol:
        ...     vol.read((1, 1)).tolist(), vol.spacing
        ([6.0, 7.0], (1.0, 1.0, 1.0))
    """
    if dtype_policy not in ("input", "float32"):
        raise ValueError(f"dtype_policy must be 'input' or 'float32', got {dtype_policy!r}")
    if nonfinite not in ("raise", "allow"):
        raise ValueError(f"nonfinite must be 'raise' or 'allow', got {nonfinite!r}")
    path = os.fspath(path)
    hdf5 = _HDF5_PATH.match(path)
    file, _ = split_path(path)
    suffix = _nifti_suffix(path)
    if not hdf5 and suffix is None:
        raise ValueError(f"{path}: unknown extension, expected .nii, .nii.gz or .h5[:/dataset]")
    volume = volume_or_array if isinstance(volume_or_array, Volume) else None
    template = like if like is not None else volume
    for source in {v.source for v in (like, volume) if v is not None and v.source}:
        source_file, _ = split_path(source)
        if Path(source_file).resolve() == Path(file).resolve():
            raise ValueError(f"{path}: refusing to write over the input file {source_file}")
    if os.path.isdir(file):
        raise IsADirectoryError(f"{file}: is a folder, expected a volume file to write")
    if os.path.lexists(file) and not overwrite:
        raise FileExistsError(f"{file}: exists, pass overwrite=True to replace it")

    if dtype_policy == "float32":
        out_dtype = np.dtype(np.float32)
    else:
        own = getattr(volume_or_array, "dtype", None)
        own = np.asarray(volume_or_array).dtype if own is None else own
        out_dtype = np.dtype(template.dtype if template is not None else own)
    slope = inter = None
    if template is not None and template.scl_slope is not None and out_dtype.kind in "iu":
        slope, inter = template.scl_slope, template.scl_inter or 0.0

    # A Volume is read at full precision: its stored values, unscaled. When they are to be
    # stored with the same dtype and scaling, they are written back unchanged (exact);
    # otherwise the scaled values are computed in float64 and converted.
    raw_copy = False
    if volume is not None:
        values = _stored_values(volume)
        if volume.scl_slope is not None:
            same = (volume.scl_slope, volume.scl_inter or 0.0) == (slope, inter)
            if same and values.dtype == out_dtype:
                raw_copy = True
            else:
                values = values.astype(np.float64) * volume.scl_slope + (volume.scl_inter or 0.0)
    else:
        values = volume_or_array
    if not isinstance(values, np.memmap):
        values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{path}: cannot save values of dtype {values.dtype}")
    bad = 0
    if values.dtype.kind in "fc":
        bad = sum(
            int(values[rows].size - np.count_nonzero(np.isfinite(values[rows])))
            for rows in _row_chunks(values)
        )
    if bad and nonfinite == "raise":
        raise ValueError(f"{path}: {bad} non-finite (NaN/inf) values; pass nonfinite='allow'")

    writer = _write_hdf5 if hdf5 else _write_nifti
    folder = os.path.dirname(os.path.abspath(file))
    name = os.path.basename(file)

    def convert(block: np.ndarray) -> np.ndarray:
        if raw_copy:
            return block
        return to_dtype(block, out_dtype, slope, inter, nonfinite="allow", name=path)

    def write(tmp: Path) -> None:
        if isinstance(values, np.memmap) and (values.dtype != out_dtype or out_dtype.kind in "iu"):
            # Streaming: convert slab by slab into a scratch memmap beside the output, so
            # that a volume larger than memory is never held in it.
            with scratch_file(folder, name, ".raw") as scratch:
                raw = np.memmap(scratch, dtype=out_dtype, mode="w+", shape=values.shape)
                for rows in _row_chunks(values):
                    raw[rows] = convert(np.asarray(values[rows]))
                raw.flush()
                emit(str(tmp), raw)
                del raw  # closes the scratch memmap before its file is removed
        elif isinstance(values, np.memmap):
            emit(str(tmp), values)
        else:
            emit(str(tmp), convert(values))

    def emit(tmp: str, raw: Any) -> None:
        if hdf5:
            writer(tmp, hdf5.group("dataset") or _DEFAULT_DATASET, raw, volume, template)
        else:
            writer(tmp, raw, volume, template, slope, inter)

    atomic_write(file, write, suffix=suffix or ".h5")
    return path


_CHUNK_BYTES = 32 << 20


def _row_chunks(array: Any) -> Any:
    """Slices along the first axis of about ``_CHUNK_BYTES`` each (the whole of a 0-D array)."""
    if array.ndim == 0:
        yield ()
        return
    row = array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    step = max(1, _CHUNK_BYTES // max(row, 1))
    for start in range(0, array.shape[0], step):
        yield slice(start, min(start + step, array.shape[0]))


def _stored_values(volume: Volume) -> np.ndarray:
    """All of ``volume``'s stored values in their on-disk dtype, without scaling."""
    data = volume.data
    if hasattr(data, "get_unscaled"):  # a nibabel ArrayProxy
        return np.asarray(data.get_unscaled())
    return np.asarray(data[()] if hasattr(data, "id") else data)


def _write_nifti(
    tmp: str,
    raw: np.ndarray,
    volume: Volume | None,
    template: Volume | None,
    slope: float | None,
    inter: float | None,
) -> None:
    nib = _import_nibabel()
    source = template if template is not None else volume
    if source is not None and isinstance(source.header, nib.Nifti1Header):
        header = source.header.copy()
        image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        header.set_data_dtype(raw.dtype)
        img = image_class(raw, source.affine, header)
        # Restore the template's transforms and codes exactly (nibabel may re-derive them).
        img.set_qform(header.get_qform(), code=int(header["qform_code"]))
        img.set_sform(header.get_sform(), code=int(header["sform_code"]))
    else:
        affine = source.affine if source is not None else None
        if affine is None:
            spacing = source.spacing[:3] if source is not None else (1.0, 1.0, 1.0)
            affine = np.diag([*spacing, *(1.0,) * (4 - len(spacing))])
        img = nib.Nifti1Image(raw, affine)
        img.header.set_data_dtype(raw.dtype)
        if source is not None and len(source.spacing) == raw.ndim:
            img.header.set_zooms(source.spacing)
    img.header.set_slope_inter(slope, inter)
    nib.save(img, tmp)


def _write_hdf5(
    tmp: str, dataset: str, raw: np.ndarray, volume: Volume | None, template: Volume | None
) -> None:
    h5py = _import_h5py()
    source = template if template is not None else volume
    with h5py.File(tmp, "w") as handle:
        if isinstance(raw, np.memmap):  # written slab by slab
            node = handle.create_dataset(
                dataset, shape=raw.shape, dtype=raw.dtype, chunks=True if raw.ndim else None
            )
            for rows in _row_chunks(raw):
                node[rows] = np.asarray(raw[rows])
        else:
            node = handle.create_dataset(dataset, data=raw, chunks=True if raw.ndim else None)
        if source is not None and isinstance(source.header, dict):
            node.attrs.update(source.header)
        node.attrs["spacing"] = np.asarray(
            source.spacing if source is not None else (1.0,) * raw.ndim, dtype=np.float64
        )
        if source is not None and source.affine is not None:
            node.attrs["affine"] = source.affine
