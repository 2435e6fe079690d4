"""Trained denoisers shipped inside the package, and ``ndwconv models``.

Each model is a checkpoint as the recipes write it (``NAME.safetensors``, weights only,
and its ``NAME.json`` sidecar: loading runs no code) plus an entry in ``models.json``
that says what it is: dimensionality, channels, the noise it was trained for, the
training data, the command that trained it and its measured scores. ``ndwconv denoise``
uses one of them when ``--model`` is not given (:func:`default_model`), and ``--model
NAME`` names one.

Example:
    >>> from ndwconv.recipes.shipped import shipped_models
    >>> all(m.path.is_file() for m in shipped_models())
    True
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SAMPLES_DIR",
    "SAMPLE_PREFIX",
    "SHIPPED_DIR",
    "ShippedModel",
    "default_model",
    "models_command",
    "resolve_sample",
    "samples",
    "shipped_model",
    "shipped_models",
]

SHIPPED_DIR = Path(__file__).resolve().parent
"""The folder holding the shipped checkpoints and ``models.json``."""

SAMPLES_DIR = SHIPPED_DIR / "samples"
"""The folder holding the bundled noisy sample images."""

SAMPLE_PREFIX = "sample:"
"""``ndwconv denoise sample:NAME`` reads the bundled noisy sample image ``NAME``."""


def samples() -> dict[str, Path]:
    """The bundled noisy sample images, by name (``camera-noisy``: a 256 × 256 crop of
    scikit-image's ``camera`` with Gaussian noise σ = 25 on the 0–255 scale, seed 0)."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.png"))}


def resolve_sample(text: str) -> str:
    """``sample:NAME`` → the bundled sample's path; any other text unchanged.

    Raises:
        ValueError: no bundled sample has that name (the message lists them).
    """
    if not text.startswith(SAMPLE_PREFIX):
        return text
    name = text[len(SAMPLE_PREFIX) :]
    found = samples()
    if name not in found:
        raise ValueError(
            f"{text}: no bundled sample is called {name!r} (bundled: "
            f"{', '.join(SAMPLE_PREFIX + n for n in found) or 'none'})"
        )
    return str(found[name])


@dataclass(frozen=True)
class ShippedModel:
    """One shipped model, as ``models.json`` describes it.

    Attributes:
        name: what ``--model`` and ``ndwconv models`` call it.
        path: its checkpoint (``.safetensors``; the sidecar ``.json`` beside it).
        ndim: spatial dimensions of its convolutions (2: images).
        channels: input channels (1 grey; a grey model takes colour images channel by
            channel).
        noise: the noise it was trained to remove.
        data: what it was trained on.
        command: the command that trained it.
        scores: measured scores, ``{test set: {metric: value}}``.
        caveats: where it should not be trusted.
    """

    name: str
    path: Path
    ndim: int
    channels: int
    noise: str
    data: str
    command: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    caveats: str = ""


def shipped_models(folder: str | Path | None = None) -> list[ShippedModel]:
    """The shipped models (those of ``models.json`` in ``folder``, default
    :data:`SHIPPED_DIR`), in the file's order."""
    folder = SHIPPED_DIR if folder is None else Path(folder)
    index = folder / "models.json"
    if not index.is_file():
        return []
    entries = json.loads(index.read_text("utf-8"))["models"]
    return [
        ShippedModel(
            name=e["name"],
            path=folder / e["file"],
            ndim=int(e["ndim"]),
            channels=int(e["channels"]),
            noise=e["noise"],
            data=e["data"],
            command=e["command"],
            scores={k: dict(v) for k, v in e.get("scores", {}).items()},
            caveats=e.get("caveats", ""),
        )
        for e in entries
    ]


def shipped_model(name: str, folder: str | Path | None = None) -> ShippedModel:
    """The shipped model called ``name``.

    Raises:
        ValueError: no shipped model has that name (the message lists them).
    """
    models = shipped_models(folder)
    for model in models:
        if model.name == name:
            return model
    known = ", ".join(m.name for m in models) or "none"
    raise ValueError(f"no shipped model is called {name!r} (shipped: {known})")


def default_model(ndim: int, folder: str | Path | None = None) -> ShippedModel | None:
    """The shipped model ``ndwconv denoise`` uses for ``ndim``-D inputs when ``--model``
    is not given: the first of ``models.json`` with that dimensionality, or ``None``."""
    for model in shipped_models(folder):
        if model.ndim == ndim:
            return model
    return None


def _scores_text(model: ShippedModel) -> str:
    parts = []
    for test, values in model.scores.items():
        numbers = ", ".join(
            f"{k.upper()} {v:.2f}" if k == "psnr" else f"{k.upper()} {v:.4f}"
            for k, v in values.items()
        )
        parts.append(f"{test}: {numbers}")
    return "; ".join(parts) or "not scored"


def models_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv models``."""
    parser = subparsers.add_parser(
        "models",
        help="list the trained denoisers shipped with ndwconv (ndwconv denoise uses them "
        "when --model is not given)",
        description="List the trained denoisers shipped with ndwconv: name, dimensionality, "
        "channels, the noise each was trained for, its training data and measured scores. "
        "`ndwconv denoise INPUT -o DIR` uses the first model of the input's dimensionality "
        "when --model is not given; `--model NAME` names one.",
        epilog="examples:\n  ndwconv models\n  ndwconv models --json\n"
        "  ndwconv denoise photo.png -o denoised --model dncnn-grey-blind",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the entries as JSON")
    parser.set_defaults(func=_models)


def _models(args: argparse.Namespace) -> int:
    models = shipped_models()
    if args.json:
        entries: list[dict[str, Any]] = []
        for m in models:
            entry = {k: v for k, v in m.__dict__.items() if k != "path"}
            entries.append({**entry, "path": str(m.path)})
        print(json.dumps(entries, indent=1, ensure_ascii=False))
        return 0
    if not models:
        print("no shipped models")
        return 0
    for m in models:
        kind = {1: "series", 2: "images", 3: "volumes"}.get(m.ndim, f"{m.ndim}-D data")
        print(f"{m.name}: {m.ndim}-D ({kind}), {m.channels} channel(s)")
        print(f"  noise:    {m.noise}")
        print(f"  data:     {m.data}")
        print(f"  scores:   {_scores_text(m)}")
        if m.caveats:
            print(f"  caveats:  {m.caveats}")
        print(f"  trained:  {m.command}")
        print(f"  file:     {m.path}")
    return 0
