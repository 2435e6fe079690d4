"""The volume adapter's density helpers are thin wrappers over the core spec grammar."""

import math

import pytest

import ndwconv as nw
from ndwconv.adapters.volumes import is_physical, physical_density


def test_lengths_are_physical_and_resolve_in_mm():
    assert is_physical("gaussian:1.5mm") and is_physical("gaussian:800um")
    assert is_physical(nw.Gaussian(1.0, unit="mm")) and is_physical("learned:gaussian:1mm")
    assert not is_physical("gaussian:20ms") and not is_physical(None)
    # 800 µm = 0.8 mm on 0.4 mm voxels: exp(-0.4² / (2 · 0.8²)) = exp(-1/8)
    phi = physical_density("gaussian:800um", (0.4,)).build((3,))
    assert math.isclose(phi[0].item(), math.exp(-1 / 8), rel_tol=1e-12)
    assert physical_density("gaussian:1mm", (1.0, 1.0, 3.0)) == nw.as_density(
        "gaussian:1;spacing=1,1,3"
    )


def test_times_are_refused_for_voxel_spacings():
    with pytest.raises(ValueError, match=r"ms, a time.*mm"):
        physical_density("gaussian:20ms", (1.0, 1.0, 1.0))


def test_malformed_specs_raise_the_core_error():
    with pytest.raises(ValueError, match="unknown unit 'cm'"):
        is_physical("gaussian:1cm")
    with pytest.raises(TypeError, match="density must be"):
        is_physical(3.5)
