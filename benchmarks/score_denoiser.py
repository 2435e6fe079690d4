"""Score a denoising checkpoint on its configuration's test data at several noise levels.

The same evaluation as ``ndwconv compare`` (``DenoiseTask.evaluate_items``: noise of the
configuration's kind fixed by ``eval.seed``, PSNR and SSIM of the clipped estimate on the
0–255 scale), once per σ, with the classical yardstick at the same σ (BM3D for images,
non-local means for volumes) unless ``--no-classical``. Writes a JSON file with the
per-item and mean scores; used for the scores of the shipped models (``ndwconv models``).

    python benchmarks/score_denoiser.py CKPT --config bsd-blind-cpu --data DATA/denoising \\
        --sigmas 15,25,50 -o scores.json
    python benchmarks/score_denoiser.py CKPT --config mni-blind --sigmas 5,15,25 -o held-out.json
    python benchmarks/score_denoiser.py CKPT --config mni-blind --sigmas 5,15,25 \\
        --set 'data.validation=["/path/to/nibabel/tests/data/anatomical.nii"]' -o anat.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from ndwconv.adapters.atomic import write_json
from ndwconv.recipes.engine.config import load_config
from ndwconv.recipes.tasks import get_task
from ndwconv.recipes.tasks.denoise import load_denoiser


def score(
    checkpoint: str,
    config: str,
    data: str | None,
    sigmas: list[float],
    classical: bool,
    overrides: list[str] = (),
) -> dict:
    entry = get_task("denoise")
    model = load_denoiser(checkpoint)
    results: dict = {
        "checkpoint": checkpoint,
        "config": config,
        "overrides": list(overrides),
        "sigmas": {},
    }
    for sigma in sigmas:
        cfg = load_config(
            config,
            [
                *overrides,
                f"noise.validation_sigma={sigma}",
                f"eval.classical={'true' if classical else 'false'}",
            ],
        )
        task = entry.make(cfg, "weighted", [data] if data else None)
        start = time.perf_counter()
        rows = task.evaluate_items(model, "cpu", classical=classical)
        seconds = time.perf_counter() - start
        mean = {
            key: statistics.fmean(r[key] for r in rows)
            for key in rows[0]
            if key != "image" and isinstance(rows[0][key], float)
        }
        results["sigmas"][str(sigma)] = {"mean": mean, "seconds": seconds, "rows": rows}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in mean.items() if not k.endswith("seconds"))
        print(f"sigma {sigma:g}: {len(rows)} images, {shown} ({seconds:.0f} s)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", help="the folder the configuration's data folders are in")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--no-classical", action="store_true", help="skip BM3D / non-local means")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="configuration override, as for ndwconv train (repeatable)",
    )
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    results = score(
        args.checkpoint, args.config, args.data, sigmas, not args.no_classical, args.set
    )
    write_json(Path(args.out), results)


if __name__ == "__main__":
    main()
