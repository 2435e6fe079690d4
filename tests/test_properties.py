"""ndwconv's layers under the ndwconv.testing property battery, and mutants it must catch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import ndwconv as nw
from ndwconv import testing as nwt
from ndwconv.functional import pad_nd, weighted_conv

# The full battery runs every property of nwt.PROPERTIES on its own cases, four layers
# over: it takes a third of the active profile's examples per property, 20 under the
# default ``ci`` profile and 666 under ``thorough`` (tests/conftest.py, docs/testing.md).
BATTERY_EXAMPLES = max(10, settings.default.max_examples // 3)

LAYERS = [
    pytest.param(nw.WeightedConvNd, (1, 4), id="WeightedConvNd-1..4"),
    pytest.param(nw.WeightedConv1d, 1, id="WeightedConv1d"),
    pytest.param(nw.WeightedConv2d, 2, id="WeightedConv2d"),
    pytest.param(nw.WeightedConv3d, 3, id="WeightedConv3d"),
]


@pytest.mark.parametrize(("factory", "ndim"), LAYERS)
def test_every_property_holds(factory, ndim):
    report = nwt.check_layer(factory, ndim=ndim, max_examples=BATTERY_EXAMPLES)
    report.raise_if_failed()
    assert {r.name for r in report.results} == set(nwt.PROPERTIES)
    assert all(r.status == "held" and r.examples > 0 for r in report.results), str(report)


# -- the reference itself -----------------------------------------------------------------


@given(nwt.conv_cases(ndim=(1, 4), max_kernel=4, max_size=7))
def test_reference_transpose_is_the_adjoint(case):
    """⟨conv(x), y⟩ = ⟨x, conv_transpose(y)⟩ between the two NumPy references, every mode."""
    a = case.arrays
    y = case.rng(9).standard_normal(case.output_shape)
    forward = nwt.reference_conv(a["x"], a["weight"], phi=a["phi"], **case.functional_kwargs)
    back = nwt.reference_conv_transpose(
        y, a["weight"], case.spatial, phi=a["phi"], **case.functional_kwargs
    )
    assert np.isclose((forward * y).sum(), (a["x"] * back).sum(), rtol=1e-10, atol=1e-10)


@given(nwt.conv_cases(ndim=(1, 3), max_kernel=4, max_size=7, padding_modes=("zeros",), same=False))
def test_reference_transpose_matches_torch_conv_transpose(case):
    a = case.arrays
    y = case.rng(9).standard_normal(case.output_shape)
    w = a["weight"] * a["phi"]
    # output_padding recovers the input size lost to the stride's floor division
    out_pad = [
        case.spatial[i]
        - (
            (case.output_shape[2 + i] - 1) * case.stride[i]
            - 2 * case.padding[i]
            + case.dilation[i] * (case.kernel_size[i] - 1)
            + 1
        )
        for i in range(case.ndim)
    ]
    conv_t = getattr(F, f"conv_transpose{case.ndim}d")
    want = conv_t(
        torch.from_numpy(y),
        torch.from_numpy(w),
        None,
        case.stride,
        case.padding,
        out_pad,
        case.groups,
        case.dilation,
    )
    got = nwt.reference_conv_transpose(
        y, a["weight"], case.spatial, phi=a["phi"], **case.functional_kwargs
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


def test_strategies_respect_their_options():
    from hypothesis import find

    case = find(
        nwt.conv_cases(ndim=3, groups=False, density=("gaussian",), padding_modes=("circular",)),
        lambda c: c.kernel_size[0] > 2,
    )
    assert case.ndim == 3 and case.groups == 1 and isinstance(case.density, nw.Gaussian)
    assert case.padding_mode == "circular" and "density" in case.layer_kwargs
    plain = find(nwt.conv_cases(ndim=2, density=False), lambda c: True)
    assert "density" not in plain.layer_kwargs and plain.density == nw.Ones()


def test_user_density_strategy_hook():
    from hypothesis import find
    from hypothesis import strategies as st

    @nw.register_density("plateau_test")
    class Plateau(nw.Density):
        def __init__(self, level: float = 0.5):
            self.level = float(level)

        def params(self):
            return {"level": self.level}

        def profile(self, size, axis, ndim, dilation=1):
            p = torch.full((size,), self.level, dtype=torch.float64)
            p[size // 2] = 1.0
            return p

    nwt.register_density_strategy(
        "plateau_test",
        lambda k: st.floats(0.1, 1.0).map(Plateau) if all(s % 2 for s in k) else None,
    )
    case = find(nwt.conv_cases(ndim=1, density=["plateau_test"]), lambda c: c.kernel_size[0] >= 3)
    assert isinstance(case.density, Plateau)
    report = nwt.check_layer(
        nw.WeightedConv1d,
        1,
        density=["plateau_test"],
        max_examples=10,
        properties=["matches_reference", "flip_symmetry"],
    )
    report.raise_if_failed()


# -- mutants: deliberately broken layers the battery must catch ----------------------------


class PhiTransposed(nw.WeightedConvNd):
    """Φ laid out with its axes reversed (a classic bug on anisotropic kernels)."""

    def effective_weight(self):
        phi = self.phi()
        return self.weight * phi.permute(*reversed(range(phi.dim()))).reshape(phi.shape)


class OffByOnePadding(nw.WeightedConvNd):
    """Pads one voxel too many before and one too few after the first axis."""

    def _conv_forward(self, input, weight, bias):
        if isinstance(self.padding, str) or self.padding[0] == 0:
            return super()._conv_forward(input, weight, bias)
        pads = [(p, p) for p in self.padding]
        pads[0] = (pads[0][0] + 1, pads[0][1] - 1)
        x = pad_nd(input, pads, self.padding_mode)
        return weighted_conv(
            x,
            weight,
            bias=bias,
            stride=self.stride,
            padding=0,
            dilation=self.dilation,
            groups=self.groups,
            phi=None,  # weight is already W ⊙ Φ
        )


class DensitySkipsLastGroup(nw.WeightedConvNd):
    """Forgets Φ on the output channels of the last group."""

    def effective_weight(self):
        w = self.weight * self.phi()
        if self.groups > 1:
            per_group = self.out_channels // self.groups
            w = torch.cat([w[:-per_group], self.weight[-per_group:]])
        return w


# The correctness properties; the rest (gradcheck, dtypes, state_dicts) cannot see these bugs.
def _small(case):
    return case.batch == 1 and case.in_channels == case.groups and max(case.spatial) <= 9


def test_mutant_phi_transposed_is_caught():
    # only the properties asserted on: a property that holds runs all its examples
    report = nwt.check_layer(PhiTransposed, ndim=(2, 3), properties=["matches_reference"])
    assert not report.ok
    result = report["matches_reference"]
    cex = result.counterexample
    assert result.status == "failed" and _small(cex), str(report)
    phi = cex.phi()  # the shrunk case really has a Φ that changes when transposed
    assert not np.allclose(phi.transpose(*reversed(range(phi.ndim))).reshape(phi.shape), phi)
    assert "output vs float64 reference" in result.error


def test_mutant_off_by_one_padding_is_caught():
    report = nwt.check_layer(
        OffByOnePadding, ndim=(1, 3), properties=["matches_reference", "flip_symmetry"]
    )
    result = report["matches_reference"]
    cex = result.counterexample
    assert result.status == "failed" and _small(cex), str(report)
    assert cex.padding != "same" and cex.padding[0] >= 1
    assert report["flip_symmetry"].status == "failed"  # the shift breaks the mirror symmetry


def test_mutant_density_skipping_a_group_is_caught():
    report = nwt.check_layer(
        DensitySkipsLastGroup, ndim=(1, 2), properties=["matches_reference", "linear_in_input"]
    )
    result = report["matches_reference"]
    cex = result.counterexample
    assert result.status == "failed", str(report)
    assert cex.groups == 2 and cex.density != nw.Ones() and cex.batch == 1, str(cex)
    assert report["linear_in_input"].status == "held"  # still linear: only the reference sees it


def test_report_text_and_errors():
    report = nwt.check_layer(
        DensitySkipsLastGroup, ndim=1, properties=["matches_reference"], max_examples=30
    )
    text = str(report)
    assert "counter-example: ConvCase(" in text and "0 held, 1 failed" in text
    with pytest.raises(AssertionError, match="matches_reference"):
        report.raise_if_failed()
    with pytest.raises(ValueError, match="unknown properties"):
        nwt.check_layer(nw.WeightedConv1d, 1, properties=["commutes"])


def test_plain_layers_are_checked_without_density():
    report = nwt.check_layer(torch.nn.Conv2d, 2, density=False, max_examples=15)
    report.raise_if_failed()
    assert report["fold_equivalence"].status == "not applicable"
    assert report["ones_equals_conv"].status == "not applicable"


@given(nwt.signals((2, 3, 4), dtype=np.float32, bound=2.0))
def test_signals_are_finite_arrays_of_the_requested_shape(x):
    assert x.shape == (2, 3, 4) and x.dtype == np.float32
    assert np.isfinite(x).all() and np.abs(x).max() <= 2.0


def test_user_restrictions_win_over_property_needs():
    """A property whose cases conflict with the user's options is not applicable, and
    bounds are intersected (translation equivariance needs circular padding)."""
    report = nwt.check_layer(
        nw.WeightedConv1d,
        1,
        padding_modes=("zeros",),
        max_examples=10,
        properties=["translation_equivariance", "gradcheck"],
        max_size=3,
    )
    assert report["translation_equivariance"].status == "not applicable"
    assert report["gradcheck"].status == "held"
    assert nwt._merge_options({"max_size": 3}, {"max_size": 5})["max_size"] == 3
    assert nwt._merge_options({"same": False}, {"same": "only"}) is None
