"""Training and inference throughput of whole denoising networks: weighted vs standard.

``layer_overhead.py`` measures single layers; this benchmark measures what a user of the
recipes sees: patches per second through a full training step of DnCNN and NAFNet.

For every model configuration below, the *standard* network is built under a fixed seed
(``recipes.models.build_model``) and its *weighted* twin is
``ndwconv.convert(standard, "default")`` — a converted deep copy with the same initial
weights (NAFNet's 1×1 and 2×2 convolutions stay plain: ``convert`` skips kernels the
density cannot describe, as the recipes do). Each network gets its own Adam optimizer,
a fixed random input batch and a fixed random target, and one *training step* is what
the recipes' trainer does per batch (fp32, no gradient clipping, no schedule):

    output = model(inputs); loss = F.mse_loss(output, target)
    optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()

*Inference* is ``model.eval()`` and ``torch.no_grad()``, one forward pass per call.
``ndwconv.fold`` turns a trained weighted network into a plain one (each W ⊙ Φ baked into
an ``nn.ConvNd``), so folded inference is identical to standard inference by
construction and is not timed; the inference rows measure the *unfolded* weighted
network, which serves W ⊙ Φ from its cache.

Timing: the standard network, the weighted one and an A/A control (a deep copy of the
standard network with its own optimizer) are timed in turn, the order rotating from repeat
to repeat (S W C, W C S, C S W, …) so that drift hits all alike; after a warm-up (which
also creates Adam's state). Each repeat gives one per-pair ratio against the standard
network. The table reports patches/s from the median time of each side, the median
throughput ratio weighted/standard (> 1: weighted faster) with its interquartile range,
the median time ratio (its inverse per pair; < 1: weighted faster), and the cores that
*other* processes kept busy meanwhile. The A/A row's distance from 1.000 and its IQR are
the noise floor: a weighted ratio inside it is no evidence of a difference.

Measure on an idle machine: with torch's default threads (one per core), another job
holding a core stalls every step at thread barriers (10-100× on tiny shapes), whichever
network it is.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import ndwconv
from ndwconv.recipes.models import build_model, count_parameters

from ._timing import (
    ForeignLoad,
    RatioStats,
    Run,
    StepSettings,
    add_step_options,
    fmt_load,
    format_table,
    interleaved,
    make_parser,
    ratio_stats,
    set_threads,
    step_settings,
    synchronizer,
    wait_for_quiet,
)

# ---------------------------------------------------------------------------------------
# model configurations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One network and the batch it trains on: ``(batch, patch side)`` per device type."""

    label: str
    model: str
    kwargs: dict[str, Any] = field(hash=False)
    channels: int
    cpu: tuple[int, int]
    cuda: tuple[int, int]
    full_only: bool = False

    def shape(self, device: torch.device, quick: bool) -> tuple[int, ...]:
        """Input shape ``(batch, channels, patch, patch)`` for this device (tiny with quick)."""
        batch, patch = (2, 16) if quick else (self.cuda if device.type == "cuda" else self.cpu)
        return (batch, self.channels, patch, patch)


CONFIGS = [
    # The bsd-cpu recipe (recipes/configs/bsd-cpu.toml): grey, 40×40 patches, batch 32.
    Config(
        "DnCNN bsd-cpu (depth 10, width 32, BN)",
        "dncnn",
        {"ndim": 2, "channels": 1, "depth": 10, "width": 32, "batch_norm": True},
        channels=1,
        cpu=(32, 40),
        cuda=(32, 40),
    ),
    # DnCNN-S of the paper (17 layers, 64 channels; batch 128 there, 16 on a CPU).
    Config(
        "DnCNN-S (depth 17, width 64, BN)",
        "dncnn",
        {"ndim": 2, "channels": 1, "depth": 17, "width": 64, "batch_norm": True},
        channels=1,
        cpu=(16, 40),
        cuda=(128, 40),
    ),
    # NAFNet reduced to fit a CPU: RGB, one block per level.
    Config(
        "NAFNet width 16, blocks 1-1-1-1 / 1 / 1-1-1-1",
        "nafnet",
        {
            "channels": 3,
            "width": 16,
            "enc_blocks": (1, 1, 1, 1),
            "middle_blocks": 1,
            "dec_blocks": (1, 1, 1, 1),
        },
        channels=3,
        cpu=(8, 64),
        cuda=(8, 64),
    ),
    # The NAFNet paper's denoising network (recipes/configs/div2k-paper-nafnet.toml).
    Config(
        "NAFNet width 32 (paper default)",
        "nafnet",
        {"channels": 3, "width": 32},
        channels=3,
        cpu=(4, 64),
        cuda=(32, 128),
        full_only=True,
    ),
]


# ---------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------


def train_step(model: nn.Module, inputs: Tensor, target: Tensor) -> Callable[[], None]:
    """One training step as the recipes' trainer takes it (MSE loss, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        output = model(inputs)
        loss = F.mse_loss(output.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


def infer_step(model: nn.Module, inputs: Tensor) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with torch.no_grad():
            return model(inputs)

    return run


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """One comparison: ``candidate`` against the standard network, in one mode."""

    model: str
    mode: str  # "train" or "infer"
    pair: str  # "weighted / standard" or "A/A copy / standard"
    shape: tuple[int, ...]
    standard_patches_per_s: float
    candidate_patches_per_s: float
    throughput_ratio: RatioStats  # per pair: t_standard / t_candidate (> 1: candidate faster)
    time_ratio: RatioStats  # per pair: t_candidate / t_standard (< 1: candidate faster)
    foreign_cores: float | None
    samples_s: dict[str, list[float]]


def build_pair(cfg: Config, device: torch.device) -> tuple[nn.Module, nn.Module, int]:
    """Standard network (seed 0) and its weighted twin; also the number of converted convs."""
    torch.manual_seed(0)
    standard = build_model(cfg.model, **cfg.kwargs).to(device)
    if device.type == "cuda":  # the trainer's default on CUDA (train.channels_last)
        standard = standard.to(memory_format=torch.channels_last)
    weighted, report = ndwconv.convert(standard, "default", return_report=True)
    return standard, weighted, len(report.replaced)


def measure(cfg: Config, settings: StepSettings) -> tuple[list[Row], dict[str, Any]]:
    device = settings.device
    shape = cfg.shape(device, settings.quick)
    standard, weighted, converted = build_pair(cfg, device)
    control = copy.deepcopy(standard)
    models = {"standard": standard, "weighted": weighted, "control": control}
    info = {
        "model": cfg.label,
        "shape": list(shape),
        "parameters standard": count_parameters(standard),
        "parameters weighted": count_parameters(weighted),
        "converted convolutions": converted,
    }
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(shape, generator=generator).to(device)
    target = torch.randn(shape, generator=generator).to(device)
    if device.type == "cuda":  # as the trainer does on CUDA (train.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)

    rows = []
    for mode in ("train", "infer"):
        for m in models.values():
            m.train(mode == "train")
        if mode == "train":
            steps = {name: train_step(m, inputs, target) for name, m in models.items()}
        else:
            steps = {name: infer_step(m, inputs) for name, m in models.items()}
        if settings.wait_quiet_s > 0:
            wait_for_quiet(settings.wait_quiet_s)
        with ForeignLoad() as load:
            samples = interleaved(
                steps,
                settings.repeats,
                sync=synchronizer(device),
                warmup=settings.warmup,
                min_sample_s=settings.min_sample_s,
            )
        base = samples["standard"]
        for name, pair in (("weighted", "weighted / standard"), ("control", "A/A copy / standard")):
            thr = ratio_stats(base, samples[name])
            rows.append(
                Row(
                    model=cfg.label,
                    mode=mode,
                    pair=pair,
                    shape=shape,
                    standard_patches_per_s=shape[0] / thr.num_median_s,
                    candidate_patches_per_s=shape[0] / thr.den_median_s,
                    throughput_ratio=thr,
                    time_ratio=ratio_stats(samples[name], base),
                    foreign_cores=load.cores,
                    samples_s={"standard": base, name: samples[name]},
                )
            )
    return rows, info


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        thr, tim = r.throughput_ratio, r.time_ratio
        out.append(
            [
                r.model,
                r.mode,
                r.pair,
                f"{r.shape[0]}×{'×'.join(map(str, r.shape[1:]))}",
                f"{r.standard_patches_per_s:.1f}",
                f"{r.candidate_patches_per_s:.1f}",
                f"{thr.median:.3f}",
                f"{thr.q1:.3f}–{thr.q3:.3f}",
                f"{tim.median:.3f}",
                f"{tim.q1:.3f}–{tim.q3:.3f}",
                fmt_load(r.foreign_cores),
            ]
        )
    return out


HEADERS = [
    "model",
    "mode",
    "pair",
    "batch×C×H×W",
    "standard patches/s",
    "candidate patches/s",
    "throughput ratio (median)",
    "IQR",
    "time ratio (median)",
    "IQR",
    "other load",
]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "train_throughput",
        __doc__,
        [
            "python -m benchmarks.train_throughput           # CPU, ~3 min on 2 idle cores",
            "python -m benchmarks.train_throughput --quick   # smoke test: tiny, 1 thread",
            "python -m benchmarks.train_throughput --device cuda --full  # adds NAFNet width 32",
        ],
    )
    add_step_options(
        parser,
        repeats=(20, 3),
        warmup_note="the first training step also creates Adam's state",
        wait_unit="table block",
    )
    parser.add_argument(
        "--full", action="store_true", help="also NAFNet width 32, the paper's default (GPU)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args)
    settings = step_settings(args, parser, repeats=(20, 3))
    device = settings.device
    configs = [c for c in CONFIGS if args.full or not c.full_only]

    run = Run("train_throughput", args, argv, device)
    header = {
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "min_sample_s": settings.min_sample_s,
        "wait_quiet_s": settings.wait_quiet_s,
        "candidates": "standard, weighted, A/A copy of standard (interleaved)",
    }
    print("## Training throughput: weighted vs standard networks\n")
    print(run.header(header, markdown=True))
    print()

    rows: list[Row] = []
    models_info = []
    for cfg in configs:
        cfg_rows, cfg_info = measure(cfg, settings)
        rows += cfg_rows
        models_info.append(cfg_info)
        run.log(cfg.label)

    print("### Models\n")
    print(
        format_table(
            ["model", "input batch×C×H×W", "parameters (standard / weighted)", "converted convs"],
            [
                [
                    m["model"],
                    "×".join(map(str, m["shape"])),
                    f"{m['parameters standard']:,} / {m['parameters weighted']:,}",
                    str(m["converted convolutions"]),
                ]
                for m in models_info
            ],
            markdown=True,
        )
    )
    print()
    print(
        "### Throughput\n\n"
        "train = forward + MSE loss + zero_grad + backward + Adam step; infer = eval() + "
        "no_grad() forward. Throughput ratio = candidate / standard patches/s per pair "
        "(> 1: candidate faster); time ratio = its inverse (< 1: candidate faster). "
        "The A/A rows (standard vs a copy of itself) are the noise floor.\n"
    )
    print(format_table(HEADERS, table_rows(rows), markdown=True))
    print()
    print(
        "Inference after `ndwconv.fold(weighted)` is plain `nn.ConvNd` inference with W ⊙ Φ "
        "baked into the weights: identical to the standard network by construction, so it "
        "is not timed.\n"
    )
    print(f"_{run.footer()}_")
    run.write(
        header,
        {
            "models": models_info,
            "rows": [
                {
                    "model": r.model,
                    "mode": r.mode,
                    "pair": r.pair,
                    "shape": list(r.shape),
                    "standard_patches_per_s": r.standard_patches_per_s,
                    "candidate_patches_per_s": r.candidate_patches_per_s,
                    "throughput_ratio": r.throughput_ratio.to_json(),
                    "time_ratio": r.time_ratio.to_json(),
                    "foreign_cores": r.foreign_cores,
                    "samples_s": r.samples_s,
                }
                for r in rows
            ],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
