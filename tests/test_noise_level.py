"""The noise-level estimator against known noise and scikit-image's implementation."""

import numpy as np
import pytest

from ndwconv.recipes.tasks.denoise.noise_level import MAD_TO_SIGMA, estimate_sigma


def test_mad_constant_is_the_median_of_a_half_normal():
    from scipy.stats import norm

    assert MAD_TO_SIGMA == pytest.approx(norm.ppf(0.75), rel=1e-12)


@pytest.mark.parametrize("shape", [(4096,), (256, 256), (48, 48, 48), (12, 12, 12, 12)])
@pytest.mark.parametrize("sigma", [0.02, 0.1])
def test_white_noise_alone_gives_its_sigma(shape, sigma):
    rng = np.random.default_rng(len(shape))
    noise = sigma * rng.standard_normal(shape)
    # the estimate's sampling error is ≈ 1.17 / √n relative for n coefficients
    n = np.prod([s // 2 for s in shape])
    assert estimate_sigma(noise) == pytest.approx(sigma, rel=6 * 1.17 / np.sqrt(n))


def test_a_smooth_signal_does_not_count_as_noise():
    yy, xx = np.mgrid[0:300, 0:200] / 100.0
    smooth = np.sin(yy) * np.cos(xx) + 0.3 * yy
    assert estimate_sigma(smooth) < 1e-3
    assert estimate_sigma(np.full((10, 10), 3.0)) == 0.0
    noisy = smooth + 0.05 * np.random.default_rng(1).standard_normal(smooth.shape)
    assert estimate_sigma(noisy) == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("sigma255", [5, 15, 25, 50])
def test_agrees_with_scikit_image_on_a_photograph(sigma255):
    skimage = pytest.importorskip("skimage")
    pytest.importorskip("pywt")
    from skimage.restoration import estimate_sigma as reference

    camera = skimage.data.camera() / 255.0
    noisy = camera + sigma255 / 255 * np.random.default_rng(sigma255).standard_normal(camera.shape)
    ours, theirs = estimate_sigma(noisy), reference(noisy)
    assert ours == pytest.approx(theirs, rel=0.05)
    if sigma255 >= 15:  # below that the photograph's own texture counts too (documented)
        assert ours * 255 == pytest.approx(sigma255, rel=0.1)


def test_channels_are_estimated_apart_and_averaged():
    rng = np.random.default_rng(2)
    image = np.stack(
        [0.02 * rng.standard_normal((128, 128)), 0.06 * rng.standard_normal((128, 128))], -1
    )
    assert estimate_sigma(image, channel_axis=-1) == pytest.approx(0.04, rel=0.05)
    assert estimate_sigma(image[..., 0]) == pytest.approx(0.02, rel=0.05)


def test_odd_lengths_and_nonfinite_samples():
    rng = np.random.default_rng(3)
    noise = 0.1 * rng.standard_normal((101, 77))
    noise[5, 5] = np.nan
    assert estimate_sigma(noise) == pytest.approx(0.1, rel=0.06)
    before = noise.copy()
    estimate_sigma(noise)
    np.testing.assert_array_equal(noise, before)  # the input is not modified


@pytest.mark.parametrize(
    "array, kwargs, match",
    [
        (np.zeros((1, 10)), {}, "axis 0 has length 1"),
        (np.zeros(()), {}, "at least one axis"),
        (np.array(["a", "b"]), {}, "real numbers"),
        (np.zeros((4, 4)), {"channel_axis": 2}, "channel_axis 2"),
        (np.full((4, 4), np.nan), {}, "no finite"),
    ],
)
def test_bad_input_is_refused_by_name(array, kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_sigma(array, **kwargs)
