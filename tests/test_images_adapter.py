"""ndwconv.adapters.images: round trips per format, sample type and mode, against files
written by Pillow, tifffile, pypng and numpy directly; EXIF orientation against the
orientation tag's definition; alpha and metadata kept; bad input refused by name."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from ndwconv.adapters.images import ImageFile, is_image_path, read_image, write_image

Image = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")
png = pytest.importorskip("png")

SHAPES = {"L": (9, 13), "LA": (9, 13, 2), "RGB": (9, 13, 3), "RGBA": (9, 13, 4)}
TOP = {"uint8": 255, "uint16": 65535}


def _samples(mode: str, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = SHAPES[mode]
    if dtype in TOP:
        values = rng.integers(0, TOP[dtype] + 1, size=shape).astype(dtype)
        values.flat[0], values.flat[-1] = 0, TOP[dtype]  # both ends of the range
        return values
    return rng.normal(0.5, 2.0, size=shape).astype(dtype)


def _write_reference(path, array: np.ndarray, fmt: str) -> None:
    """Write ``array`` with the format's own library, not with ndwconv."""
    colour = array.ndim == 3 and array.shape[2] >= 3
    alpha = array.ndim == 3 and array.shape[2] in (2, 4)
    if fmt == "npy":
        np.save(path, array)
    elif fmt == "tif":
        tifffile.imwrite(
            path,
            array,
            photometric="rgb" if colour else "minisblack",
            extrasamples=["unassalpha"] if alpha else None,
        )
    elif array.dtype == np.uint16 and array.ndim == 3:
        h, w, planes = array.shape
        with open(path, "wb") as f:
            png.Writer(w, h, bitdepth=16, greyscale=not colour, alpha=alpha).write(
                f, array.reshape(h, w * planes)
            )
    elif array.dtype == np.uint16:
        h, w = array.shape
        Image.frombytes("I;16", (w, h), array.astype("<u2").tobytes()).save(path)
    else:
        Image.fromarray(array).save(path)


def _read_reference(path, fmt: str, like: np.ndarray) -> np.ndarray:
    if fmt == "npy":
        return np.load(path)
    if fmt == "tif":
        return tifffile.imread(path)
    if like.dtype == np.uint16 and like.ndim == 3:
        _, _, rows, _ = png.Reader(filename=str(path)).asDirect()
        return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(like.shape)
    with Image.open(path) as im:
        out = np.asarray(im)
    return out.astype(np.uint16) if like.dtype == np.uint16 else out


CASES = [
    (fmt, mode, dtype)
    for fmt in ("png", "tif", "npy")
    for mode in SHAPES
    for dtype in ("uint8", "uint16", "float32")
    if not (fmt == "png" and dtype == "float32")
]


@pytest.mark.parametrize(("fmt", "mode", "dtype"), CASES)
def test_round_trip_is_exact_and_the_scale_is_the_documented_one(tmp_path, fmt, mode, dtype):
    array = _samples(mode, dtype)
    source = tmp_path / f"in.{fmt}"
    _write_reference(source, array, fmt)
    before = source.read_bytes()
    image = read_image(source)
    assert (image.mode, image.dtype, image.format) == (
        mode,
        dtype,
        {"tif": "TIFF"}.get(fmt, fmt.upper()),
    )
    colour = 3 if mode.startswith("RGB") else 1
    assert image.pixels.shape == (colour, 9, 13) and image.pixels.dtype == torch.float32
    assert (image.alpha is not None) == mode.endswith("A")
    # the policy: integer samples / type maximum, floats as they are
    channels_last = array if array.ndim == 3 else array[..., None]
    expected = channels_last.astype(np.float64) / TOP.get(dtype, 1)
    np.testing.assert_allclose(
        image.pixels.permute(1, 2, 0).numpy(), expected[..., :colour], rtol=0, atol=1e-7
    )
    if image.alpha is not None:
        np.testing.assert_allclose(image.alpha[0].numpy(), expected[..., -1], rtol=0, atol=1e-7)
    out = tmp_path / f"out.{fmt}"
    write_image(out, image)
    back = _read_reference(out, fmt, array)
    assert back.dtype == array.dtype and np.array_equal(back, array)
    assert source.read_bytes() == before  # the input is never touched


def _orientation_reference(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for ``orientation``, from the tag's definition: where the
    stored 0th row and 0th column are displayed (TIFF 6.0, tag 274)."""
    h, w = stored.shape[:2]
    rows, cols = np.indices((h, w) if orientation <= 4 else (w, h))
    source = {  # displayed (r, c) ← stored (i, j)
        1: (rows, cols),
        2: (rows, w - 1 - cols),  # 0th row top, 0th column right
        3: (h - 1 - rows, w - 1 - cols),  # bottom, right
        4: (h - 1 - rows, cols),  # bottom, left
        5: (cols, rows),  # 0th row left, 0th column top
        6: (h - 1 - cols, rows),  # 0th row right, 0th column top
        7: (h - 1 - cols, w - 1 - rows),  # right, bottom
        8: (cols, w - 1 - rows),  # left, bottom
    }[orientation]
    return stored[source]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_on_reading_png(tmp_path, orientation):
    stored = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    image = read_image(tmp_path / "o.png")
    shown = np.rint(image.pixels[0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(shown, _orientation_reference(stored, orientation))
    write_image(tmp_path / "upright.png", image)
    with Image.open(tmp_path / "upright.png") as im:  # stored upright, orientation 1
        assert im.getexif().get(0x0112, 1) == 1
        assert np.array_equal(np.asarray(im), shown)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_is_applied_on_reading(tmp_path, orientation):
    stored = np.arange(4 * 6 * 3, dtype=np.uint16).reshape(4, 6, 3) * 500
    tifffile.imwrite(
        tmp_path / "o.tif", stored, photometric="rgb", extratags=[(274, 3, 1, orientation, True)]
    )
    image = read_image(tmp_path / "o.tif")
    shown = np.rint(image.pixels.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    assert np.array_equal(shown, _orientation_reference(stored, orientation))


def test_jpeg_round_trip_with_exif_orientation_icc_and_dpi(tmp_path):
    from skimage import data

    photo = data.astronaut()[::4, ::4]  # 128 × 128 × 3
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "ndwconv test camera"  # Make
    icc = b"\x00" * 4 + b"not a real profile"
    Image.fromarray(photo).save(
        tmp_path / "p.jpg", quality=100, subsampling=0, exif=exif, icc_profile=icc, dpi=(300, 300)
    )
    image = read_image(tmp_path / "p.jpg")
    assert image.mode == "RGB" and image.dtype == "uint8" and image.pixels.shape == (3, 128, 128)
    shown = image.pixels.permute(1, 2, 0).numpy() * 255
    reference = _orientation_reference(photo, 6).astype(np.float64)
    mse = np.mean((shown - reference) ** 2)
    assert 10 * np.log10(255**2 / mse) > 40  # quality 100: close to the stored pixels
    write_image(tmp_path / "q.jpg", image)
    with Image.open(tmp_path / "q.jpg") as out:
        assert out.info.get("icc_profile") == icc
        assert tuple(round(v) for v in out.info["dpi"]) == (300, 300)
        assert out.getexif().get(0x0112) == 1 and out.getexif().get(0x010F) == "ndwconv test camera"
        written = np.asarray(out).astype(np.float64)
    mse = np.mean((written - shown) ** 2)
    assert 10 * np.log10(255**2 / mse) > 38  # quality 95, no chroma subsampling


def test_png_text_dpi_and_icc_profile_are_kept(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "a test image")
    icc = b"\x01\x02icc"
    Image.fromarray(_samples("RGB", "uint8")).save(
        tmp_path / "m.png", pnginfo=info, dpi=(72, 144), icc_profile=icc
    )
    write_image(tmp_path / "n.png", read_image(tmp_path / "m.png"))
    with Image.open(tmp_path / "n.png") as out:
        assert out.text["Description"] == "a test image"
        assert out.info["icc_profile"] == icc
        assert tuple(round(v) for v in out.info["dpi"]) == (72, 144)


def test_tiff_description_and_resolution_are_kept(tmp_path):
    tifffile.imwrite(
        tmp_path / "m.tif",
        _samples("L", "uint16"),
        description="microscope frame 7",
        resolution=(2.5, 4.0),
        resolutionunit=3,
        metadata=None,
    )
    write_image(tmp_path / "n.tif", read_image(tmp_path / "m.tif"))
    with tifffile.TiffFile(tmp_path / "n.tif") as tif:
        tags = tif.pages[0].tags
        assert tags["ImageDescription"].value == "microscope frame 7"
        x, y = tags["XResolution"].value, tags["YResolution"].value
        assert (x[0] / x[1], y[0] / y[1]) == (2.5, 4.0)
        assert int(tags["ResolutionUnit"].value) == 3


def test_palette_bilevel_and_planar_tiff_are_read_by_the_policy(tmp_path):
    grey = np.array([[0, 255, 0], [255, 0, 255]], np.uint8)
    Image.fromarray(grey).convert("1").save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").mode == "L"
    assert np.array_equal(read_image(tmp_path / "b.png").pixels[0].numpy() * 255, grey)
    rgb = _samples("RGB", "uint8")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        expected = np.asarray(im.convert("RGB"))
    image = read_image(tmp_path / "p.png")
    assert image.mode == "RGB"
    assert np.array_equal(np.rint(image.pixels.permute(1, 2, 0).numpy() * 255), expected)
    planar = np.moveaxis(rgb, -1, 0)  # (3, H, W) stored plane by plane
    tifffile.imwrite(tmp_path / "s.tif", planar, photometric="rgb", planarconfig="separate")
    read = read_image(tmp_path / "s.tif")
    assert np.array_equal(np.rint(read.pixels.numpy() * 255), planar)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_min_is_white_tiff_is_read_min_is_black_in_its_own_type(tmp_path, dtype):
    top = TOP[dtype]
    stored = np.array([[top, top - 3], [top - 200, top]], dtype=dtype)  # dark pixels
    tifffile.imwrite(tmp_path / "w.tif", stored, photometric="miniswhite")
    image = read_image(tmp_path / "w.tif")
    assert image.dtype == dtype and image.scale == top
    np.testing.assert_array_equal(
        np.rint(image.pixels[0].double().numpy() * top), (top - stored.astype(np.int64))
    )


def test_denoised_pixels_are_written_clipped_and_rounded_with_alpha_restored(tmp_path):
    rgba = _samples("RGBA", "uint8")
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    pixels = torch.tensor([-0.2, 0.5, 1.3, 0.1 / 255, 0.6 / 255]).repeat(3, 9, 13)[:, :9, :13]
    write_image(tmp_path / "b.png", image.with_pixels(pixels))
    with Image.open(tmp_path / "b.png") as out:
        assert out.mode == "RGBA"
        written = np.asarray(out)
    expected = np.clip(np.floor(pixels.permute(1, 2, 0).double().numpy() * 255 + 0.5), 0, 255)
    assert np.array_equal(written[..., :3], expected)
    assert np.array_equal(written[..., 3], rgba[..., 3])  # alpha untouched


def test_bad_input_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown image extension '\.bmp'"):
        read_image(tmp_path / "x.bmp")
    with pytest.raises(FileNotFoundError, match="no such image file"):
        read_image(tmp_path / "missing.png")
    np.save(tmp_path / "i.npy", np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="int32 samples"):
        read_image(tmp_path / "i.npy")
    np.save(tmp_path / "v.npy", np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        read_image(tmp_path / "v.npy")
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 4, 4), np.uint8), photometric="minisblack"
    )
    with pytest.raises(ValueError, match="3 pages"):
        read_image(tmp_path / "stack.tif")
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"fake\.png"):
        read_image(tmp_path / "fake.png")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="JPEG")
    (tmp_path / "jpeg.png").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="JPEG data, not PNG"):
        read_image(tmp_path / "jpeg.png")

    np.save(tmp_path / "f.npy", np.zeros((4, 4), np.float32))
    floats = read_image(tmp_path / "f.npy")
    with pytest.raises(ValueError, match=r"float32 samples; write it as \.tif or \.npy"):
        write_image(tmp_path / "f.png", floats)
    Image.fromarray(_samples("LA", "uint8")).save(tmp_path / "la.png")
    with pytest.raises(ValueError, match="JPEG holds 8-bit samples without alpha"):
        write_image(tmp_path / "la.jpg", read_image(tmp_path / "la.png"))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "g.png")
    grey = read_image(tmp_path / "g.png")
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_image(tmp_path / "nan.png", grey.with_pixels(torch.full((1, 4, 4), float("nan"))))
    assert not (tmp_path / "nan.png").exists()  # nothing half-written
    with pytest.raises(ValueError, match=r"keep the image's shape \(1, 4, 4\)"):
        grey.with_pixels(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "q.jpg", grey, quality=100)
    with pytest.raises(ValueError, match="mode 'RGB' does not match 1 channel"):
        ImageFile(pixels=torch.zeros(1, 2, 2), mode="RGB")


def test_is_image_path():
    assert is_image_path("a/B.PNG") and is_image_path("x.tiff") and is_image_path("y.npy")
    assert not is_image_path("brain.nii.gz") and not is_image_path("v.h5")
