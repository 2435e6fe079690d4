"""Image files to and from ``(C, H, W)`` float tensors: PNG, TIFF, JPEG and ``.npy``.

``read_image`` gives an :class:`ImageFile`: the pixels as a float32 ``(C, H, W)`` tensor
(``C`` = 1 grey or 3 colour), the alpha channel kept aside, and what is needed to write
the result back as the same kind of file (``write_image``). The policy, in full:

**Values.** Integer samples are divided by their type's maximum, so pixels lie in
[0, 1]: ``uint8`` by 255, ``uint16`` by 65535 (``scale``). Writing multiplies by the
same number, rounds to the nearest integer and clips to the type's range, so an
unchanged ``uint8`` or ``uint16`` image is written back bit for bit. Floating-point
samples (TIFF, ``.npy``) are kept as they are (``scale`` 1, no clipping) and written back
as float32. Other sample types (signed or 32-bit integers, booleans) are refused, with
the file named: their scale is not known.

**Modes.** Grey (``L``) gives one channel and colour (``RGB``) three; the alpha of ``LA``
and ``RGBA`` images is kept aside (``alpha``, same scale as the pixels) and written back
unchanged, so a denoiser never sees it. Bilevel images are read as ``L`` (0 and 255);
palette images as ``RGB`` (``RGBA`` if the palette has transparency) and written back as
such; other Pillow modes (CMYK, YCbCr, LAB) are converted to ``RGB`` by Pillow, and the
written file is ``RGB``. ``mode`` always says what will be written.

**Orientation.** An EXIF orientation (JPEG, PNG, TIFF) is applied on reading, so the
pixels are upright as a viewer shows them; the metadata then records orientation 1 and
the written file is stored upright.

**Metadata kept where the format allows.** PNG: ICC profile, resolution, text chunks,
EXIF. JPEG: ICC profile, resolution, EXIF. TIFF: ICC profile, resolution and its unit,
the image description. ``.npy`` has none. A JPEG is re-encoded at ``quality`` 95 with no
chroma subsampling (any JPEG re-encoding loses information; pass another ``quality`` to
``write_image``).

**Layout of ``.npy`` files.** Channels last, like other image libraries: ``(H, W)``
grey, or ``(H, W, C)`` with ``C`` = 1 (grey), 2 (grey + alpha), 3 (colour) or 4
(colour + alpha); written back in the same layout.

**Formats and readers.** Pillow reads and writes PNG and JPEG, except 16-bit PNGs with colour or
alpha, which Pillow cannot hold: pypng reads and writes those. tifffile reads and writes TIFF
(8/16-bit integer and float samples, any planar layout). Multi-frame files (animated PNG,
multi-page TIFF) are refused rather than cut to their first frame.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(folder / "a.png")
    >>> image = read_image(folder / "a.png")
    >>> image.mode, image.dtype, tuple(image.pixels.shape), image.pixels[0, 0, 2].item()
    ('L', 'uint8', (1, 1, 3), 1.0)
    >>> write_image(folder / "b.png", image)
    >>> np.asarray(Image.open(folder / "b.png")).tolist()
    [[0, 128, 255]]
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write

__all__ = ["IMAGE_SUFFIXES", "ImageFile", "is_image_path", "read_image", "write_image"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")
"""The file suffixes ``read_image`` and ``write_image`` know (case-insensitive)."""

_FORMATS = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".npy": "NPY",
}
_SCALES = {"uint8": 255.0, "uint16": 65535.0}
_FLOATS = ("float16", "float32", "float64")
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_INSTALL_HINT = 'pip install "ndwconv[images]"'
_ORIENTATION = 0x0112  # the EXIF/TIFF orientation tag


@dataclass(frozen=True)
class ImageFile:
    """An image read by :func:`read_image`, ready to be denoised and written back.

    Attributes:
        pixels: float32 ``(C, H, W)``, ``C`` = 1 (grey) or 3 (colour), upright; integer
            files scaled to [0, 1] (see the module's policy).
        alpha: float32 ``(1, H, W)`` on the same scale, or ``None``: kept aside and
            written back as it was.
        dtype: the sample type of the file (``"uint8"``, ``"uint16"``, ``"float32"``,
            ``"float64"``); ``write_image`` writes this type.
        scale: the file's value of pixel value 1 (255, 65535, or 1 for float samples).
        mode: ``"L"``, ``"LA"``, ``"RGB"`` or ``"RGBA"``: what ``write_image`` writes.
        format: ``"PNG"``, ``"TIFF"``, ``"JPEG"`` or ``"NPY"``, the format it was read from.
        metadata: what the format keeps besides pixels (ICC profile, resolution, text,
            EXIF with orientation 1, TIFF description); written back where the output
            format holds it.
        source: the file it was read from (``None`` for one made in memory).
    """

    pixels: torch.Tensor
    alpha: torch.Tensor | None = None
    dtype: str = "uint8"
    scale: float = 255.0
    mode: str = "L"
    format: str = "PNG"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, torch.Tensor) or self.pixels.ndim != 3:
            raise ValueError(
                f"pixels must be a (C, H, W) tensor, got "
                f"{getattr(self.pixels, 'shape', type(self.pixels).__name__)}"
            )
        if self.pixels.shape[0] not in (1, 3):
            raise ValueError(
                f"pixels must have 1 (grey) or 3 (colour) channels, got {self.pixels.shape[0]}"
            )
        if self.alpha is not None and tuple(self.alpha.shape) != (1, *self.pixels.shape[1:]):
            raise ValueError(
                f"alpha must be (1, H, W) = (1, {self.pixels.shape[1]}, "
                f"{self.pixels.shape[2]}), got {tuple(self.alpha.shape)}"
            )
        if self.dtype not in (*_SCALES, *_FLOATS):
            raise ValueError(
                f"dtype must be one of {', '.join((*_SCALES, *_FLOATS))}, got {self.dtype!r}"
            )
        expected = _MODES[self.pixels.shape[0] + (self.alpha is not None)]
        if self.mode != expected:
            raise ValueError(
                f"mode {self.mode!r} does not match {self.pixels.shape[0]} channel(s) "
                f"{'with' if self.alpha is not None else 'without'} alpha ({expected!r})"
            )

    @property
    def channels(self) -> int:
        """1 for grey, 3 for colour (alpha not counted)."""
        return int(self.pixels.shape[0])

    def with_pixels(self, pixels: torch.Tensor) -> ImageFile:
        """The same file with other pixels of the same shape (e.g. the denoised ones)."""
        pixels = torch.as_tensor(pixels)
        if tuple(pixels.shape) != tuple(self.pixels.shape):
            raise ValueError(
                f"pixels must keep the image's shape {tuple(self.pixels.shape)}, "
                f"got {tuple(pixels.shape)}"
            )
        return dataclasses.replace(self, pixels=pixels.detach().to("cpu", torch.float32))


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of the suffixes in ``IMAGE_SUFFIXES``."""
    return Path(path).suffix.lower() in _FORMATS


def _format_of(path: Path, what: str) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{what} {str(path)!r}: unknown image extension {path.suffix!r}, expected one of "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    return fmt


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read a PNG, TIFF, JPEG or ``.npy`` image (see the module's policy).

    Args:
        path: the file; its suffix chooses the reader.

    Returns:
        The :class:`ImageFile`, pixels upright, alpha aside.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unknown suffix, a file that cannot be decoded, a sample type with
            no known scale, a multi-frame file or an array of an image shape it cannot
            be (the message names the file).
        ImportError: the reader the format needs is not installed.
    """
    path = Path(path)
    fmt = _format_of(path, "path")
    if not path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"no such image file: {str(path)!r}")
        raise ValueError(f"image path {str(path)!r} is not a file")
    if fmt == "NPY":
        array, metadata = _read_npy(path), {}
    elif fmt == "TIFF":
        array, metadata = _read_tiff(path)
    else:
        array, metadata = _read_pillow(path, fmt)
    return _image_from_array(array, fmt, metadata, str(path))


def _image_from_array(
    array: np.ndarray, fmt: str, metadata: dict[str, Any], source: str
) -> ImageFile:
    """``(H, W)`` or ``(H, W, C)`` samples → an ImageFile (scaled, alpha split off)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in _MODES:
        raise ValueError(
            f"image {source!r}: expected (H, W) or (H, W, C) samples with C in 1..4, got "
            f"shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image {source!r} is empty (shape {array.shape})")
    dtype = array.dtype.name
    if dtype in _SCALES:
        scale = _SCALES[dtype]
        values = torch.from_numpy(array.astype(np.float32) / np.float32(scale))
    elif dtype in _FLOATS:
        scale = 1.0
        values = torch.from_numpy(array.astype(np.float32))
        dtype = "float64" if dtype == "float64" else "float32"
    else:
        raise ValueError(
            f"image {source!r} has {dtype} samples, whose value range is not known; "
            "uint8, uint16 and floating-point samples are read"
        )
    values = values.permute(2, 0, 1).contiguous()
    count = values.shape[0]
    colour = 3 if count >= 3 else 1
    alpha = values[colour:].clone() if count in (2, 4) else None
    return ImageFile(
        pixels=values[:colour].clone(),
        alpha=alpha,
        dtype=dtype,
        scale=scale,
        mode=_MODES[count],
        format=fmt,
        metadata=metadata,
        source=source,
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"cannot read {str(path)!r} as an image array: {err}") from err
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{str(path)!r} does not hold one array")
    return np.ascontiguousarray(array)


def _require(module: str, what: str) -> Any:
    """Import ``module`` (the reader or writer ``what`` needs), or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = {"PIL": "Pillow", "png": "pypng"}.get(module.split(".")[0], module)
        raise ImportError(f"{what} need {package}: {_INSTALL_HINT}") from err


def _read_pillow(path: Path, fmt: str) -> tuple[np.ndarray, dict[str, Any]]:
    image_module = _require("PIL.Image", "PNG and JPEG files")
    image_ops = _require("PIL.ImageOps", "PNG and JPEG files")
    try:
        image = image_module.open(path)
    except Exception as err:  # Pillow reports malformed files with many exception types
        raise ValueError(f"cannot read image file {str(path)!r}: {err}") from err
    with image:
        if image.format != fmt:
            raise ValueError(
                f"image file {str(path)!r} holds {image.format or 'unknown'} data, not {fmt} "
                "as its extension says"
            )
        if getattr(image, "n_frames", 1) > 1:
            raise ValueError(
                f"image file {str(path)!r} has {image.n_frames} frames; one image per file "
                "is read (split the frames first)"
            )
        if fmt == "PNG" and _png_is_16bit_colour(path):
            return _read_png16(path)
        try:
            image.load()
        except Exception as err:
            raise ValueError(f"cannot decode image file {str(path)!r}: {err}") from err
        metadata = _pillow_metadata(image, fmt)
        image = image_ops.exif_transpose(image)
        return _pillow_array(image, str(path)), metadata


def _pillow_metadata(image: Any, fmt: str) -> dict[str, Any]:
    info = image.info
    metadata: dict[str, Any] = {}
    if info.get("icc_profile"):
        metadata["icc_profile"] = bytes(info["icc_profile"])
    if "dpi" in info:
        metadata["dpi"] = tuple(float(v) for v in info["dpi"])
    if len(image.getexif()):
        exif = type(image.getexif())()  # a copy: the image's own still tells exif_transpose
        exif.load(image.getexif().tobytes())
        exif[_ORIENTATION] = 1  # the pixels are made upright on reading
        metadata["exif"] = exif.tobytes()
    if fmt == "PNG":
        text = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
        if text:
            metadata["text"] = text
    return metadata


def _pillow_array(image: Any, label: str) -> np.ndarray:
    mode = image.mode
    if mode == "1":
        return np.asarray(image.convert("L"))
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if mode == "I":  # 32-bit integer: older Pillow opens 16-bit PNGs in this mode
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"image {label!r} has 32-bit integer samples outside [0, 65535], whose "
                "value range is not known"
            )
        return values.astype(np.uint16)
    if mode == "F":
        return np.asarray(image).astype(np.float32)
    if mode in ("P", "PA"):
        transparent = "transparency" in image.info or mode == "PA"
        return np.asarray(image.convert("RGBA" if transparent else "RGB"))
    return np.asarray(image.convert("RGB"))  # CMYK, YCbCr, LAB, …


def _png_is_16bit_colour(path: Path) -> bool:
    """Whether the PNG's header says 16-bit RGB, grey + alpha or RGBA (colour types 2, 4
    and 6), which Pillow reads as 8-bit."""
    with open(path, "rb") as f:
        head = f.read(33)
    # signature (8), IHDR length and type (8), width, height (8), bit depth, colour type
    return len(head) >= 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """A 16-bit colour PNG through pypng (Pillow would keep only the high bytes)."""
    png = _require("png", "16-bit colour PNG files")
    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except Exception as err:
        raise ValueError(f"cannot decode image file {str(path)!r}: {err}") from err
    planes = int(info["planes"])
    metadata: dict[str, Any] = {}
    if info.get("physical"):
        x, y, metre = info["physical"]
        if metre:
            metadata["dpi"] = (x * 0.0254, y * 0.0254)
    return array.reshape(height, width, planes), metadata


def _read_tiff(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    tifffile = _require("tifffile", "TIFF files")
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            page = tif.pages[0]
            metadata = _tiff_metadata(page)
            photometric = int(page.photometric)
            planar_separate = int(page.planarconfig) == 2
            samples = int(page.samplesperpixel)
            orientation = page.tags.get(274)
            orientation = int(orientation.value) if orientation is not None else 1
            array = page.asarray() if pages == 1 else None
    except (ValueError, tifffile.TiffFileError) as err:
        raise ValueError(f"cannot read TIFF file {str(path)!r}: {err}") from err
    if array is None:
        raise ValueError(
            f"TIFF file {str(path)!r} has {pages} pages; one image per file is read (a "
            "stack is a volume: see ndwconv.adapters.volumes)"
        )
    if samples > 1 and planar_separate and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if photometric == 0:  # min-is-white: make it min-is-black like everything else
        if array.dtype.name not in _SCALES:
            raise ValueError(f"TIFF file {str(path)!r}: min-is-white float samples")
        array = (np.iinfo(array.dtype).max - array).astype(array.dtype)  # type kept
    if photometric == 3:  # palette
        raise ValueError(f"TIFF file {str(path)!r} is a palette image; save it as RGB")
    return np.ascontiguousarray(_upright(array, orientation)), metadata


def _tiff_metadata(page: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    tags = page.tags
    if "ImageDescription" in tags and isinstance(tags["ImageDescription"].value, str):
        description = tags["ImageDescription"].value
        if not description.startswith("{"):  # not tifffile's own shape record
            metadata["description"] = description
    if "XResolution" in tags and "YResolution" in tags:
        x, y = tags["XResolution"].value, tags["YResolution"].value
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        metadata["resolution"] = (x[0] / x[1], y[0] / y[1], unit)
    if 34675 in tags:
        metadata["icc_profile"] = bytes(tags[34675].value)
    return metadata


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply a TIFF/EXIF orientation (1–8) to ``(H, W[, C])`` samples.

    The orientation says where the stored first row and column are shown: 2 mirrors
    left–right, 3 turns by 180°, 4 mirrors top–bottom, 5 transposes, 6 turns 90°
    clockwise, 7 transverses, 8 turns 90° counter-clockwise.
    """
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return np.swapaxes(array, 0, 1)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return np.rot90(array, k=-1)[::-1]
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def write_image(path: str | os.PathLike, image: ImageFile, *, quality: int = 95) -> None:
    """Write ``image`` to ``path`` atomically, in the format of ``path``'s suffix.

    The samples are written in ``image.dtype`` (integer types: ``pixels · scale``
    rounded to the nearest integer and clipped to the type's range), the alpha channel
    re-attached, and the metadata the format can hold written with them (see the
    module's policy). Nothing is written under ``path`` unless the whole file is.

    Args:
        path: the output file (its folder must exist); ``.png``, ``.tif``/``.tiff``,
            ``.jpg``/``.jpeg`` or ``.npy``.
        image: what to write, e.g. ``read_image(...).with_pixels(denoised)``.
        quality: JPEG quality (1–95); other formats are lossless.

    Raises:
        ValueError: an unknown suffix, a sample type the format cannot hold (float
            samples in PNG or JPEG, 16-bit samples or alpha in JPEG), non-finite values
            for an integer type, or a bad ``quality``.
        ImportError: the writer the format needs is not installed.
    """
    path = Path(path)
    fmt = _format_of(path, "path")
    if not isinstance(image, ImageFile):
        raise TypeError(f"image must be an ImageFile (read_image), got {type(image).__name__}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an integer in 1..95, got {quality!r}")
    if fmt in ("PNG", "JPEG") and image.dtype in _FLOATS:
        raise ValueError(
            f"cannot write {str(path)!r}: {fmt} holds integer samples and this image has "
            f"{image.dtype} samples; write it as .tif or .npy"
        )
    if fmt == "JPEG" and (image.dtype != "uint8" or image.alpha is not None):
        raise ValueError(
            f"cannot write {str(path)!r}: JPEG holds 8-bit samples without alpha, and this "
            f"image is {image.dtype} {image.mode}; write it as .png or .tif"
        )
    array = _samples(image, str(path))
    writers = {"NPY": _write_npy, "TIFF": _write_tiff, "PNG": _write_png, "JPEG": _write_jpeg}
    suffix = path.suffix.lower()
    atomic_write(path, lambda tmp: writers[fmt](tmp, array, image, quality), suffix=suffix)


def _samples(image: ImageFile, label: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` samples of ``image.dtype``, alpha re-attached."""
    values = image.pixels.detach().to("cpu", torch.float32)
    if image.alpha is not None:
        values = torch.cat([values, image.alpha.detach().to("cpu", torch.float32)])
    array = values.permute(1, 2, 0).numpy()
    if image.dtype in _SCALES:
        if not np.isfinite(array).all():
            raise ValueError(f"cannot write {label!r}: the pixels hold NaN or infinite values")
        top = _SCALES[image.dtype]
        array = np.clip(np.rint(array.astype(np.float64) * top), 0, top).astype(image.dtype)
    else:
        array = array.astype(np.float32)
    return array[..., 0] if array.shape[-1] == 1 else array


def _write_npy(tmp: Path, array: np.ndarray, image: ImageFile, quality: int) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _write_tiff(tmp: Path, array: np.ndarray, image: ImageFile, quality: int) -> None:
    tifffile = _require("tifffile", "TIFF files")
    kwargs: dict[str, Any] = {
        "photometric": "rgb" if image.channels == 3 else "minisblack",
        "metadata": None,
    }
    if image.alpha is not None:
        kwargs["extrasamples"] = ["unassalpha"]
    meta = image.metadata
    if "resolution" in meta:
        x, y, unit = meta["resolution"]
        kwargs["resolution"] = (x, y)
        kwargs["resolutionunit"] = unit
    elif "dpi" in meta:
        kwargs["resolution"] = tuple(meta["dpi"])
        kwargs["resolutionunit"] = 2
    if "description" in meta:
        kwargs["description"] = meta["description"]
    if "icc_profile" in meta:
        kwargs["iccprofile"] = meta["icc_profile"]
    tifffile.imwrite(tmp, array, **kwargs)


def _pillow_image(array: np.ndarray, image: ImageFile) -> Any:
    image_module = _require("PIL.Image", "PNG and JPEG files")
    if array.dtype == np.uint16:  # grey only here: 16-bit colour goes through pypng
        height, width = array.shape
        return image_module.frombytes("I;16", (width, height), array.astype("<u2").tobytes())
    out = image_module.fromarray(np.ascontiguousarray(array))
    if out.mode != image.mode:  # cannot happen for uint8 (H, W[, C]); a guard, not a path
        raise ValueError(f"internal: samples gave Pillow mode {out.mode}, not {image.mode}")
    return out


def _write_png(tmp: Path, array: np.ndarray, image: ImageFile, quality: int) -> None:
    meta = image.metadata
    if array.dtype == np.uint16 and (image.channels == 3 or image.alpha is not None):
        _write_png16(tmp, array, meta)
        return
    png_plugin = _require("PIL.PngImagePlugin", "PNG files")
    out = _pillow_image(array, image)
    kwargs: dict[str, Any] = {}
    if "icc_profile" in meta:
        kwargs["icc_profile"] = meta["icc_profile"]
    if "dpi" in meta:
        kwargs["dpi"] = tuple(meta["dpi"])
    if "exif" in meta:
        kwargs["exif"] = meta["exif"]
    if meta.get("text"):
        chunks = png_plugin.PngInfo()
        for key, value in meta["text"].items():
            chunks.add_itxt(key, value)
        kwargs["pnginfo"] = chunks
    out.save(tmp, format="PNG", **kwargs)


def _write_png16(tmp: Path, array: np.ndarray, meta: Mapping[str, Any]) -> None:
    png = _require("png", "16-bit colour PNG files")
    height, width, planes = array.shape
    resolution: dict[str, Any] = {}
    if "dpi" in meta:
        x, y = meta["dpi"]
        resolution = {
            "x_pixels_per_unit": round(x / 0.0254),
            "y_pixels_per_unit": round(y / 0.0254),
            "unit_is_meter": True,
        }
    writer = png.Writer(
        width=width,
        height=height,
        bitdepth=16,
        greyscale=planes in (1, 2),
        alpha=planes in (2, 4),
        **resolution,
    )
    with open(tmp, "wb") as f:
        writer.write(f, array.reshape(height, width * planes))


def _write_jpeg(tmp: Path, array: np.ndarray, image: ImageFile, quality: int) -> None:
    out = _pillow_image(array, image)
    meta = image.metadata
    kwargs: dict[str, Any] = {"quality": quality, "subsampling": 0}
    if "icc_profile" in meta:
        kwargs["icc_profile"] = meta["icc_profile"]
    if "dpi" in meta:
        kwargs["dpi"] = tuple(round(v) for v in meta["dpi"])
    if "exif" in meta:
        kwargs["exif"] = meta["exif"]
    out.save(tmp, format="JPEG", **kwargs)
