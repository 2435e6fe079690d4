"""Images for the denoising recipes: folders, embedded samples and seeded noisy patches.

Two kinds of image source share one interface, a sequence of ``uint8`` arrays of shape
``(H, W)`` (``channels=1``) or ``(H, W, 3)`` (``channels=3``) with a ``names`` attribute:

* ``ImageFolder``: a folder of image files, the layout of DIV2K's ``DIV2K_train_HR`` /
  ``DIV2K_valid_HR`` and of the Train400 / BSD68 denoising sets;
* ``EmbeddedImages``: the sample photographs that ship inside scikit-image (nothing is
  downloaded), the data of ``ndwconv compare denoise --config quick``.

Training data are random patches with additive white Gaussian noise (``PatchDataset``);
validation data are whole images with noise fixed by the image's name
(``NoisyValidation``). Noise levels ``sigma`` are on the 0–255 scale, images on the
[0, 1] scale, and noisy images are not clipped (the DnCNN convention of Zhang et al.,
"Beyond a Gaussian Denoiser", IEEE TIP 2017).

Everything random is a pure function of a seed and an index or name, mixed by
``numpy.random.SeedSequence`` into the seed of a ``torch.Generator``: the same item comes
out whatever the access order, the number of ``DataLoader`` workers or the process.

Colour is reduced to grey with ITU-R BT.601 luma, ``L = R·299/1000 + G·587/1000 +
B·114/1000`` rounded to 8 bits (Pillow's ``"L"`` conversion), for files and embedded
images alike.

Example:
    >>> import numpy as np
    >>> images = [np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)]
    >>> data = PatchDataset(images, patch_size=16, noise=NoiseSpec.parse("0-55"), seed=1)
    >>> noisy, clean = data.batch(range(4))
    >>> tuple(noisy.shape), noisy.dtype, len(data)
    ((4, 1, 16, 16), torch.float32, 128)
"""

from __future__ import annotations

import math
import operator
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...engine import streams

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "EMBEDDED_PREFIX",
    "EMBEDDED_TRAIN",
    "EMBEDDED_VALIDATION",
    "IMAGE_EXTENSIONS",
    "PATCHES_PER_IMAGE",
    "EmbeddedImages",
    "ImageFolder",
    "ImageSubset",
    "NoiseSpec",
    "NoisyValidation",
    "PatchDataset",
    "add_gaussian_noise",
    "load_image",
    "open_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File extensions ``ImageFolder`` picks up (compared case-insensitively)."""

EMBEDDED_TRAIN = (
    "brick",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "moon",
    "page",
    "rocket",
    "text",
)
"""``skimage.data`` images of the embedded training set (used by the quick configuration)."""

EMBEDDED_VALIDATION = ("camera", "astronaut")
"""Held-out ``skimage.data`` images of the embedded validation set (512×512 each)."""

EMBEDDED_PREFIX = "embedded:"
"""Prefix of the ``open_images`` sources that name an embedded split (never a path)."""

PATCHES_PER_IMAGE = 128
"""Patches per image in ``PatchDataset``'s nominal epoch when no ``length`` is given."""

_SPLITS = {"train": EMBEDDED_TRAIN, "validation": EMBEDDED_VALIDATION}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_INSTALL_HINT = 'pip install -e ".[recipes]" in the ndwconv repository root'


# ---------------------------------------------------------------------------------------
# Reading images
# ---------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike, channels: int = 1) -> np.ndarray:
    """Read an image file as an 8-bit array with the requested number of channels.

    PNG, TIFF, JPEG and ``.npy`` files are read by
    :func:`ndwconv.adapters.images.read_image` (the reader ``ndwconv denoise`` uses, so
    training data and the images a model is applied to are read alike: EXIF orientation
    applied, alpha dropped here, palette and bilevel images expanded); other formats
    Pillow reads (BMP, …) by Pillow directly. Then: colour → grey with ITU-R BT.601 luma
    (Pillow's ``"L"`` mode, ``L = R·299/1000 + G·587/1000 + B·114/1000`` rounded); grey →
    colour by replicating the grey channel; 16-bit samples (grey or colour) are scaled to
    8 bits as ``round(v · 255 / 65535)``. Floating-point images are refused: their scale
    is unknown.

    Args:
        path: the image file.
        channels: 1 for ``(H, W)`` grey, 3 for ``(H, W, 3)`` RGB.

    Returns:
        A writable ``uint8`` array ``(H, W)`` or ``(H, W, 3)``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file cannot be decoded (the message names it), holds a
            floating-point or out-of-range 32-bit image, or ``channels`` is not 1 or 3.
        ImportError: if Pillow (or the reader the format needs) is not installed.
    """
    _check_channels(channels)
    label = repr(os.fspath(path))
    from ndwconv.adapters.images import is_image_path, read_image

    if is_image_path(path):
        image = read_image(path)
        if image.dtype not in ("uint8", "uint16"):
            raise ValueError(
                f"image {label} is floating-point ({image.dtype}) and has no known 8-bit "
                "scale; convert it to 8-bit first"
            )
        values = np.rint(image.pixels.permute(1, 2, 0).double().numpy() * image.scale)
        values = values.astype(np.int64)
        if image.dtype == "uint16":
            values = (values * 255 + 32767) // 65535
        array = values.astype(np.uint8)
        if image.channels == 1:
            grey = array[..., 0]
            return grey if channels == 1 else np.repeat(grey[..., None], 3, axis=-1)
        return _to_channels(_import_pil().fromarray(array), channels, label)
    pil = _import_pil()
    try:
        opened = pil.open(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # Pillow reports malformed data with many exception types
        raise ValueError(f"cannot read image file {os.fspath(path)!r}: {err}") from err
    with opened:
        try:
            opened.load()
        except Exception as err:
            raise ValueError(f"cannot decode image file {os.fspath(path)!r}: {err}") from err
        return _to_channels(opened, channels, label)


def _to_channels(image: Image.Image, channels: int, label: str) -> np.ndarray:
    """A decoded Pillow image → ``uint8 (H, W)`` (channels 1) or ``(H, W, 3)`` (channels 3)."""
    mode = image.mode
    if mode.startswith("F"):
        raise ValueError(
            f"image {label} is floating-point (Pillow mode {mode!r}) and has no known 8-bit "
            "scale; convert it to 8-bit first"
        )
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"image {label} (Pillow mode {mode!r}) has values outside [0, 65535]; "
                "convert it to 8-bit first"
            )
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
    elif mode in ("1", "L", "LA", "La"):
        grey = np.array(image.convert("L"))
    else:
        rgb = image.convert("RGB")
        if channels == 3:
            return np.array(rgb)
        grey = np.array(rgb.convert("L"))
    return grey if channels == 1 else np.repeat(grey[..., None], 3, axis=-1)


def _import_pil():
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            f"reading images needs Pillow, which comes with the recipes extra: {_INSTALL_HINT}"
        ) from err
    return Image


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def _check_index(index: int, length: int) -> int:
    """``index`` as a non-negative int below ``length`` (negative ones count from the end)."""
    i = operator.index(index)
    if not -length <= i < length:
        raise IndexError(f"index {i} is out of range for {length} items")
    return i % length


class _LazyImages(Sequence[np.ndarray]):
    """A sequence of named images decoded on first access and, optionally, kept."""

    def __init__(self, names: Sequence[str], channels: int, cache: bool):
        _check_channels(channels)
        self.names: tuple[str, ...] = tuple(names)
        self.channels = channels
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        i = _check_index(index, len(self))
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image = self._load(i)
        if self._cache is not None:
            image.flags.writeable = False  # a cached image is shared by every caller
            self._cache[i] = image
        return image

    def _load(self, i: int) -> np.ndarray:
        raise NotImplementedError


class ImageFolder(_LazyImages):
    """The images of a folder, sorted by their path relative to the folder.

    Files whose extension is in ``IMAGE_EXTENSIONS`` (any case) are taken; other files,
    hidden files (a path part starting with ``"."``) and, unless ``recursive``,
    subfolders are ignored. The order sorts relative POSIX paths, so it is the same on
    every machine. Images are decoded by ``load_image`` on first access; with ``cache``
    they are kept (read-only) for later accesses.

    Args:
        root: the folder.
        channels: 1 for ``(H, W)`` grey, 3 for ``(H, W, 3)`` RGB images.
        recursive: also take images in subfolders, at any depth.
        cache: keep decoded images in memory.

    Attributes:
        root: the folder, as a ``Path``.
        paths: the image files, in order.
        names: per image, its relative path without extension (``"test001"``,
            ``"sub/x"``); where two files differ only by extension, they keep it.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
        NotADirectoryError: if ``root`` is not a folder.
        ValueError: if the folder holds no image (the message lists the extensions).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as root:
        ...     Image.fromarray(np.zeros((4, 6), np.uint8)).save(f"{root}/b.png")
        ...     Image.fromarray(np.zeros((5, 3, 3), np.uint8)).save(f"{root}/a.bmp")
        ...     images = ImageFolder(root, channels=3)
        ...     images.names, [im.shape for im in images]
        (('a', 'b'), [(5, 3, 3), (4, 6, 3)])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        channels: int = 1,
        recursive: bool = False,
        cache: bool = True,
    ):
        _check_channels(channels)
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder {os.fspath(root)!r} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"image folder {os.fspath(root)!r} is not a folder")
        relative = _find_images(self.root, recursive)
        if not relative:
            where = "or its subfolders " if recursive else ""
            raise ValueError(
                f"image folder {os.fspath(root)!r} {where}holds no image file with an "
                f"extension in {', '.join(IMAGE_EXTENSIONS)}"
            )
        self.paths: tuple[Path, ...] = tuple(self.root / rel for rel in relative)
        super().__init__(_unique_names(relative), channels, cache)
        self.recursive = recursive

    def _load(self, i: int) -> np.ndarray:
        return load_image(self.paths[i], self.channels)

    def __repr__(self) -> str:
        return (
            f"ImageFolder({os.fspath(self.root)!r}, channels={self.channels}, "
            f"recursive={self.recursive}): {len(self)} images"
        )


def _find_images(root: Path, recursive: bool) -> list[Path]:
    """Image files under ``root`` as relative paths, sorted by their POSIX form."""
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        relative = path.relative_to(root)
        if (
            path.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in relative.parts)
            and path.is_file()
        ):
            found.append(relative)
    return sorted(found, key=lambda rel: rel.as_posix())


def _unique_names(relative: Sequence[Path]) -> list[str]:
    """Relative paths without extension, keeping the extension where that would collide."""
    stems = [rel.with_suffix("").as_posix() for rel in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return [
        stem if counts[stem] == 1 else rel.as_posix()
        for stem, rel in zip(stems, relative, strict=True)
    ]


class EmbeddedImages(_LazyImages):
    """The sample photographs inside scikit-image, as a training or validation set.

    ``"train"`` is ``EMBEDDED_TRAIN``, ``"validation"`` is ``EMBEDDED_VALIDATION``;
    nothing is downloaded. Colour images become grey with the same BT.601 luma as
    ``load_image``; grey images are replicated for ``channels=3``. Images are kept
    (read-only) once decoded.

    Args:
        split: ``"train"`` or ``"validation"``.
        channels: 1 for ``(H, W)`` grey, 3 for ``(H, W, 3)`` RGB images.

    Raises:
        ValueError: on an unknown ``split`` or ``channels``.
        ImportError: if scikit-image is not installed.

    Example:
        >>> images = EmbeddedImages("validation")
        >>> images.names, images[0].shape, images[0].dtype
        (('camera', 'astronaut'), (512, 512), dtype('uint8'))
    """

    def __init__(self, split: str = "train", channels: int = 1):
        if split not in _SPLITS:
            raise ValueError(
                f"split must be 'train' or 'validation' (sources 'embedded:train' and "
                f"'embedded:validation'), got {split!r}"
            )
        try:
            import skimage.data  # noqa: F401  (fail here, not at the first image)
        except ImportError as err:
            raise ImportError(
                "the embedded images ship inside scikit-image, which is not installed: "
                f"{_INSTALL_HINT}"
            ) from err
        super().__init__(_SPLITS[split], channels, cache=True)
        self.split = split

    def _load(self, i: int) -> np.ndarray:
        import skimage.data

        name = self.names[i]
        try:
            array = np.asarray(getattr(skimage.data, name)())
        except Exception as err:  # e.g. an image scikit-image would have to download
            raise ValueError(f"cannot read scikit-image's sample image {name!r}: {err}") from err
        return _to_channels(_import_pil().fromarray(array), self.channels, repr(name))

    def __repr__(self) -> str:
        return f"EmbeddedImages({self.split!r}, channels={self.channels}): {len(self)} images"


def open_images(
    source: str | os.PathLike | None = None, channels: int = 1, *, recursive: bool = False
) -> ImageFolder | EmbeddedImages:
    """An image source from a command-line style description.

    Args:
        source: ``None`` or ``"embedded:train"`` (scikit-image's training images),
            ``"embedded:validation"``, or a folder of images. A string starting with
            ``"embedded:"`` is never taken as a path.
        channels: 1 for grey, 3 for RGB images.
        recursive: for a folder, also take images in its subfolders.

    Returns:
        An ``EmbeddedImages`` or an ``ImageFolder``.

    Example:
        >>> open_images("embedded:validation").names
        ('camera', 'astronaut')
    """
    if source is None:
        return EmbeddedImages("train", channels)
    if isinstance(source, str) and source.startswith(EMBEDDED_PREFIX):
        return EmbeddedImages(source[len(EMBEDDED_PREFIX) :], channels)
    return ImageFolder(source, channels, recursive=recursive)


class ImageSubset(Sequence[np.ndarray]):
    """Some images of an image source, in the order of ``indices``, keeping their names
    (the two parts of a training set split for validation, ``tune.split``).

    Example:
        >>> subset = ImageSubset(open_images("embedded:train"), [1, 4])
        >>> subset.names, len(subset)
        (('chelsea', 'grass'), 2)
    """

    def __init__(self, images: Sequence[np.ndarray], indices: Iterable[int]):
        self.images = images
        self.indices = tuple(_check_index(int(i), len(images)) for i in indices)
        names = getattr(images, "names", None)
        self.names: tuple[str, ...] = tuple(
            names[i] if names is not None else str(i) for i in self.indices
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return self.images[self.indices[_check_index(index, len(self))]]

    def __repr__(self) -> str:
        return f"ImageSubset({len(self)} of {len(self.images)} images: {', '.join(self.names)})"


# ---------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_NOISE_SPEC = re.compile(rf"\s*({_NUMBER})\s*(?:[-:]\s*({_NUMBER})\s*)?")


@dataclass(frozen=True)
class NoiseSpec:
    """Additive white Gaussian noise: a fixed σ, or a range of σ for blind denoising.

    Args:
        sigma: standard deviation on the 0–255 scale, or a ``(low, high)`` range from
            which each training patch draws its σ uniformly.

    Raises:
        ValueError: if a σ is negative or not finite, or ``low > high``.

    Example:
        >>> NoiseSpec.parse("25"), str(NoiseSpec.parse("0:55"))
        (NoiseSpec(sigma=25.0), '0-55')
        >>> NoiseSpec((5, 50)).bounds, NoiseSpec(25).blind
        ((5.0, 50.0), False)
    """

    sigma: float | tuple[float, float]

    def __post_init__(self) -> None:
        if isinstance(self.sigma, (tuple, list)):
            if len(self.sigma) != 2:
                raise ValueError(f"sigma range must be (low, high), got {self.sigma!r}")
            low, high = (_check_sigma(s) for s in self.sigma)
            if low > high:
                raise ValueError(f"sigma range must have low ≤ high, got {self.sigma!r}")
            object.__setattr__(self, "sigma", (low, high))
        else:
            object.__setattr__(self, "sigma", _check_sigma(self.sigma))

    @classmethod
    def parse(cls, text: str) -> NoiseSpec:
        """``"25"`` → fixed σ; ``"0-55"`` or ``"0:55"`` → σ drawn from [0, 55]."""
        match = _NOISE_SPEC.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                "sigma must be a number such as '25' or a range such as '0-55' or '0:55' "
                f"(0–255 scale), got {text!r}"
            )
        low, high = match.groups()
        return cls(float(low) if high is None else (float(low), float(high)))

    @property
    def blind(self) -> bool:
        """Whether σ is drawn from a range."""
        return isinstance(self.sigma, tuple)

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``; both are σ for a fixed σ."""
        return self.sigma if isinstance(self.sigma, tuple) else (self.sigma, self.sigma)

    def __str__(self) -> str:
        if isinstance(self.sigma, tuple):
            return "-".join(_format_number(s) for s in self.sigma)
        return _format_number(self.sigma)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, Real) or not 0 <= sigma < math.inf:
        raise ValueError(f"sigma must be a finite number ≥ 0 (0–255 scale), got {sigma!r}")
    return float(sigma)


def _format_number(value: float) -> str:
    """Shortest text that parses back to ``value`` (``25.0`` → ``"25"``)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def add_gaussian_noise(
    clean01: Tensor, sigma255: float, generator: torch.Generator | None = None
) -> Tensor:
    """``clean01 + sigma255 / 255 · N(0, 1)``, not clipped (the DnCNN convention).

    Leaving values outside [0, 1] keeps the noise zero-mean and exactly Gaussian, which
    is what the denoiser is asked to remove.

    Args:
        clean01: a floating-point image on the [0, 1] scale, any shape.
        sigma255: noise standard deviation on the 0–255 scale.
        generator: source of the noise (drawn on the generator's device, then moved to
            ``clean01``'s); torch's global generator if ``None``.

    Returns:
        A new tensor like ``clean01``.

    Example:
        >>> clean = torch.zeros(1, 200, 200)
        >>> noisy = add_gaussian_noise(clean, 25.0, torch.Generator().manual_seed(0))
        >>> round(noisy.std().item() * 255)
        25
    """
    if not isinstance(clean01, Tensor) or not clean01.is_floating_point():
        raise TypeError(f"clean01 must be a floating-point tensor, got {type(clean01).__name__}")
    sigma = _check_sigma(sigma255)
    device = generator.device if generator is not None else clean01.device
    noise = torch.randn(clean01.shape, generator=generator, dtype=clean01.dtype, device=device)
    return clean01 + noise.to(clean01.device).mul_(sigma / 255.0)


# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int ≥ {low}, got {value!r}")
    return int(value)


def _channels_first(image: np.ndarray, label: str) -> np.ndarray:
    """``uint8 (H, W)`` or ``(H, W, C)`` → a ``(C, H, W)`` view."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"image {label} must be a uint8 array (H, W) or (H, W, C), got {dtype} {shape}"
        )
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def _to_unit(image: np.ndarray) -> Tensor:
    """A ``uint8`` array → a contiguous float32 tensor of ``image / 255``."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).div_(255.0)


def _image_label(images: Sequence[np.ndarray], i: int) -> str:
    names = getattr(images, "names", None)
    return repr(names[i]) if names is not None else f"#{i}"


def _scale(unit: float, n: int) -> int:
    """A uniform draw in [0, 1) → a uniform integer in [0, n)."""
    return min(int(unit * n), n - 1)


def _dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """The ``k``-th (0–7) of the 8 symmetries of the square on the last two axes."""
    array = np.rot90(array, k % 4, axes=(-2, -1))
    return np.flip(array, -2) if k >= 4 else array


class PatchDataset(Dataset):
    """Random noisy/clean training patches; item ``i`` depends on ``(seed, i)`` only.

    For item ``i``: a generator seeded from ``(seed, i)`` picks an image uniformly, a
    crop position uniformly, one of the 8 dihedral transforms (rotations by 90° and
    flips; the identity without ``augment``) and σ from ``noise``, then draws the
    noise. The same draws are made with or without ``augment``, so switching it off
    changes only the orientation of the patches. All images are held in memory.

    Cropping works on the trailing (spatial) axes of ``(C, *spatial)`` arrays; the
    images are 2-D.

    Args:
        images: ``uint8`` images ``(H, W)`` or ``(H, W, C)``, all with the same number of
            channels (an ``ImageFolder``, ``EmbeddedImages`` or a list of arrays).
        patch_size: side of the square patches.
        noise: the noise; a range draws σ per patch (blind denoising).
        seed: non-negative seed.
        augment: apply a random dihedral transform.
        length: ``len`` of the dataset, a nominal epoch for samplers that want one;
            ``len(images) * PATCHES_PER_IMAGE`` (128 patches per image) if ``None``. Items
            are an endless stream: every index ≥ 0 is valid, whatever ``length`` says.

    Shapes:
        item: ``(noisy, clean)``, float32 ``(C, patch_size, patch_size)``; clean is the
        8-bit crop / 255, noisy is clean plus noise (not clipped).

    Raises:
        ValueError: if there are no images, images are not 2-D ``uint8`` with one
            number of channels, or ``patch_size`` exceeds an image (the message names it).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        patch_size: int,
        noise: NoiseSpec,
        seed: int = 0,
        augment: bool = True,
        length: int | None = None,
    ):
        self.patch_size = _check_int("patch_size", patch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        if not isinstance(noise, NoiseSpec):
            raise TypeError(
                f"noise must be a NoiseSpec (e.g. NoiseSpec.parse('25')), got {noise!r}"
            )
        self.noise = noise
        self.augment = bool(augment)
        if len(images) == 0:
            raise ValueError("PatchDataset needs at least one image")
        self._images = []
        for i in range(len(images)):
            label = _image_label(images, i)
            image = _channels_first(images[i], label)
            if self._images and image.shape[0] != self._images[0].shape[0]:
                raise ValueError(
                    f"image {label} has {image.shape[0]} channels, the first image "
                    f"{self._images[0].shape[0]}"
                )
            if min(image.shape[1:]) < self.patch_size:
                size = "×".join(map(str, image.shape[1:]))
                raise ValueError(
                    f"patch_size {self.patch_size} is larger than image {label} of size {size}"
                )
            self._images.append(image)
        self.length = (
            len(images) * PATCHES_PER_IMAGE if length is None else _check_int("length", length, 1)
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        i = operator.index(index)
        if i < 0:
            raise IndexError(
                f"PatchDataset items are numbered from 0 (an endless stream), got {index}"
            )
        generator = streams.generator("image_patches", self.seed, i)
        p = self.patch_size
        # one draw for the image, the transform, σ and each spatial axis, always all made
        which, transform, level, *starts = torch.rand(
            3 + self._images[0].ndim - 1, dtype=torch.float64, generator=generator
        ).tolist()
        image = self._images[_scale(which, len(self._images))]
        corner = [_scale(u, size - p + 1) for u, size in zip(starts, image.shape[1:], strict=True)]
        patch = image[(slice(None), *(slice(c, c + p) for c in corner))]
        if self.augment:
            patch = _dihedral(patch, _scale(transform, 8))
        low, high = self.noise.bounds
        clean = _to_unit(patch)
        return add_gaussian_noise(clean, low + (high - low) * level, generator), clean

    def batch(self, indices: Iterable[int]) -> tuple[Tensor, Tensor]:
        """Items ``indices`` stacked: ``(noisy, clean)``, each ``(B, C, p, p)``."""
        noisy, clean = zip(*(self[i] for i in indices), strict=True)
        return torch.stack(noisy), torch.stack(clean)

    def __repr__(self) -> str:
        return (
            f"PatchDataset({len(self._images)} images, patch_size={self.patch_size}, "
            f"noise={str(self.noise)!r}, seed={self.seed}, augment={self.augment}, "
            f"length={self.length})"
        )


class NoisyValidation(Sequence[tuple[str, np.ndarray, Tensor]]):
    """Whole validation images with noise fixed by ``(seed, image name)``.

    The noise of an image depends on its name (CRC-32) and ``seed`` only, so every run
    scores the very same noisy images, whatever their order or the other images of the
    set. Images without ``names`` (a plain list) are named by position ``"0"``, ``"1"``…

    Args:
        images: ``uint8`` images ``(H, W)`` or ``(H, W, C)``, ideally with ``names``.
        noise_sigma: noise standard deviation on the 0–255 scale.
        seed: non-negative seed.

    Shapes:
        item: ``(name, clean, noisy)``; ``clean`` is the ``uint8`` image as ``images``
        gives it, ``noisy`` a float32 ``(C, H, W)`` tensor on the [0, 1] scale (not
        clipped).

    Example:
        >>> import numpy as np
        >>> val = NoisyValidation([np.full((8, 9), 128, np.uint8)], noise_sigma=25)
        >>> name, clean, noisy = val[0]
        >>> name, clean.shape, tuple(noisy.shape)
        ('0', (8, 9), (1, 8, 9))
    """

    def __init__(self, images: Sequence[np.ndarray], noise_sigma: float, seed: int = 0):
        self.images = images
        self.noise_sigma = _check_sigma(noise_sigma)
        self.seed = _check_int("seed", seed, 0)
        names = getattr(images, "names", None)
        self.names: tuple[str, ...] = tuple(
            names if names is not None else (str(i) for i in range(len(images)))
        )

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, Tensor]:  # type: ignore[override]
        i = _check_index(index, len(self))
        name, clean = self.names[i], self.images[i]
        generator = streams.generator("image_validation", self.seed, zlib.crc32(name.encode()))
        noisy = add_gaussian_noise(
            _to_unit(_channels_first(clean, repr(name))), self.noise_sigma, generator
        )
        return name, clean, noisy
