"""Tests of ``ndwconv.recipes.tasks.denoise.data`` (image sources, seeded noisy patches) and
``…denoise.metrics`` and ``…denoise.inference`` (PSNR, SSIM, tiled inference).

Reference values are computed independently here: Pillow's documented luma formula
for grey conversion, ``10 · log10(255² / MSE)`` in float64 for PSNR, scikit-image's own
``structural_similarity`` call for SSIM, and an untiled run for tiled inference.
"""

import math

import numpy as np
import pytest
import torch

from ndwconv.recipes.tasks.denoise.data import (
    EMBEDDED_TRAIN,
    EMBEDDED_VALIDATION,
    IMAGE_EXTENSIONS,
    PATCHES_PER_IMAGE,
    EmbeddedImages,
    ImageFolder,
    NoiseSpec,
    NoisyValidation,
    PatchDataset,
    add_gaussian_noise,
    load_image,
    open_images,
)
from ndwconv.recipes.tasks.denoise.inference import denoise_image
from ndwconv.recipes.tasks.denoise.metrics import psnr, ssim, to_uint8_scale

Image = pytest.importorskip("PIL.Image", reason="Pillow comes with ndwconv[recipes]")

RNG = np.random.default_rng(1234)
GREY = RNG.integers(0, 256, (13, 17), dtype=np.uint8)
RGB = RNG.integers(0, 256, (11, 19, 3), dtype=np.uint8)


def pillow_luma(rgb: np.ndarray) -> np.ndarray:
    """Pillow's documented "L" conversion, ``R·299/1000 + G·587/1000 + B·114/1000``."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000


@pytest.fixture
def folder(tmp_path):
    """Grey and RGB images in each format, a non-image file, a hidden file, a subfolder."""
    Image.fromarray(GREY).save(tmp_path / "b_grey.png")
    Image.fromarray(RGB).save(tmp_path / "a_rgb.PNG")
    Image.fromarray(GREY).save(tmp_path / "c_grey.bmp")
    Image.fromarray(RGB).save(tmp_path / "d_rgb.tif")
    Image.fromarray(RGB).save(tmp_path / "e_rgb.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(GREY).save(tmp_path / ".hidden.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(GREY).save(tmp_path / "sub" / "f_grey.tiff")
    return tmp_path


# ---------------------------------------------------------------------------------------
# Reading images
# ---------------------------------------------------------------------------------------


def test_folder_order_names_and_paths(folder):
    images = ImageFolder(folder)
    assert images.names == ("a_rgb", "b_grey", "c_grey", "d_rgb", "e_rgb")
    assert [p.name for p in images.paths] == [
        "a_rgb.PNG",
        "b_grey.png",
        "c_grey.bmp",
        "d_rgb.tif",
        "e_rgb.jpg",
    ]
    assert len(images) == 5
    deep = ImageFolder(folder, recursive=True)
    assert deep.names == (*images.names, "sub/f_grey")


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_shapes_and_lossless_values(folder, channels):
    images = ImageFolder(folder, channels=channels)
    for name, image in zip(images.names, images, strict=True):
        assert image.dtype == np.uint8
        source = GREY if "grey" in name else RGB
        assert image.shape[:2] == source.shape[:2]
        assert image.shape == (source.shape[:2] if channels == 1 else (*source.shape[:2], 3))
    a_rgb, b_grey, c_grey, d_rgb, _ = images
    for grey in (b_grey, c_grey):
        expected = GREY if channels == 1 else np.repeat(GREY[..., None], 3, axis=-1)
        np.testing.assert_array_equal(grey, expected)
    for rgb in (a_rgb, d_rgb):
        if channels == 3:
            np.testing.assert_array_equal(rgb, RGB)
        else:  # rounded fixed-point BT.601 luma: within half a grey level of the formula
            assert np.abs(rgb - pillow_luma(RGB)).max() <= 0.51


def test_jpeg_is_close(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    smooth = np.stack([4 * y + 2 * x, 3 * x + 50, 250 - 5 * y], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "smooth.jpeg", quality=95)
    jpeg = load_image(tmp_path / "smooth.jpeg", channels=3)
    assert jpeg.shape == smooth.shape
    assert np.abs(jpeg.astype(float) - smooth).mean() < 3  # lossy, but the same picture


def test_sixteen_bit_is_scaled_and_float_is_refused(tmp_path):
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png", 1), [[0, 1, 255, 128]])
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="floating-point"):
        load_image(tmp_path / "float.tif", 1)


def test_cache_returns_the_same_read_only_array(folder):
    cached = ImageFolder(folder)
    assert cached[1] is cached[1] and not cached[1].flags.writeable
    fresh = ImageFolder(folder, cache=False)
    assert fresh[1] is not fresh[1] and fresh[1].flags.writeable
    assert fresh[-1].shape == cached[4].shape
    with pytest.raises(IndexError):
        cached[5]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        ImageFolder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"empty.*\.png, \.jpg"):
        ImageFolder(empty)
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(tmp_path, channels=2)


def test_corrupt_file_names_the_path(tmp_path):
    (tmp_path / "x.png").write_bytes(b"this is not a PNG" * 10)
    images = ImageFolder(tmp_path)  # listing does not decode
    with pytest.raises(ValueError, match=r"x\.png"):
        images[0]
    Image.fromarray(RGB).save(tmp_path / "y.png")
    data = (tmp_path / "y.png").read_bytes()
    (tmp_path / "y.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"y\.png"):
        load_image(tmp_path / "y.png", 1)


def test_open_images(folder):
    assert isinstance(open_images(folder), ImageFolder)
    assert open_images(str(folder), 3)[0].shape == (*RGB.shape[:2], 3)
    with pytest.raises(ValueError, match="split"):
        open_images("embedded:test")
    assert ".tiff" in IMAGE_EXTENSIONS


def test_embedded_images():
    pytest.importorskip("skimage")
    train, validation = EmbeddedImages("train"), open_images("embedded:validation")
    assert train.names == EMBEDDED_TRAIN and validation.names == EMBEDDED_VALIDATION
    assert open_images(None).names == EMBEDDED_TRAIN
    for image in train:
        assert image.dtype == np.uint8 and image.ndim == 2
    colour = EmbeddedImages("validation", channels=3)[1]  # astronaut
    assert colour.shape == (512, 512, 3)
    assert np.abs(validation[1] - pillow_luma(colour)).max() <= 0.51
    camera = EmbeddedImages("validation", channels=3)[0]
    np.testing.assert_array_equal(camera, np.repeat(validation[0][..., None], 3, axis=-1))


# ---------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sigma", "canonical"),
    [("25", 25.0, "25"), ("0-55", (0.0, 55.0), "0-55"), (" 5 : 50.5", (5.0, 50.5), "5-50.5")],
)
def test_noise_spec_parse_and_round_trip(text, sigma, canonical):
    spec = NoiseSpec.parse(text)
    assert spec.sigma == sigma and str(spec) == canonical
    assert NoiseSpec.parse(str(spec)) == spec
    assert spec.blind == isinstance(sigma, tuple)


@pytest.mark.parametrize("text", ["", "-5", "abc", "1-2-3", "nan", "inf", "55-0"])
def test_noise_spec_rejects(text):
    with pytest.raises(ValueError, match="sigma"):
        NoiseSpec.parse(text)


@pytest.mark.parametrize("sigma", [-1.0, math.inf, math.nan, (3, 2), (1, 2, 3), True])
def test_noise_spec_validates(sigma):
    with pytest.raises(ValueError, match="sigma"):
        NoiseSpec(sigma)


def test_add_gaussian_noise_is_not_clipped():
    clean = torch.ones(1, 64, 64)
    noisy = add_gaussian_noise(clean, 50.0, torch.Generator().manual_seed(0))
    assert noisy.max() > 1 and noisy.dtype == clean.dtype
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = clean + torch.randn(clean.shape, generator=g2) * (50.0 / 255.0)
    torch.testing.assert_close(add_gaussian_noise(clean, 50.0, g1), expected)


def gradient_image(h: int = 30, w: int = 40) -> np.ndarray:
    return (np.arange(h)[:, None] * 7 + np.arange(w)[None, :] * 3).astype(np.uint8)


def test_items_are_pure_functions_of_seed_and_index():
    images = [gradient_image(), gradient_image(25, 33)]
    data = PatchDataset(images, 8, NoiseSpec((0, 50)), seed=7)
    forward = [data[i] for i in range(20)]
    backward = [data[i] for i in reversed(range(20))][::-1]
    fresh = PatchDataset(images, 8, NoiseSpec((0, 50)), seed=7)
    for (n1, c1), (n2, c2), i in zip(forward, backward, range(20), strict=True):
        n3, c3 = fresh[i]
        assert torch.equal(n1, n2) and torch.equal(c1, c2)
        assert torch.equal(n1, n3) and torch.equal(c1, c3)
    assert not torch.equal(data[0][0], data[1][0])
    other_seed = PatchDataset(images, 8, NoiseSpec((0, 50)), seed=8)
    assert not torch.equal(data[0][0], other_seed[0][0])
    noisy, clean = data.batch([3, 0, 3])
    assert noisy.shape == clean.shape == (3, 1, 8, 8)
    assert torch.equal(noisy[0], noisy[2]) and torch.equal(noisy[1], forward[0][0])
    assert len(data) == 2 * PATCHES_PER_IMAGE
    assert len(PatchDataset(images, 8, NoiseSpec(1), length=5)) == 5


def test_clean_patch_is_the_crop_over_255():
    image = gradient_image()
    data = PatchDataset([image], 30, NoiseSpec(10), augment=False)  # the whole height
    noisy, clean = data[0]
    assert clean.dtype == noisy.dtype == torch.float32
    crops = [image[:, x : x + 30] for x in range(40 - 30 + 1)]
    assert any(np.array_equal(np.round(clean[0].numpy() * 255), crop) for crop in crops)


def test_range_noise_draws_sigma_within_range():
    image = np.full((64, 64), 128, np.uint8)
    data = PatchDataset([image], 64, NoiseSpec((10, 20)), seed=3)
    stds = [((n - c).std().item() * 255) for n, c in (data[i] for i in range(30))]
    # 4096 samples per patch: the sample std is within ~5 % of σ
    assert 9 < min(stds) and max(stds) < 21
    assert max(stds) - min(stds) > 3  # σ does vary


def test_fixed_noise_statistics():
    image = gradient_image(200, 200)
    sigma = 25.0
    noisy, clean = PatchDataset([image], 200, NoiseSpec(sigma), seed=11)[0]
    residual = (noisy - clean).double().flatten()
    n = residual.numel()
    expected = sigma / 255
    # standard errors of the mean and the std of n Gaussian samples; 5 of them
    assert abs(residual.mean().item()) < 5 * expected / math.sqrt(n)
    assert abs(residual.std().item() - expected) < 5 * expected / math.sqrt(2 * n)


def test_augment_produces_all_eight_dihedral_transforms():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every pixel value unique
    data = PatchDataset([image], 6, NoiseSpec(0), seed=5, augment=True, length=200)

    def transforms(crop):
        rotations = [np.rot90(crop, k) for k in range(4)]
        return rotations + [np.flip(r, 0) for r in rotations]

    crops = [image[y : y + 6, x : x + 6] for y in range(11) for x in range(11)]
    seen = set()
    for i in range(200):
        _, clean = data[i]
        patch = np.round(clean[0].numpy() * 255).astype(np.uint8)
        matches = {
            k for crop in crops for k, t in enumerate(transforms(crop)) if np.array_equal(t, patch)
        }
        assert len(matches) == 1
        seen |= matches
    assert seen == set(range(8))
    plain = PatchDataset([image], 6, NoiseSpec(0), seed=5, augment=False)
    for i in range(20):
        patch = np.round(plain[i][1][0].numpy() * 255).astype(np.uint8)
        assert any(np.array_equal(patch, crop) for crop in crops)


def test_rgb_patches_are_channels_first():
    image = np.stack([gradient_image(), gradient_image() // 2, gradient_image() // 3], -1)
    noisy, clean = PatchDataset([image], 10, NoiseSpec(5))[0]
    assert noisy.shape == clean.shape == (3, 10, 10)
    assert (clean[0] >= clean[1]).all() and (clean[1] >= clean[2]).all()


def test_patch_dataset_errors():
    images = [gradient_image(), gradient_image(12, 40)]
    with pytest.raises(ValueError, match=r"patch_size 16 .*#1 of size 12×40"):
        PatchDataset(images, 16, NoiseSpec(25))
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset(images, 0, NoiseSpec(25))
    with pytest.raises(TypeError, match="NoiseSpec"):
        PatchDataset(images, 8, 25)
    with pytest.raises(ValueError, match="channels"):
        PatchDataset([gradient_image(), np.zeros((30, 30, 3), np.uint8)], 8, NoiseSpec(25))
    with pytest.raises(ValueError, match="uint8"):
        PatchDataset([gradient_image().astype(np.float32)], 8, NoiseSpec(25))
    with pytest.raises(IndexError, match="numbered from 0"):
        PatchDataset(images[:1], 8, NoiseSpec(25), length=4)[-1]


def test_patch_dataset_is_an_endless_stream_beyond_its_nominal_length():
    """The trainer addresses step s's samples as s·B … s·B + B − 1, past any epoch."""
    short = PatchDataset([gradient_image()], 8, NoiseSpec(25), seed=1, length=4)
    long = PatchDataset([gradient_image()], 8, NoiseSpec(25), seed=1)
    assert len(short) == 4
    for i in (3, 4, 10_000):
        noisy_a, clean_a = short[i]
        noisy_b, clean_b = long[i]
        assert torch.equal(noisy_a, noisy_b) and torch.equal(clean_a, clean_b)
    assert not torch.equal(short[4][0], short[5][0])


def test_patch_dataset_names_the_image_of_a_folder(tmp_path):
    Image.fromarray(gradient_image(12, 40)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="'small'"):
        PatchDataset(ImageFolder(tmp_path), 16, NoiseSpec(25))


def test_validation_noise_depends_on_seed_and_name_only(tmp_path):
    alone, together = tmp_path / "alone", tmp_path / "together"
    for root in (alone, together):
        root.mkdir()
        Image.fromarray(GREY).save(root / "x.png")
    Image.fromarray(GREY).save(together / "w.png")  # sorts before x
    single = NoisyValidation(ImageFolder(alone), 25, seed=2)
    pair = NoisyValidation(ImageFolder(together), 25, seed=2)
    name, clean, noisy = single[0]
    assert name == "x" and pair.names == ("w", "x")
    assert clean.shape == GREY.shape and noisy.shape == (1, *GREY.shape)
    assert noisy.dtype == torch.float32
    assert torch.equal(noisy, pair[1][2])
    assert not torch.equal(pair[0][2], pair[1][2])  # same image, another name
    assert not torch.equal(noisy, NoisyValidation(ImageFolder(alone), 25, seed=3)[0][2])
    assert len(list(pair)) == 2


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def test_psnr_matches_the_formula():
    clean = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    estimate = clean + RNG.normal(0, 5, clean.shape)
    clipped = np.clip(estimate, 0, 255)
    mse = np.mean((clipped - clean.astype(np.float64)) ** 2)
    assert psnr(estimate, clean) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    assert psnr(torch.from_numpy(estimate), clean) == pytest.approx(psnr(estimate, clean))
    assert psnr(clean.astype(float), clean) == math.inf


def test_psnr_clips_the_estimate():
    clean = np.array([[0, 255]], np.uint8)
    assert psnr(np.array([[-40.0, 300.0]]), clean) == math.inf
    assert psnr(np.array([[10.0, 255.0]]), clean) == pytest.approx(10 * math.log10(255**2 / 50))


def test_metric_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        psnr(np.zeros((4, 5)), np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        ssim(np.zeros((4, 5)), np.zeros((5, 4), np.uint8))


def test_ssim_matches_skimage():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    clean = gradient_image(40, 50)
    assert ssim(clean.astype(float), clean) == 1.0
    noisy = clean + RNG.normal(0, 20, clean.shape)
    score = ssim(noisy, clean)
    assert score < 0.9
    expected = structural_similarity(
        np.clip(noisy, 0, 255),
        clean.astype(np.float64),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert score == pytest.approx(expected, rel=1e-12)
    rgb = np.stack([clean, clean[::-1], clean[:, ::-1]], -1)
    noisy_rgb = rgb + RNG.normal(0, 20, rgb.shape)
    expected_rgb = structural_similarity(
        np.clip(noisy_rgb, 0, 255),
        rgb.astype(np.float64),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert ssim(noisy_rgb, rgb) == pytest.approx(expected_rgb, rel=1e-12)


def test_to_uint8_scale():
    x = torch.rand(3, 4, 5)
    out = to_uint8_scale(x)
    assert out.shape == (4, 5, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out, np.moveaxis(x.double().numpy(), 0, -1) * 255)
    assert to_uint8_scale(x[:1]).shape == (4, 5)
    with pytest.raises(ValueError, match="x01"):
        to_uint8_scale(x[0])


def conv_stack(channels: int = 1) -> torch.nn.Module:
    """Three 3×3 convolutions (receptive-field radius 3), no batch normalisation."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, channels, 3, padding=1),
    ).eval()


@pytest.mark.parametrize(("tile", "overlap"), [(32, 16), (20, 7), (16, 6)])
@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_denoise_equals_untiled(tile, overlap, channels):
    net = conv_stack(channels)
    image = torch.rand(channels, 70, 53, generator=torch.Generator().manual_seed(1))
    whole = denoise_image(net, image)
    tiled = denoise_image(net, image, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape == image.shape
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_identity_model_is_exact_tiled_or_not():
    image = torch.rand(1, 70, 53, generator=torch.Generator().manual_seed(2))
    identity = torch.nn.Identity()
    assert torch.equal(denoise_image(identity, image), image)
    for tile, overlap in [(32, 16), (20, 7), (9, 0)]:
        assert torch.equal(denoise_image(identity, image, tile=tile, overlap=overlap), image)


def test_denoise_image_leaves_gradients_and_small_images_alone():
    net = conv_stack()
    image = torch.rand(1, 10, 12)
    out = denoise_image(net, image, tile=32, overlap=16)
    assert not out.requires_grad and out.device.type == "cpu"
    torch.testing.assert_close(out, denoise_image(net, image))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"tile": 16, "overlap": 16}, "tile"), ({"overlap": -1}, "overlap"), ({"tile": 2.5}, "tile")],
)
def test_denoise_image_validates(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        denoise_image(torch.nn.Identity(), torch.rand(1, 8, 8), **kwargs)
