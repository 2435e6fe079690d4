"""Volume training patches: normalisation, Gaussian and Rician noise, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ndwconv.recipes.tasks.denoise.volume_data import VolumePatches, add_noise, normalise


def ramp(shape=(20, 18, 16)) -> np.ndarray:
    """A volume whose every voxel value tells its position (patches are identifiable)."""
    return (np.arange(np.prod(shape)).reshape(shape) / np.prod(shape)).astype(np.float32)


def test_normalise_maps_the_percentiles_to_zero_and_one():
    volume = np.random.default_rng(0).normal(100, 20, size=(30, 30, 30)).astype(np.float32)
    scaled, (lo, hi) = normalise(volume, 1, 99)
    assert lo == pytest.approx(np.percentile(volume, 1)) and hi == pytest.approx(
        np.percentile(volume, 99)
    )
    assert scaled.min() == 0 and scaled.max() == 1
    inside = (volume > lo) & (volume < hi)
    np.testing.assert_allclose(scaled[inside], ((volume - lo) / (hi - lo))[inside], rtol=1e-5)
    with pytest.raises(ValueError, match="empty intensity range"):
        normalise(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        normalise(np.array([[[np.nan, 1.0]]]))
    with pytest.raises(ValueError, match="percentiles"):
        normalise(volume, 50, 50)


def test_rician_noise_has_the_rice_moments():
    """On a constant signal ν, E[M²] = ν² + 2σ² (exact for the Rice distribution)."""
    g = torch.Generator().manual_seed(1)
    nu, sigma255 = 0.5, 51.0
    sigma = sigma255 / 255
    m = add_noise(torch.full((400_000,), nu, dtype=torch.float64), sigma255, "rician", g)
    assert (m >= 0).all()
    assert float((m**2).mean()) == pytest.approx(nu**2 + 2 * sigma**2, rel=5e-3)
    zeros = add_noise(torch.zeros(400_000, dtype=torch.float64), sigma255, "rician", g)
    assert float(zeros.mean()) == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=5e-3)  # Rayleigh
    gauss = add_noise(torch.full((400_000,), nu, dtype=torch.float64), sigma255, "gaussian", g)
    assert float(gauss.mean()) == pytest.approx(nu, abs=3e-3)
    assert float(gauss.std()) == pytest.approx(sigma, rel=5e-3)
    with pytest.raises(ValueError, match="noise kind"):
        add_noise(torch.zeros(3), 1.0, "poisson", g)


def test_items_are_pure_functions_of_seed_and_index_and_crop_the_volume():
    volume = ramp()
    data = VolumePatches([volume], 6, sigma=25, kind="rician", seed=3, flips=False)
    again = VolumePatches([volume], 6, sigma=25, kind="rician", seed=3, flips=False)
    order = [7, 0, 10_000, 7]
    first = [data[i] for i in order]
    for (n1, c1), i in zip(first, order, strict=True):
        n2, c2 = again[i]
        assert torch.equal(n1, n2) and torch.equal(c1, c2)
    assert not torch.equal(data[0][0], data[1][0])
    assert not torch.equal(data[0][0], VolumePatches([volume], 6, seed=4)[0][0])
    for _, clean in first:  # each clean patch is a crop of the volume, found by its values
        flat = clean[0].numpy()
        x, y, z = np.unravel_index(np.argmin(np.abs(volume - flat[0, 0, 0])), volume.shape)
        np.testing.assert_array_equal(flat, volume[x : x + 6, y : y + 6, z : z + 6])


def test_flips_only_reverse_axes():
    volume = ramp((12, 12, 12))
    seen = set()
    for i in range(64):
        clean = VolumePatches([volume], 12, seed=0, flips=True)[i][1][0].numpy()
        # the ramp grows along every axis: an axis whose first face is larger is reversed
        axes = tuple(
            a for a in range(3) if np.take(clean, 0, a).mean() > np.take(clean, -1, a).mean()
        )
        np.testing.assert_array_equal(clean, np.flip(volume, axes) if axes else volume)
        seen.add(axes)
    assert len(seen) == 8  # every combination of the three flips occurs


def test_foreground_sampling_avoids_empty_patches():
    volume = np.zeros((40, 40, 40), np.float32)
    volume[:, :, 26:] = 1.0  # the object fills the last 14 of 40 slices
    plain = VolumePatches([volume], 8, seed=0)
    aware = VolumePatches([volume], 8, seed=0, min_foreground=0.5, foreground_level=0.5)
    frac = lambda d: np.mean([float((d[i][1] > 0.5).float().mean()) for i in range(60)])  # noqa: E731
    assert frac(aware) > 0.75 and frac(plain) < 0.5


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"patch_size": 30}, "larger than volume"),
        ({"patch_size": 0}, "patch_size"),
        ({"kind": "poisson"}, "kind"),
        ({"seed": -1}, "seed"),
        ({"min_foreground": 2}, "min_foreground"),
        ({"sigma": -1}, "sigma"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        VolumePatches([ramp()], **{"patch_size": 6, **kwargs})
