"""Bound densities: the ``nn.Module`` a layer holds as ``phi``, whose ``forward()`` is Φ.

A family binds to one layer's kernel shape: fixed families give a ``FixedPhi`` (Φ built
once, a non-persistent buffer), ``Learned`` gives a ``LearnedPhi`` (trainable per-axis
profiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .profiles import as_tuple, outer, symmetric_profile

if TYPE_CHECKING:
    from .base import Density
    from .families import Learned, Table

__all__ = ["FixedPhi", "LearnedPhi"]


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


class _BoundPhi(nn.Module):
    """What every bound density records: its family, kernel shape and dilation."""

    def __init__(self, family: Density, kernel_size: Sequence[int],
                 dilation: Sequence[int] | None) -> None:
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
    never appears in the ``state_dict``. A float64 master copy is kept so converting to
    float64 after float32 does not lose precision.
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
        self._master = master
        dtype = self._float_dtype(dtype)
        self.register_buffer("phi", master.to(device=device, dtype=dtype), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        super()._apply(fn, recurse)
        # Re-derive from float64 so e.g. float32 → float64 keeps full precision.
        if self.phi.device.type != "meta":
            self.phi = self._master.to(device=self.phi.device, dtype=self.phi.dtype)
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
            half = prof[: size // 2].log()
            params.append(nn.Parameter(half.to(device=device, dtype=dtype)))
        self.log_half = nn.ParameterList(params)

    def reset_parameters(self) -> None:
        """Set the values back to the family's ``init`` (e.g. after ``to_empty()``)."""
        ndim = len(self.kernel_size)
        with torch.no_grad(), torch.device("cpu"):
            for axis, (size, p) in enumerate(zip(self.kernel_size, self.log_half, strict=True)):
                prof = self.family.init.profile(size, axis, ndim, self.dilation[axis])
                p.copy_(prof.to(torch.float64)[: size // 2].log())

    def profiles(self) -> list[Tensor]:
        return [symmetric_profile(p.exp()) for p in self.log_half]

    def forward(self) -> Tensor:
        return outer(self.profiles())

    def half_values(self) -> list[list[float]]:
        """Current outer values per axis, outermost first (what ``freeze`` tabulates)."""
        return [p.detach().exp().double().cpu().tolist() for p in self.log_half]

    def spec(self) -> Learned:
        """A ``Learned`` family initialised at the current values."""
        return type(self.family)(self.half_values())

    def frozen(self) -> Table:
        """The current values as a fixed ``Table`` (one profile per axis)."""
        return self.spec().init

    def extra_repr(self) -> str:
        vals = "|".join(",".join(f"{v:.4g}" for v in axis) for axis in self.half_values())
        return f"learned, kernel_size={self.kernel_size}, values={vals}"
