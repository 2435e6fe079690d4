"""weighted_conv against independent float64 references (NumPy loops and scipy.ndimage)."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from hypothesis import given

from ndwconv.functional import pad_nd, weighted_conv
from ndwconv.testing import NUMPY_PAD_MODES, SCIPY_MODES, conv_cases, reference_conv

MODES = ["zeros", "reflect", "replicate", "circular"]


def t(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_reference_matches_scipy_correlate(ndim, mode):
    """The NumPy reference itself agrees with scipy.ndimage.correlate (single channel)."""
    rng = np.random.default_rng(ndim)
    kernel = (3, 5, 3, 1)[:ndim]
    x = rng.standard_normal((6, 7, 5, 4)[:ndim])
    w = rng.standard_normal(kernel)
    expected = ndi.correlate(x, w, mode=SCIPY_MODES[mode])
    got = reference_conv(
        x[None, None], w[None, None], padding=[k // 2 for k in kernel], padding_mode=mode
    )
    np.testing.assert_allclose(got[0, 0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4])
def test_weighted_conv_matches_scipy_with_density(ndim, mode):
    rng = np.random.default_rng(10 + ndim)
    kernel = (5, 3, 3, 3)[:ndim]
    x = rng.standard_normal((2, 9, 6, 5, 4)[: ndim + 1])  # 2 channels
    w = rng.standard_normal((1, 2, *kernel))
    phi = rng.uniform(0.1, 1.5, kernel)
    y = weighted_conv(
        t(x[None]), t(w), padding=[k // 2 for k in kernel], phi=t(phi), padding_mode=mode
    )
    expected = sum(ndi.correlate(x[c], w[0, c] * phi, mode=SCIPY_MODES[mode]) for c in range(2))
    np.testing.assert_allclose(y[0, 0].numpy(), expected, rtol=1e-11, atol=1e-11)


@given(conv_cases(ndim=(1, 4), max_kernel=4, max_size=7))
def test_weighted_conv_matches_reference(case):
    """Any N, stride, padding (ints, 'same', every mode), dilation, groups, bias, density."""
    a = case.arrays
    ref = reference_conv(a["x"], a["weight"], a["bias"], phi=a["phi"], **case.functional_kwargs)
    y = weighted_conv(
        t(a["x"]), t(a["weight"]), t(a["bias"]), phi=t(a["phi"]), **case.functional_kwargs
    )
    assert tuple(y.shape) == ref.shape
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)


@given(conv_cases(ndim=(1, 3), max_kernel=4, max_size=8))
def test_density_of_ones_equals_nn_conv(case):
    """Without a density the functional is exactly torch's nn.ConvNd forward."""
    conv = getattr(torch.nn, f"Conv{case.ndim}d")(**case.conv_kwargs, dtype=torch.float64)
    x = case.x()
    y = weighted_conv(
        x,
        conv.weight,
        conv.bias,
        phi=torch.ones(case.kernel_size, dtype=torch.float64),
        **case.functional_kwargs,
    )
    torch.testing.assert_close(y, conv(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3, 4, 5])
def test_pad_nd_matches_numpy_pad(ndim, mode):
    rng = np.random.default_rng(ndim)
    shape = (2, 3, *((4, 3, 5, 2, 3)[:ndim]))
    x = rng.standard_normal(shape)
    pads = [(i % 3, (i + 1) % 2) for i in range(ndim)]
    if mode == "reflect":  # reflect needs padding < size
        pads = [
            (min(lo, s - 1), min(hi, s - 1)) for (lo, hi), s in zip(pads, shape[2:], strict=True)
        ]
    got = pad_nd(torch.from_numpy(x), pads, mode).numpy()
    np.testing.assert_array_equal(
        got, np.pad(x, [(0, 0), (0, 0), *pads], mode=NUMPY_PAD_MODES[mode])
    )


def test_unbatched_input_matches_batched():
    x = torch.randn(3, 10, 9, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    phi = torch.rand(3, 3, dtype=torch.float64) + 0.1
    torch.testing.assert_close(
        weighted_conv(x, w, padding=1, phi=phi), weighted_conv(x[None], w, padding=1, phi=phi)[0]
    )


def test_four_d_same_padding_even_kernel():
    """'same' with an even kernel puts the extra padded voxel on the right, as PyTorch does."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 4, 4, 3))
    w = rng.standard_normal((3, 2, 2, 3, 4, 1))
    y = weighted_conv(t(x), t(w), padding="same", padding_mode="reflect")
    np.testing.assert_allclose(
        y.numpy(), reference_conv(x, w, padding="same", padding_mode="reflect"), atol=1e-12
    )
    assert y.shape[2:] == x.shape[2:]


class TestErrors:
    def test_wrong_input_rank(self):
        with pytest.raises(ValueError, match="spatial dim"):
            weighted_conv(torch.randn(3, 8), torch.randn(4, 3, 3, 3))

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match="channels"):
            weighted_conv(torch.randn(1, 5, 8, 8), torch.randn(4, 3, 3, 3))

    def test_groups_not_dividing_out_channels(self):
        with pytest.raises(ValueError, match="divisible by groups"):
            weighted_conv(torch.randn(1, 4, 8, 8), torch.randn(3, 2, 3, 3), groups=2)

    def test_kernel_larger_than_padded_input(self):
        with pytest.raises(ValueError, match="larger than the padded input"):
            weighted_conv(torch.randn(1, 1, 4, 8), torch.randn(1, 1, 7, 3))

    def test_same_with_stride(self):
        with pytest.raises(ValueError, match="stride 1"):
            weighted_conv(
                torch.randn(1, 1, 8, 8), torch.randn(1, 1, 3, 3), stride=2, padding="same"
            )

    @pytest.mark.parametrize(
        "bad",
        [
            {"padding": "full"},
            {"padding_mode": "mirror"},
            {"stride": 0},
            {"dilation": (1, 2, 3)},
            {"groups": 0},
        ],
    )
    def test_bad_arguments_name_themselves(self, bad):
        (name,) = bad
        with pytest.raises((ValueError, TypeError), match=name):
            weighted_conv(torch.randn(1, 2, 8, 8), torch.randn(2, 2, 3, 3), **bad)

    @pytest.mark.parametrize("shape", [(3, 5), (1, 3), (3,), (1, 1, 3, 3), (2, 1, 3, 3)])
    def test_phi_must_have_the_kernel_shape_exactly(self, shape):
        """Shapes that broadcast to the weight, e.g. (1, 3) or (2, 1, 3, 3), are refused."""
        with pytest.raises(ValueError, match=r"phi must have the kernel's spatial shape.*\(3, 3\)"):
            weighted_conv(torch.randn(1, 1, 8, 8), torch.randn(2, 1, 3, 3), phi=torch.ones(shape))

    def test_phi_on_another_device(self):
        with pytest.raises(ValueError, match=r"phi is on device meta but weight is on cpu"):
            weighted_conv(
                torch.randn(1, 1, 8, 8),
                torch.randn(1, 1, 3, 3),
                phi=torch.ones(3, 3, device="meta"),
            )

    def test_phi_with_another_dtype(self):
        with pytest.raises(TypeError, match=r"phi has dtype torch.float64 but weight has.*float32"):
            weighted_conv(
                torch.randn(1, 1, 8, 8),
                torch.randn(1, 1, 3, 3),
                phi=torch.ones(3, 3, dtype=torch.float64),
            )

    def test_phi_not_a_tensor(self):
        with pytest.raises(TypeError, match="phi must be a tensor"):
            weighted_conv(torch.randn(1, 1, 8, 8), torch.randn(1, 1, 3, 3), phi=[[1.0] * 3] * 3)

    def test_phi_and_padding_mode_are_keyword_only(self):
        x, w = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 3, 3)
        with pytest.raises(TypeError, match="positional"):
            weighted_conv(x, w, None, 1, 1, 1, 1, torch.ones(3, 3))

    @pytest.mark.parametrize("shape", [(2,), (3, 1), ()])
    def test_bias_shape(self, shape):
        with pytest.raises(ValueError, match=r"bias must have shape \(C_out,\) = \(3,\)"):
            weighted_conv(torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3), torch.ones(shape))

    @pytest.mark.parametrize("mode", ["reflect", "circular"])
    def test_padding_too_large_for_mode(self, mode):
        with pytest.raises(ValueError, match=mode):
            weighted_conv(
                torch.randn(1, 1, 2, 2, 2, 2),
                torch.randn(1, 1, 5, 1, 1, 1),
                padding=(3, 0, 0, 0),
                padding_mode=mode,
            )


def test_four_d_every_tap_in_the_padding_gives_the_bias():
    """Regression: a first-axis tap layout that never meets a real input plane."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 1, 3, 3, 3))
    w = rng.standard_normal((2, 1, 2, 1, 1, 1))
    bias = rng.standard_normal(2)
    y = weighted_conv(t(x), t(w), t(bias), padding=(2, 0, 0, 0), dilation=(4, 1, 1, 1))
    ref = reference_conv(x, w, bias, padding=(2, 0, 0, 0), dilation=(4, 1, 1, 1))
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(ref, np.broadcast_to(bias.reshape(1, 2, 1, 1, 1, 1), ref.shape))


def test_positional_arguments_mean_what_they_mean_for_f_conv2d():
    """Regression: ``weighted_conv(x, w, b)`` once read ``b`` as the density, and a bias of
    C_out = k values broadcast over the kernel's last axis without an error."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)  # C_out == kW: would broadcast as a density
    torch.testing.assert_close(weighted_conv(x, w, b), F.conv2d(x, w, b), rtol=0, atol=0)
    got = weighted_conv(x, w, b, 2, 1, 2, 1)  # F.conv2d's stride, padding, dilation, groups
    torch.testing.assert_close(got, F.conv2d(x, w, b, 2, 1, 2, 1), rtol=0, atol=0)
    phi = torch.rand(3, 3, dtype=torch.float64) + 0.1
    torch.testing.assert_close(
        weighted_conv(x, w, b, 1, 1, phi=phi), F.conv2d(x, w * phi, b, 1, 1), rtol=0, atol=0
    )
