"""Density files: the densities a search found, one JSON file a model can be made weighted
with.

A density file holds a *shared* density (used by every layer it fits), densities *per
layer* (by the layer's qualified name in ``model.named_modules()``), or both (a layer's
own density wins), plus free-form provenance (how it was found, on what, the objective).
The format is plain JSON::

    {
      "format": "ndwconv.densities/1",
      "shared": {"family": "table", "by_size": {"3": [0.82]}},
      "layers": {"features.0": {"family": "table", "values": [0.61]}},
      "meta": {"method": "direct-l", ...}
    }

``load_densities`` gives a ``DensityFile``, which is what ``ndwconv.convert`` takes as a
per-layer density callable; ``convert`` also accepts the path itself, and
``Table.load(path)`` reads the shared table (or one layer's).

Example:
    >>> import tempfile, os, torch.nn as nn
    >>> from ndwconv import Table, convert
    >>> path = os.path.join(tempfile.mkdtemp(), "densities.json")
    >>> _ = save_densities(path, shared=Table({3: [0.8]}), layers={"1": Table([0.5])},
    ...                    meta={"method": "manual"})
    >>> found = load_densities(path)
    >>> str(found.shared), str(found.layers["1"])
    ('table:3=0.8', 'table:0.5')
    >>> net = convert(nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3)), path)
    >>> [str(m.density) for m in net]
    ['table:3=0.8', 'table:0.5']
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Density, DensityLike, as_density

__all__ = ["FORMAT", "DensityFile", "is_density_file", "load_densities", "save_densities"]

FORMAT = "ndwconv.densities/1"
"""The ``format`` key every density file carries."""


@dataclasses.dataclass(frozen=True)
class DensityFile:
    """The content of a density file.

    Attributes:
        shared: the density of every layer without its own (``None``: only ``layers``).
        layers: ``{qualified layer name: density}``.
        meta: provenance (JSON-safe): method, objective, bounds, budget, …
        path: the file it was read from (``None`` when built in memory).

    Calling it as ``file(name, conv)`` gives the density of that layer (its own, else the
    shared one, else ``None``): the per-layer callable ``ndwconv.convert`` accepts.
    """

    shared: Density | None = None
    layers: Mapping[str, Density] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.shared is None and not self.layers:
            raise ValueError("a density file needs a shared density or at least one layer's")
        if self.shared is not None and not isinstance(self.shared, Density):
            object.__setattr__(self, "shared", as_density(self.shared))
        layers = {}
        for name, density in dict(self.layers).items():
            if not isinstance(name, str):
                raise TypeError(f"density file: layer names must be strings, got {name!r}")
            layers[name] = as_density(density)
        object.__setattr__(self, "layers", layers)

    def __call__(self, name: str, conv: Any = None) -> Density | None:
        return self.layers.get(name, self.shared)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this file."""
        return {
            "format": FORMAT,
            "shared": None if self.shared is None else self.shared.to_spec(),
            "layers": {name: d.to_spec() for name, d in self.layers.items()},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], path: Path | None = None) -> DensityFile:
        """Rebuild from ``to_dict()``'s document.

        Raises:
            ValueError: not a density file (no or another ``format``), or a bad entry
                (the message names it).
        """
        where = f"density file {str(path)!r}" if path else "density file"
        if not isinstance(document, Mapping) or document.get("format") != FORMAT:
            found = document.get("format") if isinstance(document, Mapping) else document
            raise ValueError(f'{where}: expected "format": {FORMAT!r}, got {found!r}')
        unknown = set(document) - {"format", "shared", "layers", "meta"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
        layers = document.get("layers") or {}
        if not isinstance(layers, Mapping):
            raise ValueError(f"{where}: 'layers' must be an object {{name: spec}}")
        try:
            shared = document.get("shared")
            return cls(
                shared=None if shared is None else as_density(shared),
                layers={name: as_density(spec) for name, spec in layers.items()},
                meta=dict(document.get("meta") or {}),
                path=path,
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None


def is_density_file(value: Any) -> bool:
    """Whether ``value`` names a density file: a ``DensityFile``, or a path (``str`` or
    ``os.PathLike``) ending in ``.json`` (no density spec string ends so)."""
    if isinstance(value, DensityFile):
        return True
    return isinstance(value, (str, os.PathLike)) and str(value).lower().endswith(".json")


def load_densities(path: str | os.PathLike[str]) -> DensityFile:
    """Read a density file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a density file, or an entry that is not a density (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"density file {str(path)!r} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"density file {str(path)!r} is not JSON: {err}") from None
    return DensityFile.from_dict(document, path)


def _json_safe(value: Any, where: str) -> Any:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"save_densities: {where} is not JSON-safe ({err})") from None
    return json.loads(text)


def save_densities(
    path: str | os.PathLike[str],
    shared: DensityLike | None = None,
    layers: Mapping[str, DensityLike] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> DensityFile:
    """Write a density file atomically (a temporary file in the same folder, then renamed).

    Args:
        path: the file to write (``.json``); its folder must exist.
        shared: the density of every layer without its own.
        layers: ``{qualified layer name: density}``.
        meta: provenance, JSON-safe (no NaN or infinity).

    Returns:
        The written content.

    Raises:
        ValueError: nothing to write, a bad density, or ``meta`` not JSON-safe.
        FileNotFoundError: the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"save_densities: folder {str(path.parent)!r} does not exist")
    content = DensityFile(
        shared=None if shared is None else as_density(shared),
        layers=dict(layers or {}),
        meta=_json_safe(dict(meta or {}), "meta"),
    )
    text = json.dumps(content.to_dict(), indent=2, allow_nan=False) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return dataclasses.replace(content, path=path)
