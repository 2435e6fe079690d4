"""Copy a trained denoising checkpoint into the package as a shipped model.

Keeps the weights and the sidecar's task, configuration, description, history and
totals (no optimizer state, no RNG states), writes ``recipes/shipped/NAME.safetensors``
and ``NAME.json``, and adds or replaces the model's entry in ``models.json`` with the
scores of ``score_denoiser.py`` JSON files (model, classical yardstick and, with
``--with-noisy``, the noisy input):

    python benchmarks/ship_denoiser.py CKPT --name dncnn-grey-blind --scores scores.json \\
        --noise "..." --data "..." --command "..." --caveats "..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ndwconv.adapters.atomic import write_json
from ndwconv.recipes.engine.checkpoint import save_checkpoint
from ndwconv.recipes.shipped import SHIPPED_DIR
from ndwconv.recipes.tasks.denoise import load_denoiser

CLASSICAL = {"bm3d": "BM3D", "nlmeans": "non-local means"}
KEPT = ("task", "step", "config", "description", "history", "totals")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--scores", required=True, nargs="+", help="score_denoiser.py's JSON file(s)"
    )
    parser.add_argument("--noise", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--caveats", default="")
    parser.add_argument(
        "--test-set",
        nargs="+",
        default=["BSD68"],
        help="the name of the scored data in the scores' labels: one, or one per --scores file",
    )
    parser.add_argument(
        "--with-noisy", action="store_true", help="also list the noisy input's scores"
    )
    args = parser.parse_args()

    checkpoint = Path(args.checkpoint)
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text("utf-8"))
    model = load_denoiser(checkpoint).eval()
    meta = {key: sidecar[key] for key in KEPT if key in sidecar}
    save_checkpoint(SHIPPED_DIR / f"{args.name}.safetensors", model, meta, rng=False)

    if len(args.test_set) not in (1, len(args.scores)):
        parser.error("--test-set takes one name, or one per --scores file")
    labels = args.test_set * len(args.scores) if len(args.test_set) == 1 else args.test_set
    scores = {}
    for path, label in zip(args.scores, labels, strict=True):
        blocks = json.loads(Path(path).read_text("utf-8"))["sigmas"]
        for sigma, block in sorted(blocks.items(), key=lambda kv: float(kv[0])):
            mean, name = block["mean"], f"{label} σ={float(sigma):g}"
            scores[name] = {"psnr": round(mean["psnr"], 3), "ssim": round(mean["ssim"], 4)}
            for key, shown in CLASSICAL.items():
                if f"{key}_psnr" in mean:
                    scores[f"{name}, {shown}"] = {
                        "psnr": round(mean[f"{key}_psnr"], 3),
                        "ssim": round(mean[f"{key}_ssim"], 4),
                    }
            if args.with_noisy:
                scores[f"{name}, noisy input"] = {
                    "psnr": round(mean["noisy_psnr"], 3),
                    "ssim": round(mean["noisy_ssim"], 4),
                }
    description = sidecar["description"]
    entry = {
        "name": args.name,
        "file": f"{args.name}.safetensors",
        "ndim": int(description["model"].get("ndim", 2)),
        "channels": int(description["model"].get("channels", 1)),
        "noise": args.noise,
        "data": args.data,
        "command": args.command,
        "scores": scores,
        "caveats": args.caveats,
    }
    index_path = SHIPPED_DIR / "models.json"
    index = json.loads(index_path.read_text("utf-8")) if index_path.exists() else {"models": []}
    index["format"] = 1
    index["models"] = [m for m in index["models"] if m["name"] != args.name] + [entry]
    write_json(index_path, index)
    print(f"shipped {args.name}: {SHIPPED_DIR / entry['file']}")


if __name__ == "__main__":
    main()
