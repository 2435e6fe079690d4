"""Smooth the weekly Mauna Loa CO₂ record with each NaN policy: the figure of
docs/timeseries.md.

Usage:
    python docs/scripts/plot_co2_smooth.py                 # writes docs/images/co2-smooth.png
    python docs/scripts/plot_co2_smooth.py --out /tmp/co2.png

The data ship with statsmodels (``statsmodels.datasets.co2``: weekly flask samples at
Mauna Loa, March 1958 – December 2001, 2284 weeks of which 59 are missing; Keeling &
Whorf 2004, CDIAC, public domain), so nothing is downloaded. The series is smoothed by
``ndwconv.adapters.timeseries.smooth`` with a Gaussian of σ = 14 days (two weeks) and
``nan="propagate"`` and ``nan="mask"``; ``nan="raise"`` refuses it. The PNG is written
atomically (``ndwconv.adapters.atomic``).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # file output only; no display needed

import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image  # a dependency of matplotlib
from statsmodels.datasets import co2

from ndwconv.adapters.atomic import atomic_write
from ndwconv.adapters.timeseries import smooth

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "images" / "co2-smooth.png"
DENSITY = "gaussian:14d"
ZOOM = ("1963-07-01", "1965-01-01")  # the longest gap: 18 weeks in 1964


def draw() -> plt.Figure:
    """The whole record with the masked smoothing, and a zoom on the 1964 gap."""
    series = co2.load_pandas().data["co2"]
    propagate = smooth(series, density=DENSITY, nan="propagate")
    mask = smooth(series, density=DENSITY, nan="mask")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), layout="constrained")
    top.plot(series.index, series, lw=0.6, color="0.6", label="weekly CO₂ (59 weeks missing)")
    top.plot(mask.index, mask, lw=1.0, color="C1", label=f'smooth {DENSITY}, nan="mask"')
    for when in series.index[series.isna()]:
        top.axvline(when, color="C3", lw=0.4, alpha=0.5)
    top.set_ylabel("CO₂ (ppm)")
    top.set_title("Mauna Loa weekly CO₂, 1958–2001 (red ticks: missing weeks)", fontsize=11)
    top.legend(fontsize=8, loc="upper left")
    window = slice(*ZOOM)
    raw = series[window]
    bottom.plot(raw.index, raw, "o", ms=3, color="0.5", label="weekly CO₂")
    bottom.plot(
        propagate[window].index,
        propagate[window],
        lw=5,
        alpha=0.45,
        color="C0",
        label='nan="propagate"',
    )
    bottom.plot(mask[window].index, mask[window], lw=1.2, color="C1", label='nan="mask"')
    gaps = raw.index[raw.isna()]
    for when in gaps:
        bottom.axvspan(
            when - pd.Timedelta(days=3.5), when + pd.Timedelta(days=3.5), color="C3", alpha=0.15
        )
    bottom.set_ylabel("CO₂ (ppm)")
    bottom.set_title(
        f"{ZOOM[0][:4]}–{ZOOM[1][:4]} (shaded: missing weeks): propagate widens every gap by "
        "the window;\nmask averages the valid neighbours, NaN only where none is within ±8 weeks",
        fontsize=10,
    )
    bottom.legend(fontsize=8, loc="upper left")
    return fig


def save(fig: plt.Figure, out: Path) -> None:
    """``fig`` as a 256-colour PNG, written atomically (small, no visible loss)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        palette = rendered.convert("RGB").quantize(colors=256)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: palette.save(tmp, format="PNG", optimize=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Plot the Mauna Loa CO₂ record smoothed with each NaN policy.",
        epilog="example: python docs/scripts/plot_co2_smooth.py --out /tmp/co2.png",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"PNG file to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {str(args.out)!r}")
    fig = draw()
    try:
        save(fig, args.out)
    finally:
        plt.close(fig)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
