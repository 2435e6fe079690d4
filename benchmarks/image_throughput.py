"""Throughput of 2-D denoising on a large image: the shipped grey model, tile by tile.

The shipped ``dncnn-grey-blind`` (weighted DnCNN, 10 layers of 32 channels) on a
``SIZE × SIZE`` float32 image (default 4096², seeded noise on a gradient), tiles of 256²
overlapping by a quarter with Gaussian blending, 4 tiles per forward pass, CPU:

* **ours**: ``ndwconv.adapters.tiling.sliding_window`` with the network as ``ndwconv
  denoise`` serves it (``ndwconv.for_inference``: folded, BatchNorm fused, channels-last);
* **ours, as given**: the same tiler with the network as trained (weighted layers,
  BatchNorm), which isolates what serving buys;
* **MONAI**: ``monai.inferers.sliding_window_inference`` with the network as given, the
  same ROI, overlap, Gaussian blending (``sigma_scale=0.125``) and batch (when MONAI is
  installed; it is not a dependency of ndwconv).

Repeats are interleaved in one process, each network warmed up on one batch of tiles
first; the report gives megapixels per second (image pixels, not tile pixels) and the
per-repeat time ratios against MONAI, medians and quartiles, and the largest difference
between ours served and ours as given (on a 1024² crop).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import torch

import ndwconv
from ndwconv.adapters.tiling import sliding_window
from ndwconv.recipes.shipped import shipped_model
from ndwconv.recipes.tasks.denoise import load_denoiser

from ._timing import (
    ForeignLoad,
    Run,
    fmt_load,
    format_table,
    interleaved,
    make_parser,
    positive_int,
    ratio_stats,
    set_threads,
)
from .tiling import OVERLAP, monai, run_monai


def make_image(size: int) -> np.ndarray:
    """A ``(1, size, size)`` float32 gradient with Gaussian noise of σ = 25/255 (seeded)."""
    ramp = np.linspace(0.2, 0.8, size, dtype=np.float32)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((size, size), dtype=np.float32) * np.float32(25 / 255)
    return (np.add.outer(ramp, ramp) / 2 + noise)[None]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "image_throughput",
        __doc__,
        [
            "python -m benchmarks.image_throughput --quick   # 512², seconds",
            "python -m benchmarks.image_throughput --threads 2 --repeats 3   # 4096², ~12 min",
        ],
    )
    parser.add_argument("--size", type=positive_int, help="image edge (4096; 512 with --quick)")
    parser.add_argument("--tile", type=positive_int, default=256, help="tile edge (256)")
    parser.add_argument("--batch", type=positive_int, default=4, help="tiles per pass (4)")
    parser.add_argument("--repeats", type=positive_int, help="interleaved repeats (3; 1 quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args)
    size = args.size or (512 if args.quick else 4096)
    repeats = args.repeats or (1 if args.quick else 3)

    entry = shipped_model("dncnn-grey-blind")
    given = load_denoiser(entry.path).eval()
    served = ndwconv.for_inference(given)
    image = make_image(size)
    tensor = torch.from_numpy(image)

    def ours(model: torch.nn.Module) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            return sliding_window(
                model,
                image,
                tile=args.tile,
                overlap=OVERLAP,
                blend="gaussian",
                batch_size=args.batch,
                device="cpu",
                progress=False,
            )

        return run

    def theirs() -> np.ndarray:
        return run_monai(given, tensor, args.tile, args.batch).numpy()

    candidates = {"ours": ours(served), "ours, as given": ours(given)}
    if monai is not None:
        candidates["MONAI"] = theirs
    run = Run(
        "image_throughput",
        args,
        argv,
        torch.device("cpu"),
        monai=monai.__version__ if monai is not None else "not installed",
    )
    info = {
        "model": f"shipped {entry.name} (weighted DnCNN 2-D, 10 × 32, batch norm)",
        "image": f"{size}² float32, one channel",
        "tiling": f"tile {args.tile}², overlap {OVERLAP}, Gaussian blend (σ = tile/8), "
        f"{args.batch} tiles per pass, CPU",
        "repeats": f"{repeats}, interleaved in one process (warm-up: one batch of tiles)",
    }
    print("## 2-D denoising throughput\n")
    print(run.header(info, markdown=True))
    print()
    # agreement on a crop (cheap), then every network warmed up on one batch of tiles
    crop = image[:, : min(size, 1024), : min(size, 1024)]
    with torch.no_grad():
        difference = float(
            np.abs(
                sliding_window(served, crop, tile=args.tile, overlap=OVERLAP, progress=False)
                - sliding_window(given, crop, tile=args.tile, overlap=OVERLAP, progress=False)
            ).max()
        )
        for model in (served, given):
            model(torch.zeros(args.batch, 1, args.tile, args.tile))
    with ForeignLoad() as load:
        samples = interleaved(candidates, repeats, warmup=0, number=1)
    megapixels = size * size / 1e6
    rows, results = [], {}
    for name, times in samples.items():
        median = statistics.median(times)
        row = [name, f"{median:.2f}", f"{megapixels / median:.3f}"]
        results[name] = {"seconds": times, "megapixels_per_s": megapixels / median}
        if "MONAI" in samples:
            st = ratio_stats(times, samples["MONAI"])
            row.append(f"{st.median:.3f} [{st.q1:.3f}, {st.q3:.3f}]")
            results[name]["ratio_to_monai"] = st.median
        rows.append(row)
    headers = ["method", "s per image", "megapixels/s"]
    if "MONAI" in samples:
        headers.append("time / MONAI's [quartiles]")
    print(format_table(headers, rows, markdown=True))
    print(
        f"\nOurs served vs ours as given: max |Δ| = {difference:.2e}. "
        f"Other processes kept {fmt_load(load.cores)} cores busy while timing.\n"
    )
    print(f"_{run.footer()}_")
    results["served_vs_given_max_abs"] = difference
    results["foreign_cores"] = load.cores
    run.write(info, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
