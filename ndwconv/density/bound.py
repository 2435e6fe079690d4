"""Bound densities: the ``nn.Module`` a layer holds as ``phi``, whose ``forward()`` is Φ.

A family binds to one layer's kernel shape: fixed families give a ``FixedPhi`` (Φ built
once, a non-persistent buffer), ``Learned`` gives a ``LearnedPhi`` (trainable per-axis
profiles).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .profiles import as_tuple, outer, shortest_decimal, symmetric_profile

if TYPE_CHECKING:
    from .base import Density
    from .families import Learned, Table

__all__ = ["DensityRangeError", "FixedPhi", "LearnedPhi", "check_phi_in_dtype"]


class DensityRangeError(ValueError):
    """Φ does not fit the dtype the layer computes in: values that are finite in float64
    overflow there, or underflow to all zeros, or the values are not finite at all."""


def _validate_phi(phi: Tensor, kernel_size: tuple[int, ...], family: Density) -> None:
    if tuple(phi.shape) != kernel_size:
        raise ValueError(
            f"density {family!s} built Φ of shape {tuple(phi.shape)} for kernel {kernel_size}"
        )
    # Zeros are allowed: a Gaussian far narrower than the tap spacing underflows to 0 on
    # the outer taps, which then simply do not contribute.
    if not torch.isfinite(phi).all() or (phi < 0).any() or not (phi > 0).any():
        raise ValueError(
            f"density {family!s} gives non-finite, negative or all-zero values for kernel "
            f"{kernel_size}"
        )


def check_phi_in_dtype(
    phi: Tensor,
    family: Density | str,
    kernel_size: Sequence[int],
    reference: Tensor | None = None,
) -> None:
    """Raise unless Φ, as held in its own dtype, is finite everywhere and not all zero.

    A density whose values are finite in float64 can still overflow in the dtype the
    layer computes in (float32 above about 3.4e38, float16 above 65504, bfloat16 above
    about 3.4e38); Φ would then be infinite and every output non-finite. One whose
    values are all tiny can underflow to zero, and the layer would ignore its input.

    Args:
        phi: Φ in the dtype it is used in.
        family: the density (or its description), for the message.
        kernel_size: the kernel's spatial shape, for the message.
        reference: Φ in float64, to report the largest value in the message.

    Raises:
        DensityRangeError: naming the density, the kernel, the dtype and its range.
    """
    if phi.is_complex():  # a layer cast to a complex dtype: Φ is its real part
        phi = phi.real
    dtype = phi.dtype
    if bool(torch.isfinite(phi).all()):
        if bool((phi > 0).any()):
            return
        name = str(dtype).removeprefix("torch.")
        raise DensityRangeError(
            f"density {family!s} for kernel {tuple(kernel_size)} underflows to all zeros in "
            f"{name} (smallest positive {torch.finfo(dtype).tiny:.4g}): the layer would "
            "output only its bias; use a wider density or a wider dtype"
        )
    largest = torch.finfo(dtype).max
    name = str(dtype).removeprefix("torch.")
    where = f"density {family!s} for kernel {tuple(kernel_size)}"
    if reference is not None and bool(torch.isfinite(reference).all()):
        peak = float(reference.abs().max())
        raise DensityRangeError(
            f"{where} overflows in {name}: Φ reaches {peak:.4g}, above the largest {name} "
            f"value {largest:.4g}; use smaller density values or a wider dtype"
        )
    raise DensityRangeError(f"{where} gives non-finite Φ in {name} (largest finite {largest:.4g})")


def _log_in_dtype(values: Tensor, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    """``log(values)`` in ``dtype`` on ``device``, chosen so that ``exp`` gives back the
    values as ``dtype`` holds them wherever a neighbouring ``dtype`` number does.

    Rounding the float64 logarithm to float32 usually moves ``exp(θ)`` one unit off the
    float32 value (0.15 would start at 0.14999999); a learned density then would not
    start exactly at its ``init``, nor print as it was written.
    """
    theta = values.log().to(device=device, dtype=dtype)
    if theta.device.type == "meta" or dtype == torch.float64 or theta.numel() == 0:
        return theta
    target = values.to(device=device, dtype=dtype)
    best = theta.clone()
    found = theta.exp() == target
    for direction in (math.inf, -math.inf):
        step = theta
        for _ in range(4):
            step = torch.nextafter(step, torch.full_like(step, direction))
            hit = ~found & (step.exp() == target)
            best = torch.where(hit, step, best)
            found |= hit
    return best


class _BoundPhi(nn.Module):
    """What every bound density records: its family, kernel shape and dilation."""

    def __init__(
        self, family: Density, kernel_size: Sequence[int], dilation: Sequence[int] | None
    ) -> None:
        super().__init__()
        self.family = family
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.dilation = as_tuple(dilation, len(self.kernel_size))

    @staticmethod
    def _float_dtype(dtype: torch.dtype | None) -> torch.dtype:
        """``dtype`` when it is a floating type, else torch's default floating type."""
        return dtype if dtype is not None and dtype.is_floating_point else torch.get_default_dtype()


class FixedPhi(_BoundPhi):
    """Φ of a fixed family for one kernel shape, stored once per device/dtype.

    Φ lives in a non-persistent buffer: it follows ``.to()``/``.half()`` with the layer and
    never appears in the ``state_dict``. Float64 masters are kept so converting to float64
    after float32 does not lose precision. For a separable family (one that defines
    ``profile`` and not ``build``) Φ in a narrower dtype is the outer product of the
    per-axis profiles rounded to that dtype, computed in it: exactly how a learned
    density computes its Φ, so freezing one changes no bit of Φ.

    Raises:
        ValueError: the family's Φ has the wrong shape, or values that are not finite
            and ≥ 0 (not all zero); ``DensityRangeError`` (a ``ValueError``) when Φ
            overflows or underflows to all zeros in the layer's dtype, here or on a later
            cast.
    """

    phi: Tensor

    def __init__(
        self,
        family: Density,
        kernel_size: Sequence[int],
        dilation: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__(family, kernel_size, dilation)
        with torch.device("cpu"):  # Φ is built on the CPU in float64, whatever the default device
            master = family.build(self.kernel_size, self.dilation).to(torch.float64)
            _validate_phi(master, self.kernel_size, family)
            self._profiles: list[Tensor] | None = None
            if family.separable:
                n = len(self.kernel_size)
                self._profiles = [
                    family.profile(k, a, n, self.dilation[a]).to(torch.float64)
                    for a, k in enumerate(self.kernel_size)
                ]
        self._master = master
        phi = self._in_dtype(self._float_dtype(dtype))
        self.register_buffer("phi", phi.to(device=device), persistent=False)

    def _in_dtype(self, dtype: torch.dtype) -> Tensor:
        """Φ in ``dtype`` on the CPU, checked to be finite there."""
        if self._profiles is None or dtype == torch.float64:
            phi = self._master.to(dtype)
        else:
            phi = outer([p.to(dtype) for p in self._profiles])
        check_phi_in_dtype(phi, self.family, self.kernel_size, self._master)
        return phi

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        before = self._buffers["phi"]
        super()._apply(fn, recurse)
        # Re-derive from float64 so e.g. float32 → float64 keeps full precision; Φ must fit
        # the new dtype (checked here, once, not on every call).
        if self.phi.device.type != "meta":
            try:
                phi = self._in_dtype(self.phi.dtype)
            except DensityRangeError:
                self._buffers["phi"] = before
                raise
            self.phi = phi.to(device=self.phi.device)
        return self

    def forward(self) -> Tensor:
        return self.phi

    def spec(self) -> Density:
        """The family this Φ was built from."""
        return self.family

    def extra_repr(self) -> str:
        return f"{self.family!s}, kernel_size={self.kernel_size}"


class LearnedPhi(_BoundPhi):
    """Trainable symmetric per-axis profiles for one kernel shape (``Learned`` bound).

    Parameters ``log_half.{axis}`` hold the logs of the ``k // 2`` outer values of each
    axis (outermost first); Φ is the outer product of ``[exp(θ), 1, flip(exp(θ))]``.
    """

    def __init__(
        self,
        family: Learned,
        kernel_size: Sequence[int],
        dilation: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__(family, kernel_size, dilation)
        ndim = len(self.kernel_size)
        dtype = self._float_dtype(dtype)
        params = []
        for axis, size in enumerate(self.kernel_size):
            if size % 2 == 0:
                raise ValueError(
                    f"Learned densities need odd kernel sizes (centre fixed to 1); axis {axis} "
                    f"has size {size}"
                )
            with torch.device("cpu"):
                prof = family.init.profile(size, axis, ndim, self.dilation[axis]).to(torch.float64)
            centre = prof[size // 2]
            if not torch.isfinite(prof).all() or (prof <= 0).any():
                raise ValueError(
                    f"Learned init {family.init!s} gives non-positive values on axis {axis} "
                    "(learned values are kept positive; for a Gaussian init, use a larger σ)"
                )
            if not torch.allclose(prof, prof.flip(0)) or abs(float(centre) - 1.0) > 1e-12:
                raise ValueError(
                    f"Learned init {family.init!s} must be symmetric with centre 1 on axis {axis}"
                )
            half = _log_in_dtype(prof[: size // 2], dtype, device)
            params.append(nn.Parameter(half))
        self.log_half = nn.ParameterList(params)
        self.check_range(self.log_half)

    def check_range(self, log_half: Sequence[Tensor]) -> None:
        """Raise unless Φ from these log-values is finite in the parameters' dtype.

        Called whenever the values come from outside the training loop: when the layer is
        built, when its dtype changes and when a ``state_dict`` is loaded (before anything
        is copied), and by the layer when it rebuilds its inference kernel.

        Raises:
            DensityRangeError: naming the density, the kernel and the dtype.
        """
        if any(t.device.type == "meta" for t in log_half):
            return
        with torch.no_grad():
            dtypes = [p.dtype for p in self.log_half]
            phi = outer(
                [
                    symmetric_profile(t.detach().to(device="cpu", dtype=d).exp())
                    for t, d in zip(log_half, dtypes, strict=True)
                ]
            )
            if bool(torch.isfinite(phi).all()):
                return
            wide = outer([symmetric_profile(t.double().cpu().exp()) for t in log_half])
        check_phi_in_dtype(phi, self.family, self.kernel_size, wide)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        dtypes = [p.dtype for p in self.log_half]
        super()._apply(fn, recurse)
        if [p.dtype for p in self.log_half] != dtypes:
            self.check_range(self.log_half)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        incoming = []
        for axis, p in enumerate(self.log_half):
            value = state_dict.get(f"{prefix}log_half.{axis}")
            ok = isinstance(value, Tensor) and value.shape == p.shape and value.is_floating_point()
            incoming.append(value if ok else p)
        self.check_range(incoming)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        """Set the values back to the family's ``init`` (e.g. after ``to_empty()``)."""
        ndim = len(self.kernel_size)
        with torch.no_grad(), torch.device("cpu"):
            for axis, (size, p) in enumerate(zip(self.kernel_size, self.log_half, strict=True)):
                prof = self.family.init.profile(size, axis, ndim, self.dilation[axis])
                p.copy_(_log_in_dtype(prof.to(torch.float64)[: size // 2], p.dtype, p.device))

    def profiles(self) -> list[Tensor]:
        return [symmetric_profile(p.exp()) for p in self.log_half]

    def forward(self) -> Tensor:
        return outer(self.profiles())

    def half_values(self) -> list[list[float]]:
        """Current outer values per axis, outermost first (what ``freeze`` tabulates).

        Each value is the shortest decimal that converts back to the value the layer
        computes with in its dtype (``0.15`` rather than ``0.14999999105930328`` for
        float32), so specs print as they were written and read back to the same Φ.
        """
        return [
            [shortest_decimal(v, p.dtype) for v in p.detach().exp().double().cpu().tolist()]
            for p in self.log_half
        ]

    def spec(self) -> Learned:
        """A ``Learned`` family initialised at the current values."""
        return type(self.family)(self.half_values())

    def frozen(self) -> Table:
        """The current values as a fixed ``Table`` (one profile per axis)."""
        return self.spec().init

    def extra_repr(self) -> str:
        vals = "|".join(",".join(f"{v:.4g}" for v in axis) for axis in self.half_values())
        return f"learned, kernel_size={self.kernel_size}, values={vals}"
