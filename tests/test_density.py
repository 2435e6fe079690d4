"""Density families: the reference convention, Gaussian values, specs and errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ndwconv as nw
from ndwconv import Density, Gaussian, Learned, Ones, Table


def as_np(t):
    return t.detach().cpu().numpy()


class TestTableConvention:
    """Values from the reference implementation's README (outermost first, centre 1)."""

    @pytest.mark.parametrize(
        ("k", "half", "profile"),
        [
            (3, [0.7], [0.7, 1, 0.7]),
            (5, [0.2, 0.8], [0.2, 0.8, 1, 0.8, 0.2]),
            (7, [0.25, 0.15, 0.55], [0.25, 0.15, 0.55, 1, 0.55, 0.15, 0.25]),
        ],
    )
    def test_profiles(self, k, half, profile):
        np.testing.assert_array_equal(as_np(Table(half).build((k,))), profile)
        np.testing.assert_array_equal(as_np(Table.default().build((k,))), profile)

    def test_two_and_three_d_are_outer_products(self):
        a3 = np.array([0.7, 1, 0.7])
        a5 = np.array([0.2, 0.8, 1, 0.8, 0.2])
        phi = as_np(Table.default().build((3, 5)))
        np.testing.assert_allclose(phi, a3[:, None] * a5[None, :], rtol=0, atol=0)
        phi3 = as_np(Table({3: [0.7], 5: [0.2, 0.8]}).build((5, 3, 5)))
        np.testing.assert_allclose(phi3, np.einsum("i,j,k->ijk", a5, a3, a5), rtol=1e-15)
        assert phi3[2, 1, 2] == 1.0

    def test_per_axis_profiles(self):
        phi = as_np(Table([[0.5], [0.1, 0.9]]).build((3, 5)))
        np.testing.assert_allclose(phi[:, 0], [0.05, 0.1, 0.05])
        np.testing.assert_allclose(phi[1], [0.1, 0.9, 1, 0.9, 0.1])

    def test_size_one_axes_are_untouched(self):
        np.testing.assert_array_equal(as_np(Table([0.7]).build((3, 1))), [[0.7], [1], [0.7]])

    def test_default_values(self):
        assert Table.default() == Table({3: [0.7], 5: [0.2, 0.8], 7: [0.25, 0.15, 0.55]})
        assert nw.as_density(None) == Table.default()


class TestGaussian:
    def test_values_against_formula(self):
        sigma = 1.3
        got = as_np(Gaussian(sigma).build((5,)))
        want = [math.exp(-(d**2) / (2 * sigma**2)) for d in (-2, -1, 0, 1, 2)]
        np.testing.assert_allclose(got, want, rtol=1e-15)

    def test_spacing_gives_physical_units(self):
        """3 mm slices: neighbours along z are 3 mm away; σ is in mm."""
        phi = as_np(Gaussian(1.5, spacing=(3.0, 1.0, 1.0)).build((3, 3, 3)))
        assert phi[1, 1, 1] == 1.0
        np.testing.assert_allclose(phi[0, 1, 1], math.exp(-9 / (2 * 1.5**2)))
        np.testing.assert_allclose(phi[1, 0, 1], math.exp(-1 / (2 * 1.5**2)))
        # the same physical σ on an isotropic 3 mm grid equals σ/3 in voxels
        np.testing.assert_allclose(
            as_np(Gaussian(1.5, spacing=3.0).build((3,))), as_np(Gaussian(0.5).build((3,)))
        )

    def test_per_axis_sigma_and_dilation(self):
        phi = as_np(Gaussian([1.0, 2.0]).build((3, 3), dilation=(2, 1)))
        np.testing.assert_allclose(phi[0, 1], math.exp(-4 / 2))
        np.testing.assert_allclose(phi[1, 0], math.exp(-1 / 8))

    def test_even_kernel_is_symmetric(self):
        p = as_np(Gaussian(1.0).build((4,)))
        np.testing.assert_allclose(p, p[::-1])
        np.testing.assert_allclose(p[1], math.exp(-0.25 / 2))


class TestLearned:
    def test_init_from_values_and_families(self):
        phi = nw.Learned([0.25, 0.15, 0.55]).bind((7,))()
        np.testing.assert_allclose(as_np(phi), [0.25, 0.15, 0.55, 1, 0.55, 0.15, 0.25], rtol=1e-6)
        phi = nw.Learned(Gaussian(1.0)).bind((3, 3), dtype=torch.float64)()
        np.testing.assert_allclose(as_np(phi), as_np(Gaussian(1.0).build((3, 3))), rtol=1e-12)
        np.testing.assert_array_equal(as_np(nw.Learned().bind((5, 3))()), np.ones((5, 3)))

    def test_each_binding_has_its_own_parameters(self):
        fam = Learned([0.7])
        a, b = fam.bind((3,)), fam.bind((3,))
        assert a.log_half[0] is not b.log_half[0]

    def test_stays_positive_symmetric_with_unit_centre(self):
        mod = Learned([0.7]).bind((3, 3), dtype=torch.float64)
        with torch.no_grad():
            for p in mod.parameters():
                p.add_(torch.randn_like(p) * 5)
        phi = as_np(mod())
        assert (phi > 0).all() and phi[1, 1] == 1.0
        np.testing.assert_allclose(phi, phi[::-1, ::-1])


class TestPhysicalUnits:
    """σ in mm, µm, s or ms, resolved against a sample spacing; expected values by hand."""

    def test_mm_against_an_anisotropic_voxel_spacing(self):
        # σ = 1.5 mm, voxels 1 × 0.5 × 3 mm: a neighbour d mm away weighs exp(-d²/4.5)
        density = nw.as_density("gaussian:1.5mm")
        assert density == Gaussian(1.5, unit="mm") and density.unit == "mm"
        phi = as_np(density.resolve((1.0, 0.5, 3.0)).build((3, 3, 3)))
        assert phi[1, 1, 1] == 1.0
        np.testing.assert_allclose(phi[0, 1, 1], math.exp(-1 / 4.5), rtol=1e-15)
        np.testing.assert_allclose(phi[1, 0, 1], math.exp(-0.25 / 4.5), rtol=1e-15)
        np.testing.assert_allclose(phi[1, 1, 0], math.exp(-2), rtol=1e-15)
        np.testing.assert_allclose(phi[0, 0, 0], math.exp(-(1 + 0.25 + 9) / 4.5), rtol=1e-15)

    def test_resolved_spec_is_a_gaussian_in_the_spacing_unit(self):
        resolved = nw.as_density("gaussian:1,2,3mm").resolve((1.0, 1.0, 3.0))
        assert resolved == Gaussian([1, 2, 3], spacing=(1, 1, 3)) and resolved.unit is None
        assert str(resolved) == "gaussian:1,2,3;spacing=1,1,3"

    def test_micrometres_resolve_against_millimetres(self):
        # 500 µm = 0.5 mm on 0.25 mm pixels: exp(-0.25² / (2 · 0.5²)) = exp(-1/8)
        phi = as_np(nw.as_density("gaussian:500µm").resolve(0.25).build((5,)))
        np.testing.assert_allclose(phi, [math.exp(-0.5), math.exp(-1 / 8), 1, math.exp(-1 / 8),
                                         math.exp(-0.5)], rtol=1e-12)

    def test_milliseconds_resolve_against_seconds_per_sample(self):
        # σ = 20 ms sampled at 100 Hz (0.01 s): taps 10 ms and 20 ms away
        resolved = nw.as_density("gaussian:20ms").resolve(1 / 100)
        assert resolved == Gaussian(0.02, spacing=0.01)
        phi = as_np(resolved.build((5,)))
        np.testing.assert_allclose(phi, [math.exp(-0.5), math.exp(-1 / 8), 1, math.exp(-1 / 8),
                                         math.exp(-0.5)], rtol=1e-12)
        assert nw.as_density("gaussian:0.02s").resolve(0.01) == resolved

    def test_spec_forms_and_case(self):
        for text in ["gaussian:1.5MM", "Gaussian: 1.5 mm", 'gaussian:{"sigma": 1.5, "unit": "mm"}']:
            assert nw.as_density(text) == Gaussian(1.5, unit="mm"), text
        assert Gaussian(1.0, unit="mm").to_spec() == {
            "family": "gaussian", "sigma": [1.0], "spacing": None, "unit": "mm"
        }
        assert "unit" not in Gaussian(1.0).to_spec()  # specs without units are unchanged

    def test_families_without_units_ignore_the_spacing(self):
        for spec in ["default", "table:0.5", "gaussian:1.2", "gaussian:2;spacing=3", "learned"]:
            density = nw.as_density(spec)
            assert density.unit is None and density.resolve((1.0, 1.0, 3.0)) is density

    def test_learned_resolves_its_start(self):
        learned = nw.as_density("learned:gaussian:1mm")
        assert learned.unit == "mm"
        resolved = learned.resolve((1.0, 3.0))
        assert resolved == Learned(Gaussian(1.0, spacing=(1.0, 3.0))) and resolved.unit is None
        phi = as_np(resolved.bind((3, 3), dtype=torch.float64)())
        np.testing.assert_allclose(phi[0, 1], math.exp(-1 / 2), rtol=1e-12)
        np.testing.assert_allclose(phi[1, 0], math.exp(-9 / 2), rtol=1e-12)

    def test_unresolved_density_cannot_build(self):
        with pytest.raises(ValueError, match=r"in mm: resolve it.*resolve\(spacing\)"):
            nw.WeightedConv3d(1, 1, 3, density="gaussian:1mm")
        with pytest.raises(ValueError, match="resolve"):
            nw.WeightedConv1d(1, 1, 3, density="learned:gaussian:20ms")

    @pytest.mark.parametrize(
        ("spec", "match"),
        [
            ("gaussian:1cm", r"unknown unit 'cm'.*mm, um, s, ms"),
            ("gaussian:1.5mm;spacing=1,1,3", "no spacing="),
            ("table:0.7mm", "table density"),
            ("gaussian:abcmm", "unknown unit"),
        ],
    )
    def test_bad_unit_specs(self, spec, match):
        with pytest.raises(ValueError, match=match):
            nw.as_density(spec)

    def test_bad_unit_arguments_and_spacings(self):
        with pytest.raises(ValueError, match="unknown unit 'furlong'"):
            Gaussian(1.0, unit="furlong")
        with pytest.raises(TypeError, match="unit"):
            Gaussian(1.0, unit=3)
        density = Gaussian(1.0, unit="mm")
        for bad in [(1.0, 0.0, 1.0), (float("nan"),), ()]:
            with pytest.raises(ValueError, match=r"resolve\(spacing\)"):
                density.resolve(bad)
        with pytest.raises(TypeError, match=r"resolve\(spacing\)"):
            density.resolve("1,1,3")


SPECS = [
    "default",
    "ones",
    "table:0.7",
    "table:0.2,0.8",
    "table:3=0.7;5=0.2,0.8",
    "table:axes=0.7|0.2,0.8",
    "gaussian:1.2",
    "gaussian:2,1,1;spacing=3,1,1",
    "gaussian:1.5mm",
    "gaussian:1,1,2mm",
    "gaussian:500um",
    "gaussian:20ms",
    "learned",
    "learned:0.25,0.15,0.55",
    "learned:gaussian:1",
    "learned:default",
    "learned:gaussian:1mm",
]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trips(spec):
    d = Density.from_spec(spec)
    assert Density.from_spec(str(d)) == d
    assert Density.from_spec(d.to_spec()) == d
    import json

    assert Density.from_spec(json.loads(json.dumps(d.to_spec()))) == d
    assert str(d) == spec


positive = st.floats(0.01, 10.0, allow_nan=False)


@given(st.lists(positive, min_size=1, max_size=4), st.lists(positive, min_size=1, max_size=3))
def test_value_specs_round_trip_exactly(values, sigmas):
    for d in (Table(values), Learned(values), Gaussian(sigmas, spacing=values[:1])):
        assert Density.from_spec(d.to_spec()) == d
        assert Density.from_spec(str(d)) == d


@given(st.lists(st.lists(positive, max_size=3), min_size=1, max_size=3))
def test_per_axis_table_specs_round_trip_exactly(per_axis):
    d = Table(per_axis)
    assert Density.from_spec(d.to_spec()) == d
    assert Density.from_spec(str(d)) == d


def test_user_family_registration_and_errors():
    @nw.register_density("ring_test")
    class Ring(Density):
        def __init__(self, inner: float = 0.5):
            self.inner = float(inner)

        def params(self):
            return {"inner": self.inner}

        def build(self, kernel_size, dilation=None):
            phi = torch.full(tuple(kernel_size), self.inner, dtype=torch.float64)
            phi[tuple(k // 2 for k in kernel_size)] = 1.0
            return phi

    d = nw.as_density('ring_test:{"inner": 0.25}')
    assert isinstance(d, Ring) and d.inner == 0.25
    assert Density.from_spec(d.to_spec()) == d
    conv = nw.WeightedConv2d(1, 1, 3, bias=False, density=d)
    np.testing.assert_array_equal(as_np(conv.phi()), [[0.25] * 3, [0.25, 1, 0.25], [0.25] * 3])
    with pytest.raises(TypeError, match="separable"):
        Learned(d)

    class Unregistered(Ones):
        family = ""

    with pytest.raises(TypeError, match="register"):
        Unregistered().to_spec()


class TestErrors:
    @pytest.mark.parametrize("bad", [[0.0], [-0.5], [float("nan")], [float("inf")]])
    def test_non_positive_or_non_finite(self, bad):
        with pytest.raises(ValueError, match="finite and > 0"):
            Table(bad)

    def test_profile_length_must_fit_kernel(self):
        with pytest.raises(ValueError, match="needs 2"):
            Table([0.7]).build((5,))
        with pytest.raises(ValueError, match=r"takes 2 value"):
            Table({5: [0.7]})

    def test_even_kernel_rejected_by_table(self):
        with pytest.raises(ValueError, match="odd kernel sizes"):
            Table([0.7]).build((4,))
        with pytest.raises(ValueError, match="odd kernel sizes"):
            nw.WeightedConv2d(1, 1, 2, density=[0.7])

    def test_missing_size_names_available_ones(self):
        with pytest.raises(ValueError, match=r"no profile for kernel size 9.*\[3, 5, 7\]"):
            Table.default().build((9,))

    def test_per_axis_count(self):
        with pytest.raises(ValueError, match="2 per-axis profiles"):
            Table([[0.7], [0.7]]).build((3, 3, 3))

    def test_gaussian_bad_sigma_and_axes(self):
        with pytest.raises(ValueError, match="sigma"):
            Gaussian(0)
        with pytest.raises(ValueError, match="sigma"):
            Gaussian([1, 2]).build((3, 3, 3))

    @pytest.mark.parametrize(
        ("spec", "err"),
        [
            ("no_such_family", ValueError),
            ("table:a,b", ValueError),
            ("gaussian:1;foo=2", ValueError),
            ({"sigma": 1}, ValueError),
            ({"family": "nope"}, ValueError),
            (3.5, TypeError),
            (object(), TypeError),
        ],
    )
    def test_bad_specs(self, spec, err):
        with pytest.raises(err, match=r"density|table|gaussian|Table"):
            nw.as_density(spec)


def test_gaussian_underflow_to_zero_is_allowed_but_not_for_learned():
    """Regression: σ=0.30 mm on 3 mm voxels with dilation 2 underflows exp() to 0 on the
    outer taps (found by the translation_equivariance property)."""
    layer = nw.WeightedConvNd(
        3,
        1,
        1,
        (5, 1, 1),
        padding="same",
        dilation=(2, 1, 1),
        density=Gaussian(0.3046875, spacing=(3, 1, 1)),
    )
    phi = layer.phi().flatten()
    assert phi[2] == 1 and phi[0] == 0 and phi[4] == 0
    with pytest.raises(ValueError, match="larger σ"):
        nw.WeightedConv1d(1, 1, 5, dilation=2, density=Learned(Gaussian(0.3, spacing=3)))
