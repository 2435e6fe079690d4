"""Recipe configurations: TOML files with command-line overrides.

A configuration is a TOML document with one table per concern. Its top-level
``task = "…"`` names the registered task it is for (``ndwconv.recipes.tasks``). Every
recipe shares the ``[optim]``, ``[schedule]`` and ``[train]`` tables read by the trainer
(``ndwconv.recipes.engine.trainer``) and the ``[weighted]`` table (``density``); a task
adds its own (denoising: ``[model]``, ``[data]``, ``[noise]``, ``[eval]``). The built-in
configurations ship with the package (``ndwconv/recipes/configs/*.toml``) and are named
without the suffix (``quick``, ``bsd``, ``div2k-paper``); any other argument is read as
a path to a TOML file.

Overrides use the dotted ``section.key=value`` form, with ``value`` in TOML syntax (a
bare word that is not valid TOML is taken as a string)::

    --set train.steps=2000 --set optim.lr=5e-4 --set noise.sigma='"0-55"'

Every configuration is checked against its task's schema before anything runs: an
unknown section or key, or a value of the wrong type, is an error that names it.

Example:
    >>> cfg = load_config("quick", ["train.steps=5", "model.width=8"])
    >>> cfg["train"]["steps"], cfg["model"]["width"]
    (5, 8)
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["BUILTIN", "apply_overrides", "builtin_configs", "load_config", "parse_override"]

BUILTIN = "ndwconv.recipes.configs"
"""Package holding the built-in ``*.toml`` configurations."""


def _configs_folder() -> Any:
    return resources.files(BUILTIN)


def builtin_configs() -> dict[str, str]:
    """The built-in configurations: ``{name: first line of its description}``."""
    found = {}
    for entry in _configs_folder().iterdir():
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            found[entry.name[: -len(".toml")]] = str(data.get("description", "")).split("\n")[0]
    return dict(sorted(found.items()))


def _read(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"config file {text_name!r} does not exist")
        source = str(path.resolve())
        text = path.read_text(encoding="utf-8")
    else:
        entry = _configs_folder() / f"{text_name}.toml"
        if not entry.is_file():
            known = ", ".join(builtin_configs())
            raise ValueError(
                f"config {text_name!r} is neither a built-in configuration ({known}) "
                "nor an existing .toml file"
            )
        source = f"builtin:{text_name}"
        text = entry.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {text_name!r} is not valid TOML: {err}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into its key path and its value (TOML syntax).

    Example:
        >>> parse_override("optim.betas=[0.9, 0.99]")
        (['optim', 'betas'], [0.9, 0.99])
        >>> parse_override("weighted.density=table:0.7")
        (['weighted', 'density'], 'table:0.7')
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r} must look like section.key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return key.split("."), value


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``section.key=value`` override applied."""
    result = copy.deepcopy(dict(config))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Read a configuration (built-in name or TOML path) and apply overrides.

    The result records where it came from under the ``"source"`` key. It is not validated
    here: the trainer validates its tables (``ndwconv.recipes.engine.trainer.validate``),
    each task its own.
    """
    data, source = _read(name_or_path)
    data = apply_overrides(data, overrides)
    data["source"] = source
    data.setdefault("name", Path(str(name_or_path)).stem)
    return data


def check_section(
    config: Mapping[str, Any], section: str, schema: Mapping[str, tuple[type, ...] | type]
) -> dict[str, Any]:
    """Check one section against ``{key: allowed types}``; unknown keys are errors.

    Integers are accepted where floats are; booleans are never taken for numbers.
    """
    values = config.get(section, {})
    if not isinstance(values, Mapping):
        raise ValueError(f"config section [{section}] must be a table, got {values!r}")
    for key, value in values.items():
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ValueError(f"unknown config key {section}.{key} (known: {known})")
        allowed = schema[key] if isinstance(schema[key], tuple) else (schema[key],)
        if float in allowed and int not in allowed:
            allowed = (*allowed, int)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            names = " or ".join(t.__name__ for t in allowed)
            raise ValueError(f"config key {section}.{key} must be {names}, got {value!r}")
    return dict(values)
