"""Spatial densities Φ that scale a convolution kernel element-wise.

A weighted convolution computes ``conv(x, W ⊙ Φ)`` (Cammarasana & Patanè, "Optimal
Weighted Convolution for Classification and Denoising", arXiv 2505.24558). Φ has the
kernel's spatial shape and weights each tap by its position relative to the centre.

Convention (the one of the authors' reference layer): for an axis of odd size
``k = 2m + 1`` a profile is given by ``m`` values, outermost first. ``[d1, …, dm]``
means the axis profile ``[d1, …, dm, 1, dm, …, d1]``: centre fixed to 1, symmetric.
The N-D density is the outer product of the per-axis profiles,
``Φ[i1, …, iN] = α¹[i1] · … · αᴺ[iN]``.

A *family* (``Table``, ``Gaussian``, ``Learned``, ``Ones`` or a user subclass of
``Density``) is a small immutable description that builds Φ for any kernel shape and
round-trips through a plain spec (a string or a JSON-safe dict). A layer *binds* the
family to its kernel shape, which gives an ``nn.Module`` that returns Φ: a fixed buffer
for fixed families, trainable parameters for ``Learned``.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = [
    "Density",
    "FixedPhi",
    "Gaussian",
    "Learned",
    "LearnedPhi",
    "Ones",
    "Table",
    "as_density",
    "register_density",
    "registered_families",
]

_REGISTRY: dict[str, type[Density]] = {}

DensityLike = Any  # Density | str | Mapping | Sequence[float] | Sequence[Sequence[float]] | None


def register_density(name: str) -> Callable[[type[Density]], type[Density]]:
    """Class decorator that makes a ``Density`` subclass known to specs by ``name``.

    Registration is what lets ``Density.from_spec`` (and so configs, CLI flags and
    checkpoints) rebuild the family; nothing is ever imported from a name in a spec.

    Example:
        >>> @register_density("cone")
        ... class Cone(Density):
        ...     def __init__(self, slope: float = 0.2):
        ...         self.slope = float(slope)
        ...     def params(self):
        ...         return {"slope": self.slope}
        ...     def profile(self, size, axis, ndim, dilation=1):
        ...         t = (torch.arange(size) - (size - 1) / 2).abs().double()
        ...         return (1.0 - self.slope * t).clamp_min(0.05)
        >>> Density.from_spec("cone:{\\"slope\\": 0.3}").slope
        0.3
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"register_density: name must be a lower-case identifier, got {name!r}")

    def decorate(cls: type[Density]) -> type[Density]:
        if not (isinstance(cls, type) and issubclass(cls, Density)):
            raise TypeError(f"register_density({name!r}) decorates Density subclasses, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"density family {name!r} is already registered by {existing!r}")
        cls.family = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered_families() -> dict[str, type[Density]]:
    """The density families known to ``Density.from_spec``, by name."""
    return dict(_REGISTRY)


def _offsets(size: int) -> Tensor:
    """Tap positions relative to the kernel centre, float64: ``arange(size) - (size-1)/2``."""
    return torch.arange(size, dtype=torch.float64) - (size - 1) / 2


def _check_values(values: Iterable[Any], what: str) -> tuple[float, ...]:
    """Validate density values: real, finite and strictly positive."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a sequence of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
            raise TypeError(f"{what} must hold numbers, got {v!r}")
        f = float(v)
        if not math.isfinite(f) or f <= 0:
            raise ValueError(f"{what} must be finite and > 0, got {f!r}")
        out.append(f)
    return tuple(out)


def _symmetric_profile(half: Tensor) -> Tensor:
    """``[d1, …, dm]`` (outermost first) → ``[d1, …, dm, 1, dm, …, d1]``; differentiable."""
    one = torch.ones(1, dtype=half.dtype, device=half.device)
    return torch.cat([half, one, half.flip(0)])


def outer(profiles: Sequence[Tensor]) -> Tensor:
    """Outer product of 1-D profiles: ``Φ[i1,…,iN] = p1[i1]·…·pN[iN]``; differentiable."""
    ndim = len(profiles)
    phi = None
    for axis, p in enumerate(profiles):
        shape = [1] * ndim
        shape[axis] = p.numel()
        term = p.reshape(shape)
        phi = term if phi is None else phi * term
    assert phi is not None
    return phi


def _as_tuple(value: int | Sequence[int] | None, ndim: int, default: int = 1) -> tuple[int, ...]:
    if value is None:
        return (default,) * ndim
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(int(v) for v in value)


class Density:
    """Base class of density families.

    A family describes Φ for *any* kernel shape. Subclasses implement either
    ``profile(size, axis, ndim, dilation)`` (separable families: Φ is the outer product
    of the per-axis profiles) or ``build(kernel_size, dilation)`` (anything else), and
    ``params()`` returning the JSON-safe constructor arguments. Decorate the subclass
    with ``@register_density("name")`` so specs can name it. Families are immutable
    descriptions; a layer calls ``bind`` to get its own module (so a ``Learned`` family
    passed to many layers gives each layer its own parameters).
    """

    family: ClassVar[str] = ""
    learnable: ClassVar[bool] = False

    # -- what a family defines -------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """JSON-safe keyword arguments that rebuild this density with ``cls(**params)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement params()")

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        """The 1-D profile (float64, length ``size``) of one kernel axis."""
        raise NotImplementedError(
            f"{type(self).__name__} is not separable: implement build() or profile()"
        )

    def build(self, kernel_size: Sequence[int], dilation: Sequence[int] | None = None) -> Tensor:
        """Φ for a kernel of spatial shape ``kernel_size`` as a float64 CPU tensor.

        Args:
            kernel_size: spatial kernel shape ``(k1, …, kN)``.
            dilation: tap spacing per axis (used by families defined in distances).

        Raises:
            ValueError: if the family cannot describe that kernel shape.
        """
        kernel_size = tuple(int(k) for k in kernel_size)
        dil = _as_tuple(dilation, len(kernel_size))
        n = len(kernel_size)
        return outer([self.profile(k, a, n, dil[a]) for a, k in enumerate(kernel_size)])

    # -- binding to a layer ----------------------------------------------------------
    def bind(
        self,
        kernel_size: Sequence[int],
        dilation: Sequence[int] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> nn.Module:
        """A module for one layer whose ``forward()`` returns Φ (shape ``kernel_size``)."""
        return FixedPhi(self, kernel_size, dilation, dtype=dtype, device=device)

    # -- specs -----------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """A JSON-safe dict ``{"family": name, **params}`` that ``from_spec`` inverts."""
        if not self.family:
            raise TypeError(
                f"{type(self).__name__} is not registered: decorate it with @register_density"
            )
        return {"family": self.family, **self.params()}

    def __str__(self) -> str:
        params = self.params()
        return self.family if not params else f"{self.family}:{json.dumps(params)}"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Density):
            return NotImplemented
        return type(self) is type(other) and self.params() == other.params()

    def __hash__(self) -> int:
        return hash((type(self).__name__, json.dumps(self.params(), sort_keys=True)))

    @classmethod
    def from_spec(cls, spec: str | Mapping[str, Any]) -> Density:
        """Rebuild a density from ``to_spec()``'s dict or from its string form.

        Strings are ``family`` or ``family:arguments``. Every family accepts a JSON object
        of its parameters as arguments (``gaussian:{"sigma": [1.2]}``); the built-ins
        also take short forms: ``default``, ``ones``, ``table:0.2,0.8``,
        ``table:3=0.7;5=0.2,0.8``, ``table:axes=0.7|0.2,0.8`` (one profile per axis;
        ``axes=`` may be left out when there are several axes),
        ``gaussian:1.2``, ``gaussian:2,1,1;spacing=3,1,1``, ``learned``,
        ``learned:0.25,0.15,0.55``, ``learned:gaussian:1.0``.
        """
        if isinstance(spec, str):
            return _parse_string(spec)
        if isinstance(spec, Mapping):
            if "family" not in spec:
                raise ValueError(f"density spec dict needs a 'family' key, got {dict(spec)!r}")
            name = spec["family"]
            family = _REGISTRY.get(name)
            if family is None:
                raise ValueError(
                    f"unknown density family {name!r}; known: {sorted(_REGISTRY)} "
                    "(user families must be registered with @register_density)"
                )
            kwargs = {k: v for k, v in spec.items() if k != "family"}
            return family.from_params(kwargs)
        raise TypeError(f"density spec must be a str or dict, got {type(spec).__name__}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Density:
        """Build from ``params()``'s dict (override when the arguments need decoding)."""
        return cls(**params)

    @classmethod
    def from_string_args(cls, args: str) -> Density:
        """Build from the text after ``family:``; by default a JSON object of params."""
        return _from_json_args(cls, args)


def _from_json_args(family: type[Density], args: str) -> Density:
    try:
        params = json.loads(args)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"cannot read {family.family!r} density arguments {args!r}: {err}"
        ) from None
    if not isinstance(params, dict):
        raise ValueError(f"{family.family!r} density arguments must be a JSON object, got {args!r}")
    return family.from_params(params)


def _fmt_numbers(values: Iterable[float]) -> str:
    """Comma-separated shortest round-trip forms (``0.7``, ``2``, ``0.123456789``)."""
    return ",".join(repr(float(v)).removesuffix(".0") for v in values)


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _parse_string(spec: str) -> Density:
    text = spec.strip()
    name, _, args = text.partition(":")
    name = name.strip().lower()
    if name == "default":
        if args:
            raise ValueError(f"density 'default' takes no arguments, got {spec!r}")
        return Table.default()
    family = _REGISTRY.get(name)
    if family is None:
        raise ValueError(
            f"unknown density {spec!r}; expected one of {sorted([*_REGISTRY, 'default'])}, "
            "optionally followed by ':arguments'"
        )
    args = args.strip()
    if not args:
        return family.from_params({})
    if args.startswith("{"):
        return _from_json_args(family, args)
    return family.from_string_args(args)


# ---------------------------------------------------------------------------------------
# Built-in families
# ---------------------------------------------------------------------------------------


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
                prof = _check_values(v, f"Table(values)[{size}]")
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
                _check_values(v, f"Table(values)[axis {i}]") for i, v in enumerate(values)
            )
        else:
            self.values = _check_values(values, "Table(values)")

    @classmethod
    def default(cls) -> Table:
        """The reference values ``{3: [0.7], 5: [0.2, 0.8], 7: [0.25, 0.15, 0.55]}``."""
        return cls({k: list(v) for k, v in cls.DEFAULT.items()})

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
        return _symmetric_profile(half)

    def params(self) -> dict[str, Any]:
        if self.by_size is not None:
            return {"by_size": {str(k): list(v) for k, v in self.by_size.items()}}
        if self.per_axis is not None:
            return {"per_axis": [list(v) for v in self.per_axis]}
        return {"values": list(self.values or ())}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Table:
        if not params:
            return cls.default()
        keys = set(params)
        if len(keys) != 1 or not keys <= {"values", "by_size", "per_axis"}:
            raise ValueError(
                "table spec takes exactly one of 'values', 'by_size', 'per_axis'; "
                f"got {sorted(keys)}"
            )
        (value,) = params.values()
        if "by_size" in keys:
            if not isinstance(value, Mapping):
                raise TypeError(f"table spec 'by_size' must be a mapping, got {value!r}")
            return cls({int(k): v for k, v in value.items()})
        return cls(value)

    @classmethod
    def from_string_args(cls, args: str) -> Table:
        if args.startswith("axes="):
            return cls(
                [_numbers(part, "table density") for part in args[len("axes=") :].split("|")]
            )
        if "=" in args:
            mapping: dict[int, list[float]] = {}
            for item in args.split(";"):
                size, eq, vals = item.partition("=")
                if not eq:
                    raise ValueError(f"table density: expected 'size=v1,v2' items, got {item!r}")
                try:
                    mapping[int(size)] = _numbers(vals, f"table density size {size}")
                except ValueError as err:
                    raise ValueError(f"table density {args!r}: {err}") from None
            return cls(mapping)
        if "|" in args:
            return cls([_numbers(part, "table density") for part in args.split("|")])
        return cls(_numbers(args, "table density"))

    def __str__(self) -> str:
        def fmt(v: Sequence[float]) -> str:
            return _fmt_numbers(v)

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

    ``d`` is a tap's distance from the kernel centre along one axis, in voxels times
    ``spacing`` (and times the layer's dilation), so with ``spacing`` given in mm ``sigma``
    is in mm too: anisotropic voxels are weighted by physical distance. Even kernel sizes
    are allowed (the centre then lies between two taps).

    Args:
        sigma: one σ for every axis, or one per axis; > 0.
        spacing: optional voxel size per axis (or one value); > 0.

    Example:
        >>> Gaussian(sigma=1.0).build((3,))
        tensor([0.6065, 1.0000, 0.6065], dtype=torch.float64)
    """

    def __init__(
        self, sigma: float | Sequence[float] = 1.0, spacing: float | Sequence[float] | None = None
    ):
        self.sigma = _check_values(
            [sigma] if isinstance(sigma, numbers.Real) else sigma, "Gaussian(sigma)"
        )
        if not self.sigma:
            raise ValueError("Gaussian(sigma) needs at least one value")
        if spacing is None:
            self.spacing = None
        else:
            self.spacing = _check_values(
                [spacing] if isinstance(spacing, numbers.Real) else spacing, "Gaussian(spacing)"
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
        sigma = self._per_axis(self.sigma, axis, ndim, "sigma")
        step = dilation * (
            1.0 if self.spacing is None else self._per_axis(self.spacing, axis, ndim, "spacing")
        )
        d = _offsets(size) * step
        return torch.exp(-(d**2) / (2 * sigma**2))

    def params(self) -> dict[str, Any]:
        return {
            "sigma": list(self.sigma),
            "spacing": None if self.spacing is None else list(self.spacing),
        }

    @classmethod
    def from_string_args(cls, args: str) -> Gaussian:
        sigma_text, *rest = args.split(";")
        kwargs: dict[str, Any] = {"sigma": _numbers(sigma_text, "gaussian density sigma")}
        for item in rest:
            key, eq, vals = item.partition("=")
            if key.strip() != "spacing" or not eq:
                raise ValueError(
                    f"gaussian density: unknown argument {item!r}; expected 'spacing=…'"
                )
            kwargs["spacing"] = _numbers(vals, "gaussian density spacing")
        return cls(**kwargs)

    def __str__(self) -> str:
        text = "gaussian:" + _fmt_numbers(self.sigma)
        if self.spacing is not None:
            text += ";spacing=" + _fmt_numbers(self.spacing)
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
            self.init = as_density(init)
        if isinstance(self.init, Learned):
            self.init = self.init.init
        if type(self.init).profile is Density.profile:
            raise TypeError(
                f"Learned(init=...) needs a separable family (one with profile()), got "
                f"{type(self.init).__name__}"
            )

    def profile(self, size: int, axis: int, ndim: int, dilation: int = 1) -> Tensor:
        return self.init.profile(size, axis, ndim, dilation)

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
    def from_params(cls, params: Mapping[str, Any]) -> Learned:
        return cls(**params)

    @classmethod
    def from_string_args(cls, args: str) -> Learned:
        head = args.split(":", 1)[0].strip().lower()
        if head in _REGISTRY or head == "default":
            return cls(_parse_string(args))
        return cls(Table.from_string_args(args))

    def __str__(self) -> str:
        if isinstance(self.init, Ones):
            return "learned"
        inner = str(self.init)
        short = inner.startswith("table:") and not inner.startswith("table:{")
        return "learned:" + (inner[len("table:") :] if short else inner)


# ---------------------------------------------------------------------------------------
# Bound densities: one module per layer
# ---------------------------------------------------------------------------------------


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


class FixedPhi(nn.Module):
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
        super().__init__()
        self.family = family
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.dilation = _as_tuple(dilation, len(self.kernel_size))
        with torch.device("cpu"):  # Φ is built on the CPU in float64, whatever the default device
            master = family.build(self.kernel_size, self.dilation).to(torch.float64)
        _validate_phi(master, self.kernel_size, family)
        self._master = master
        dtype = (
            dtype if dtype is not None and dtype.is_floating_point else torch.get_default_dtype()
        )
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


class LearnedPhi(nn.Module):
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
        super().__init__()
        self.family = family
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.dilation = _as_tuple(dilation, len(self.kernel_size))
        ndim = len(self.kernel_size)
        dtype = (
            dtype if dtype is not None and dtype.is_floating_point else torch.get_default_dtype()
        )
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
        return [_symmetric_profile(p.exp()) for p in self.log_half]

    def forward(self) -> Tensor:
        return outer(self.profiles())

    def half_values(self) -> list[list[float]]:
        """Current outer values per axis, outermost first (what ``freeze`` tabulates)."""
        return [p.detach().exp().double().cpu().tolist() for p in self.log_half]

    def spec(self) -> Density:
        """A ``Learned`` family initialised at the current values."""
        return Learned(Table(self.half_values()))

    def frozen(self) -> Table:
        """The current values as a fixed ``Table`` (one profile per axis)."""
        return Table(self.half_values())

    def extra_repr(self) -> str:
        vals = "|".join(",".join(f"{v:.4g}" for v in axis) for axis in self.half_values())
        return f"learned, kernel_size={self.kernel_size}, values={vals}"


def as_density(density: DensityLike) -> Density:
    """Normalise what users pass as ``density=`` into a ``Density``.

    Accepts a ``Density``; ``None`` (``Table.default()``); a list of numbers (``Table``);
    a list of lists (``Table``, one profile per axis); a mapping ``{kernel_size: list}``
    (``Table``); a spec dict with a ``"family"`` key; or a spec string (see
    ``Density.from_spec``).

    Raises:
        TypeError: for anything else, naming the accepted forms.
    """
    if density is None:
        return Table.default()
    if isinstance(density, Density):
        return density
    if isinstance(density, str):
        return Density.from_spec(density)
    if isinstance(density, Mapping):
        if "family" in density:
            return Density.from_spec(density)
        return Table(density)
    if isinstance(density, (list, tuple)):
        return Table(density)
    raise TypeError(
        "density must be a Density (Table, Gaussian, Learned, Ones or a registered family), "
        "a spec string such as 'default' or 'gaussian:1.0', a spec dict, a list of values, "
        f"or None; got {type(density).__name__}"
    )
