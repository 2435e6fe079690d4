"""The ``Density`` base class, the registry of families, and spec dispatch.

A *family* is a small immutable description that builds Φ for any kernel shape and
round-trips through a plain spec (a string or a JSON-safe dict). Families are registered
by name with ``@register_density``; ``Density.from_spec`` and ``as_density`` find them
through the registry, so a spec never imports code. ``ndwconv.density.spec`` reads the
text of a spec.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .bound import FixedPhi
from .profiles import as_tuple, outer
from .spec import parse_json_args, split_spec

__all__ = ["Density", "DensityLike", "as_density", "register_density", "registered_families"]

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


class Density:
    """Base class of density families.

    A family describes Φ for *any* kernel shape. Subclasses implement either
    ``profile(size, axis, ndim, dilation)`` (separable families: Φ is the outer product
    of the per-axis profiles) or ``build(kernel_size, dilation)`` (anything else), and
    ``params()`` returning the JSON-safe constructor arguments. Decorate the subclass
    with ``@register_density("name")`` so specs can name it. Families are immutable
    descriptions; a layer calls ``bind`` to get its own module (so a ``Learned`` family
    passed to many layers gives each layer its own parameters).

    Attributes:
        unit: the physical unit (a key of ``UNITS``) the family's distances are given in,
            or ``None`` when they count samples. A family with a unit cannot build Φ
            until ``resolve(spacing)`` turns it into one without.
    """

    family: ClassVar[str] = ""
    learnable: ClassVar[bool] = False
    unit: str | None = None

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
        dil = as_tuple(dilation, len(kernel_size))
        n = len(kernel_size)
        return outer([self.profile(k, a, n, dil[a]) for a, k in enumerate(kernel_size)])

    @property
    def separable(self) -> bool:
        """Whether Φ is the outer product of :meth:`profile` over the axes (a family that
        overrides :meth:`build` is not, even when it also defines a profile)."""
        kind = type(self)
        return kind.build is Density.build and kind.profile is not Density.profile

    def resolve(self, spacing: float | Sequence[float]) -> Density:
        """This density with its physical distances converted into samples.

        A family whose distances are given in a physical ``unit`` (``gaussian:1.2mm``)
        needs the spacing between samples before it can build Φ; every other family is
        returned as it is, whatever the spacing.

        Args:
            spacing: the distance between neighbouring samples per axis (or one value for
                all), in the base unit ``UNITS[self.unit][0]``: mm for lengths, seconds
                for times.

        Returns:
            A density without a unit.
        """
        return self

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
        ``gaussian:1.2``, ``gaussian:2,1,1;spacing=3,1,1``, ``gaussian:1.2mm`` (σ in
        physical units, see ``resolve``), ``learned``, ``learned:0.25,0.15,0.55``,
        ``learned:gaussian:1.0``.
        """
        if isinstance(spec, str):
            return _from_string(spec)
        if isinstance(spec, Mapping):
            if "family" not in spec:
                raise ValueError(f"density spec dict needs a 'family' key, got {dict(spec)!r}")
            name = spec["family"]
            if not isinstance(name, str):
                raise TypeError(
                    f"density spec dict: 'family' must be a family name (a string), got {name!r}"
                )
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
        """Build from ``params()``'s dict (override when the arguments need decoding).

        Raises:
            ValueError: on a key the constructor does not take or a required key that is
                missing (the message names the key and the family).
            TypeError, ValueError: the constructor's own error on a value, prefixed by
                the family's name.
        """
        kwargs = cls.checked_params(params)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            kind = ValueError if isinstance(err, ValueError) else TypeError
            raise kind(f"{cls._spec_name()} density spec: {err}") from err

    @classmethod
    def _spec_name(cls) -> str:
        return repr(cls.family or cls.__name__)

    @classmethod
    def checked_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` as keyword arguments, once every key is known to the constructor.

        Raises:
            TypeError: ``params`` is not a mapping with string keys.
            ValueError: a key the constructor does not take, or a required one missing;
                the message names the key, the family and the keys it accepts.
        """
        name = cls._spec_name()
        if not isinstance(params, Mapping):
            raise TypeError(
                f"{name} density parameters must be a JSON object (a mapping of parameter "
                f"names to values), got {params!r}"
            )
        for key in params:
            if not isinstance(key, str):
                raise TypeError(f"{name} density spec: parameter names are strings, got {key!r}")
        if cls.__init__ is object.__init__:  # a family without parameters
            signature = inspect.Signature([inspect.Parameter("self", 1)])
        else:
            try:
                signature = inspect.signature(cls.__init__)
            except (TypeError, ValueError):  # not introspectable: let the call decide
                return dict(params)
        accepted = [
            p
            for p in list(signature.parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            names = [p.name for p in accepted]
            for key in params:
                if key not in names:
                    expected = ", ".join(repr(n) for n in names) or "no parameters"
                    raise ValueError(
                        f"{name} density spec: unknown key {key!r}; it takes {expected}"
                    )
        for p in accepted:
            if p.default is p.empty and p.name not in params:
                raise ValueError(f"{name} density spec: missing required key {p.name!r}")
        return dict(params)

    @classmethod
    def from_string_args(cls, args: str) -> Density:
        """Build from the text after ``family:``; by default a JSON object of params."""
        return cls.from_params(parse_json_args(args, cls.family))


def _from_string(spec: str) -> Density:
    name, args = split_spec(spec)
    if name == "default":  # the reference values: the table spec without arguments
        if args:
            raise ValueError(f"density 'default' takes no arguments, got {spec!r}")
        name = "table"
    family = _REGISTRY.get(name)
    if family is None:
        raise ValueError(
            f"unknown density {spec!r}; expected one of {sorted([*_REGISTRY, 'default'])}, "
            "optionally followed by ':arguments'"
        )
    if not args:
        return family.from_params({})
    if args.startswith("{"):
        return family.from_params(parse_json_args(args, name))
    return family.from_string_args(args)


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
        return Density.from_spec("default")
    if isinstance(density, Density):
        return density
    if isinstance(density, str):
        return Density.from_spec(density)
    if isinstance(density, Mapping):
        if "family" in density:
            return Density.from_spec(density)
        return Density.from_spec({"family": "table", "values": density})
    if isinstance(density, (list, tuple)):
        return Density.from_spec({"family": "table", "values": density})
    raise TypeError(
        "density must be a Density (Table, Gaussian, Learned, Ones or a registered family), "
        "a spec string such as 'default' or 'gaussian:1.0', a spec dict, a list of values, "
        f"or None; got {type(density).__name__}"
    )
