"""The built-in density families: ``Ones``, ``Table``, ``Gaussian`` and ``Learned``.

``Table`` holds the reference convention of the authors' layer (Cammarasana & Patanè,
arXiv 2505.24558): per axis of odd size ``2m + 1``, ``m`` values outermost first, centre
fixed to 1, mirrored. ``Gaussian`` weights taps by their distance from the centre: in
samples, in the unit of a given spacing, or in physical units resolved later against the
data's spacing. ``Learned`` makes any separable family's profile trainable per layer.
"""

from __future__ import annotations

import numbers
import operator
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .base import Density, DensityLike, as_density, register_density, registered_families
from .bound import LearnedPhi
from .profiles import check_values, offsets, symmetric_profile
from .spec import UNITS, canonical_unit, format_numbers, parse_numbers, split_unit, to_base_unit

__all__ = ["Gaussian", "Learned", "Ones", "Table"]


@register_density("ones")
class Ones(Density):
    """Φ ≡ 1: the weighted layer computes exactly what ``nn.ConvNd`` computes."""

    def params(self) -> dict[str, Any]:
        return {}

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        return torch.ones(size, dtype=torch.float64)


@register_density("table")
class Table(Density):
    """Tabulated symmetric profiles, outermost value first, centre fixed to 1.

    Args:
        values: one of
            * a list ``[d1, …, dm]`` used for every axis of size ``2m + 1``;
            * a mapping ``{kernel_size: [d1, …, dm]}`` looked up per axis size;
            * a list of lists, one profile per kernel axis (anisotropic kernels).
        Axes of size 1 always get the profile ``[1]``.

    Raises:
        ValueError: on non-finite or non-positive values, on a profile whose length does
            not fit the kernel size, or on even kernel sizes.

    Example:
        >>> Table([0.7]).build((3,))
        tensor([0.7000, 1.0000, 0.7000], dtype=torch.float64)
        >>> Table({3: [0.7], 5: [0.2, 0.8]}).build((3, 5)).shape
        torch.Size([3, 5])
    """

    DEFAULT: ClassVar[dict[int, tuple[float, ...]]] = {
        3: (0.7,),
        5: (0.2, 0.8),
        7: (0.25, 0.15, 0.55),
    }

    def __init__(
        self,
        values: Sequence[float] | Mapping[int, Sequence[float]] | Sequence[Sequence[float]],
    ):
        self.by_size: dict[int, tuple[float, ...]] | None = None
        self.per_axis: tuple[tuple[float, ...], ...] | None = None
        self.values: tuple[float, ...] | None = None
        if isinstance(values, Mapping):
            if not values:
                raise ValueError("Table(values): the mapping kernel size → profile is empty")
            by_size = {}
            for k, v in values.items():
                try:
                    size = operator.index(k) if not isinstance(k, str) else int(k)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"Table(values): mapping keys must be kernel sizes, got {k!r}"
                    ) from None
                if size < 1 or size % 2 == 0:
                    raise ValueError(f"Table(values): kernel size {size} must be odd and ≥ 1")
                prof = check_values(v, f"Table(values)[{size}]")
                if len(prof) != size // 2:
                    raise ValueError(
                        f"Table(values)[{size}]: a kernel of size {size} takes {size // 2} "
                        f"value(s), outermost first; got {len(prof)}"
                    )
                by_size[size] = prof
            self.by_size = dict(sorted(by_size.items()))
        elif isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(
                "Table(values) takes a list of numbers, a mapping {kernel_size: list} or a "
                f"list of lists (one per axis); got {type(values).__name__}"
            )
        elif len(values) > 0 and all(
            isinstance(v, Sequence) and not isinstance(v, (str, bytes)) for v in values
        ):
            self.per_axis = tuple(
                check_values(v, f"Table(values)[axis {i}]") for i, v in enumerate(values)
            )
        else:
            self.values = check_values(values, "Table(values)")

    @classmethod
    def default(cls) -> Table:
        """The reference values ``{3: [0.7], 5: [0.2, 0.8], 7: [0.25, 0.15, 0.55]}``."""
        return cls({k: list(v) for k, v in cls.DEFAULT.items()})

    @classmethod
    def load(cls, path: str | os.PathLike[str], layer: str | None = None) -> Table:
        """The table a density file holds: its shared one, or ``layer``'s (its own, else
        the shared one). Per-layer files as a whole go to ``ndwconv.convert(model, path)``
        or ``ndwconv.load_densities``.

        Raises:
            FileNotFoundError, ValueError: no such file, or not a density file.
            KeyError: ``layer`` has no density there and there is no shared one.
            TypeError: the density there is not a ``Table`` (e.g. a Gaussian).
        """
        from .file import load_densities  # file imports this module's siblings

        found = load_densities(path)
        density = found.shared if layer is None else found(layer)
        if density is None:
            listed = ", ".join(repr(n) for n in found.layers)
            raise KeyError(
                f"density file {str(path)!r} has no shared density"
                + ("" if layer is None else f" and none for layer {layer!r}")
                + f"; it has layers {listed} (pass layer=…, or ndwconv.convert(model, path))"
            )
        if not isinstance(density, Table):
            raise TypeError(
                f"density file {str(path)!r} holds a {density.family!r} density there, not a "
                "table; use ndwconv.load_densities"
            )
        return density

    def half_profile(self, size: int, axis: int, ndim: int) -> tuple[float, ...]:
        """The ``size // 2`` values (outermost first) this table gives one axis."""
        if size == 1:
            return ()
        if size % 2 == 0:
            raise ValueError(
                f"Table densities need odd kernel sizes (the centre tap is fixed to 1); "
                f"axis {axis} has size {size}. Use Gaussian for even kernels."
            )
        if self.per_axis is not None:
            if len(self.per_axis) != ndim:
                raise ValueError(
                    f"Table has {len(self.per_axis)} per-axis profiles but the kernel has "
                    f"{ndim} spatial axes"
                )
            half = self.per_axis[axis]
        elif self.by_size is not None:
            if size not in self.by_size:
                raise ValueError(
                    f"Table has no profile for kernel size {size} (axis {axis}); it defines "
                    f"sizes {sorted(self.by_size)}"
                )
            half = self.by_size[size]
        else:
            assert self.values is not None
            half = self.values
        if len(half) != size // 2:
            raise ValueError(
                f"Table profile {list(half)} has {len(half)} value(s) but kernel axis {axis} of "
                f"size {size} needs {size // 2} (outermost first, centre fixed to 1)"
            )
        return half

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        half = torch.tensor(self.half_profile(size, axis, ndim), dtype=torch.float64)
        return symmetric_profile(half)

    def params(self) -> dict[str, Any]:
        if self.by_size is not None:
            return {"by_size": {str(k): list(v) for k, v in self.by_size.items()}}
        if self.per_axis is not None:
            return {"per_axis": [list(v) for v in self.per_axis]}
        return {"values": list(self.values or ())}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Table:
        if not isinstance(params, Mapping):
            raise TypeError(f"'table' density parameters must be a JSON object, got {params!r}")
        if not params:
            return cls.default()
        forms = ("values", "by_size", "per_axis")
        for key in params:
            if key not in forms:
                raise ValueError(
                    f"'table' density spec: unknown key {key!r}; it takes exactly one of "
                    "'values', 'by_size', 'per_axis'"
                )
        if len(params) != 1:
            raise ValueError(
                "'table' density spec takes exactly one of 'values', 'by_size', 'per_axis'; "
                f"got {sorted(params)}"
            )
        ((key, value),) = params.items()
        if key == "by_size" and not isinstance(value, Mapping):
            raise TypeError(
                "'table' density spec: 'by_size' must be a mapping {kernel size: values}, "
                f"got {value!r}"
            )
        if key == "per_axis" and (
            isinstance(value, (str, bytes, Mapping))
            or not isinstance(value, Sequence)
            or not value
            or not all(isinstance(v, Sequence) and not isinstance(v, (str, bytes)) for v in value)
        ):
            raise TypeError(
                "'table' density spec: 'per_axis' must be a list of lists (one profile per "
                f"axis), got {value!r}"
            )
        try:
            return cls(value)
        except (TypeError, ValueError) as err:
            kind = ValueError if isinstance(err, ValueError) else TypeError
            raise kind(f"'table' density spec {key!r}: {err}") from err

    @classmethod
    def from_string_args(cls, args: str) -> Table:
        if args.startswith("axes="):
            return cls(
                [parse_numbers(part, "table density") for part in args[len("axes=") :].split("|")]
            )
        if "=" in args:
            mapping: dict[int, list[float]] = {}
            for item in args.split(";"):
                size, eq, vals = item.partition("=")
                if not eq:
                    raise ValueError(f"table density: expected 'size=v1,v2' items, got {item!r}")
                try:
                    k = int(size)
                except ValueError:
                    raise ValueError(
                        f"table density {args!r}: {size.strip()!r} is not a kernel size "
                        "(expected 'size=v1,v2' items such as '3=0.7')"
                    ) from None
                if k in mapping:
                    raise ValueError(f"table density {args!r}: kernel size {k} is given twice")
                try:
                    mapping[k] = parse_numbers(vals, f"table density size {k}")
                except ValueError as err:
                    raise ValueError(f"table density {args!r}: {err}") from None
            return cls(mapping)
        if "|" in args:
            return cls([parse_numbers(part, "table density") for part in args.split("|")])
        return cls(parse_numbers(args, "table density"))

    def __str__(self) -> str:
        def fmt(v: Sequence[float]) -> str:
            return format_numbers(v)

        if self.by_size is not None:
            if self.by_size == self.DEFAULT:
                return "default"
            return "table:" + ";".join(f"{k}={fmt(v)}" for k, v in self.by_size.items())
        if self.per_axis is not None:
            return "table:axes=" + "|".join(fmt(v) for v in self.per_axis)
        if not self.values:  # Table([]): only size-1 axes; "table:" would read as default
            return 'table:{"values": []}'
        return "table:" + fmt(self.values)


@register_density("gaussian")
class Gaussian(Density):
    """Gaussian profiles ``exp(-d² / 2σ²)`` with the centre tap equal to 1.

    ``d`` is a tap's distance from the kernel centre along one axis, in samples times
    ``spacing`` (and times the layer's dilation), so with ``spacing`` given in mm ``sigma``
    is in mm too: anisotropic voxels are weighted by physical distance. Even kernel sizes
    are allowed (the centre then lies between two taps).

    With ``unit`` (``"mm"``, ``"s"``, … see ``UNITS``) σ is a physical length or time
    whose spacing is not known yet, as in the spec ``gaussian:1.5mm``: ``resolve(spacing)``
    gives the ``Gaussian`` to build Φ from once the data's spacing is known.

    Args:
        sigma: one σ for every axis, or one per axis; > 0.
        spacing: optional sample spacing per axis (or one value); > 0.
        unit: optional physical unit of ``sigma``; excludes ``spacing``.

    Raises:
        ValueError: on σ or spacing values that are not finite and > 0, an unknown unit,
            or both ``unit`` and ``spacing``.

    Example:
        >>> Gaussian(sigma=1.0).build((3,))
        tensor([0.6065, 1.0000, 0.6065], dtype=torch.float64)
        >>> print(Gaussian(1.5, unit="mm").resolve((1.0, 1.0, 3.0)))
        gaussian:1.5;spacing=1,1,3
    """

    def __init__(
        self,
        sigma: float | Sequence[float] = 1.0,
        spacing: float | Sequence[float] | None = None,
        unit: str | None = None,
    ):
        self.sigma = check_values(
            [sigma] if isinstance(sigma, numbers.Real) else sigma, "Gaussian(sigma)"
        )
        if not self.sigma:
            raise ValueError("Gaussian(sigma) needs at least one value")
        if spacing is None:
            self.spacing = None
        else:
            self.spacing = check_values(
                [spacing] if isinstance(spacing, numbers.Real) else spacing, "Gaussian(spacing)"
            )
        self.unit = None if unit is None else canonical_unit(unit)
        if self.unit is not None and self.spacing is not None:
            raise ValueError(
                f"Gaussian(unit={unit!r}) gives σ in {self.unit}, to be resolved against the "
                "data's spacing later; it takes no spacing= (with a known spacing, give σ in "
                "the spacing's unit and leave unit out)"
            )

    @staticmethod
    def _per_axis(values: tuple[float, ...], axis: int, ndim: int, what: str) -> float:
        if len(values) == 1:
            return values[0]
        if len(values) != ndim:
            raise ValueError(
                f"Gaussian({what}) has {len(values)} values but the kernel has {ndim} axes; "
                "give one value or one per axis"
            )
        return values[axis]

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        if self.unit is not None:
            raise ValueError(
                f"density {self!s} gives σ in {self.unit}: resolve it against the sample "
                f"spacing (in {UNITS[self.unit][0]}) first, density.resolve(spacing)"
            )
        sigma = self._per_axis(self.sigma, axis, ndim, "sigma")
        step = dilation * (
            1.0 if self.spacing is None else self._per_axis(self.spacing, axis, ndim, "spacing")
        )
        # exp(-(d·step/σ)² / 2) with the ratio taken first: σ² over- or underflows for σ
        # beyond about 1e±154, and the centre tap (d = 0) is 1 even when the ratio is inf
        d = offsets(size)
        z = torch.where(d == 0, 0.0, d * (torch.tensor(step, dtype=torch.float64) / sigma))
        return torch.exp(-0.5 * z**2)

    def resolve(self, spacing: float | Sequence[float]) -> Gaussian:
        """σ converted to the base unit of ``unit`` (mm or s), with ``spacing`` in it.

        Args:
            spacing: sample spacing per axis (or one value for all) in mm for a length
                unit, in seconds for a time unit; finite and > 0.

        Returns:
            A ``Gaussian`` without a unit (this one if it has none).

        Raises:
            TypeError, ValueError: on a spacing that is not numbers, finite and > 0.

        Example:
            >>> print(Gaussian(20, unit="ms").resolve(0.01))
            gaussian:0.02;spacing=0.01
        """
        if self.unit is None:
            return self
        values = check_values(
            [spacing] if isinstance(spacing, numbers.Real) else spacing,
            f"{self!s}: resolve(spacing)",
        )
        if not values:
            raise ValueError(f"{self!s}: resolve(spacing) needs at least one value")
        return Gaussian(sigma=to_base_unit(self.sigma, self.unit), spacing=values)

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "sigma": list(self.sigma),
            "spacing": None if self.spacing is None else list(self.spacing),
        }
        if self.unit is not None:
            params["unit"] = self.unit
        return params

    @classmethod
    def from_string_args(cls, args: str) -> Gaussian:
        sigma_text, *rest = args.split(";")
        sigma_text, unit = split_unit(sigma_text, "gaussian density sigma")
        kwargs: dict[str, Any] = {
            "sigma": parse_numbers(sigma_text, "gaussian density sigma"),
            "unit": unit,
        }
        for item in rest:
            key, eq, vals = item.partition("=")
            if key.strip() != "spacing" or not eq:
                raise ValueError(
                    f"gaussian density: unknown argument {item!r}; expected 'spacing=…'"
                )
            if "spacing" in kwargs:
                raise ValueError(f"gaussian density {args!r}: 'spacing' is given twice")
            kwargs["spacing"] = parse_numbers(vals, "gaussian density spacing")
        return cls(**kwargs)

    def __str__(self) -> str:
        text = "gaussian:" + format_numbers(self.sigma) + (self.unit or "")
        if self.spacing is not None:
            text += ";spacing=" + format_numbers(self.spacing)
        return text


@register_density("learned")
class Learned(Density):
    """A trainable, per-layer symmetric profile per axis (positive, centre fixed to 1).

    Each layer that binds this family gets its own parameters: ``m`` log-values per axis
    of size ``2m + 1``, so the profile stays positive and symmetric while gradients flow.
    ``ndwconv.freeze`` turns the learned values into a ``Table``.

    Args:
        init: starting values: ``None`` (all ones, i.e. start as the plain convolution),
            a list of values (as ``Table``), or any separable family (``Table.default()``,
            ``Gaussian(1.0)``, …) or spec of one.

    Example:
        >>> from ndwconv import WeightedConv1d
        >>> conv = WeightedConv1d(2, 2, 7, density=Learned([0.25, 0.15, 0.55]))
        >>> [p.shape for p in conv.phi.parameters()]
        [torch.Size([3])]
    """

    learnable = True

    def __init__(self, init: DensityLike = None):
        if init is None:
            self.init: Density = Ones()
        else:
            try:
                self.init = as_density(init)
            except (TypeError, ValueError) as err:
                kind = ValueError if isinstance(err, ValueError) else TypeError
                raise kind(f"Learned(init): {err}") from err
        if isinstance(self.init, Learned):
            self.init = self.init.init
        if type(self.init).profile is Density.profile:
            raise TypeError(
                f"Learned(init=...) needs a separable family (one with profile()), got "
                f"{type(self.init).__name__}"
            )

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        return self.init.profile(size, axis, ndim, dilation)

    @property
    def unit(self) -> str | None:  # type: ignore[override]
        """The unit of the starting family: ``learned:gaussian:1mm`` is in mm."""
        return self.init.unit

    def resolve(self, spacing: float | Sequence[float]) -> Learned:
        """A ``Learned`` family starting at ``init.resolve(spacing)``."""
        return self if self.init.unit is None else Learned(self.init.resolve(spacing))

    def bind(
        self,
        kernel_size: Sequence[int],
        dilation: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> nn.Module:
        return LearnedPhi(self, kernel_size, dilation, dtype=dtype, device=device)

    def params(self) -> dict[str, Any]:
        return {"init": None if isinstance(self.init, Ones) else self.init.to_spec()}

    @classmethod
    def from_string_args(cls, args: str) -> Learned:
        head = args.split(":", 1)[0].strip().lower()
        if head in registered_families() or head == "default":
            return cls(Density.from_spec(args))
        return cls(Table.from_string_args(args))

    def __str__(self) -> str:
        if isinstance(self.init, Ones):
            return "learned"
        inner = str(self.init)
        short = inner.startswith("table:") and not inner.startswith("table:{")
        return "learned:" + (inner[len("table:") :] if short else inner)
