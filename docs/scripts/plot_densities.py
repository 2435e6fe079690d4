"""Draw the density Φ of each ndwconv family: the figure of docs/densities.md.

Usage:
    python docs/scripts/plot_densities.py                      # writes docs/images/densities.png
    python docs/scripts/plot_densities.py --out /tmp/phi.png

Needs only matplotlib and ndwconv. Every Φ is built through the public API
(``Density.build``), so the picture shows exactly what the layers multiply into their
kernels. The PNG is written atomically (temporary file in the target folder, then
``os.replace``), so an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # file output only; no display needed

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from PIL import Image  # a dependency of matplotlib

import ndwconv as nw

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "images" / "densities.png"

# (title, family, kernel shape): one heat-map each, drawn in this order.
PANELS: list[tuple[str, nw.Density, tuple[int, ...]]] = [
    ("Table, k=3\n[0.7]", nw.Table([0.7]), (3, 3)),
    ("Table, k=5\n[0.2, 0.8]", nw.Table([0.2, 0.8]), (5, 5)),
    ("Table, k=7\n[0.25, 0.15, 0.55]", nw.Table([0.25, 0.15, 0.55]), (7, 7)),
    ("Table, 3×5, a profile per axis\n[[0.7], [0.2, 0.8]]", nw.Table([[0.7], [0.2, 0.8]]), (3, 5)),
    ("Gaussian, 5×5\nσ=1", nw.Gaussian(sigma=1.0), (5, 5)),
    (
        "Gaussian, 5×5, σ=2 mm\nvoxel spacing (2, 1) mm",
        nw.Gaussian(sigma=2.0, spacing=(2.0, 1.0)),
        (5, 5),
    ),
    ("Learned() at initialisation, 5×5\n(= Ones: the plain convolution)", nw.Learned(), (5, 5)),
]

# (label, family, size): 1-D axis profiles, all on one plot.
PROFILES: list[tuple[str, nw.Density, int]] = [
    ("Table k=3", nw.Table.default(), 3),
    ("Table k=5", nw.Table.default(), 5),
    ("Table k=7", nw.Table.default(), 7),
    ("Gaussian σ=1, k=7", nw.Gaussian(1.0), 7),
    ("Gaussian σ=2, k=7", nw.Gaussian(2.0), 7),
    ("Ones, k=7", nw.Ones(), 7),
]


def heatmap(ax: Axes, title: str, family: nw.Density, shape: tuple[int, ...]):
    """Draw Φ for a 2-D kernel with every value written in its cell."""
    phi = family.build(shape).numpy()
    image = ax.imshow(phi, cmap="viridis", vmin=0.0, vmax=1.0)
    size = 10 if max(shape) <= 5 else 8
    for (i, j), value in _cells(phi):
        colour = "black" if value > 0.6 else "white"
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=size, color=colour)
    ax.set_title(title, fontsize=10)
    rows, cols = shape
    ax.set_yticks(range(rows), _offset_labels(rows))
    ax.set_xticks(range(cols), _offset_labels(cols))
    ax.set_ylabel("axis 0 offset", fontsize=8)
    ax.set_xlabel("axis 1 offset", fontsize=8)
    ax.tick_params(length=0, labelsize=8)
    return image


def _offset_labels(size: int) -> list[str]:
    """Tick labels giving each tap's offset from the centre: -1, 0, +1, …"""
    centre = (size - 1) // 2
    return [f"{i - centre:+d}" if i != centre else "0" for i in range(size)]


def _cells(phi):
    rows, cols = phi.shape
    for i in range(rows):
        for j in range(cols):
            yield (i, j), float(phi[i, j])


def profiles(ax: Axes) -> None:
    """Draw the 1-D axis profiles against the tap offset from the kernel centre."""
    markers = "osD^v*"
    for (label, family, size), marker in zip(PROFILES, markers, strict=True):
        values = family.build((size,)).numpy()
        offsets = [i - (size - 1) / 2 for i in range(size)]
        ax.plot(offsets, values, marker=marker, markersize=5, linewidth=1.4, label=label)
    ax.set_title("1-D axis profiles\n(Φ is their outer product)", fontsize=10)
    ax.set_xlabel("tap offset from the centre", fontsize=9)
    ax.set_ylabel("profile value", fontsize=9)
    ax.set_xticks(range(-3, 4))
    ax.set_ylim(0.0, 1.08)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="lower center", framealpha=0.9)


def draw() -> plt.Figure:
    """The whole figure: seven Φ heat-maps, a shared colour bar and the 1-D profiles."""
    fig = plt.figure(figsize=(15, 8), layout="constrained")
    grid = fig.add_gridspec(2, 5, width_ratios=[1, 1, 1, 1, 0.06])
    slots = [grid[0, 0], grid[0, 1], grid[0, 2], grid[0, 3], grid[1, 0], grid[1, 1], grid[1, 2]]
    image = None
    for slot, (title, family, shape) in zip(slots, PANELS, strict=True):
        image = heatmap(fig.add_subplot(slot), title, family, shape)
    fig.colorbar(image, cax=fig.add_subplot(grid[0, 4]), label="Φ (centre tap = 1)")
    profiles(fig.add_subplot(grid[1, 3:]))
    fig.suptitle("ndwconv densities Φ: the kernel is multiplied element-wise by Φ", fontsize=13)
    return fig


def save_atomically(fig: plt.Figure, out: Path) -> None:
    """Write ``fig`` as PNG to ``out`` via a temporary file and ``os.replace``.

    The image is reduced to a 256-colour palette (Pillow ships with matplotlib), which
    keeps the file small without visible loss for flat heat-maps and text.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        palette = rendered.convert("RGB").quantize(colors=256)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            palette.save(fh, format="PNG", optimize=True)
        os.chmod(tmp, 0o644)  # mkstemp creates owner-only files; an image is for everyone
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Plot the ndwconv density families (Φ heat-maps and 1-D profiles).",
        epilog="example: python docs/scripts/plot_densities.py --out docs/images/densities.png",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"PNG file to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {str(args.out)!r}")
    fig = draw()
    try:
        save_atomically(fig, args.out)
    finally:
        plt.close(fig)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
