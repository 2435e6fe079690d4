"""Training throughput of the classification networks: weighted vs standard.

What a user of the ``classify`` recipes sees: samples per second through a full training
step of VGG-16-BN and ResNet-18 at CIFAR-100 shape (batch 128, 3×32×32, 100 classes)
and of the 1-D FCN of Wang et al. 2017 at UCR ArrowHead shape (batch 16, 1×251, 3
classes; batch 16 as in Ismail Fawaz et al. 2019). The target is a time ratio
weighted/standard ≤ 1.02 per training step.

For every configuration the *standard* network is built under a fixed seed
(``recipes.models.build_model``) and its *weighted* twin is
``make_weighted(copy.deepcopy(standard), "default")`` — what the classify task does: the
same initial weights, every odd-kernel convolution (the 3×3s) given the default density,
1×1 (and even) kernels left plain. An *A/A control* is a deep copy of the standard
network. Each gets its own optimizer (SGD with Nesterov momentum 0.9 and weight decay
5e-4, as in the CIFAR recipes; learning rate 0.01 so that hundreds of steps on one batch
stay finite), a fixed random batch and fixed random labels; one training step is

    logits = model(inputs); loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()

in train mode (BatchNorm batch statistics, dropout on), fp32.

Timing: the three networks are timed in turn, the order rotating from repeat to repeat
(S W C, W C S, C S W, …) after a warm-up (which also creates the momentum buffers); each
repeat gives one per-pair ratio against the standard network. The table reports
samples/s from the median time of each side, the median throughput ratio
candidate/standard (> 1: candidate faster) with its IQR, the median time ratio (< 1:
candidate faster) with its verdict against the target, and the cores that *other*
processes kept busy meanwhile. The A/A row is the noise floor.

The FCN is looked up by name (``fcn``); in a checkout whose model registry does not have
it, its row is skipped with a note, and the result file lists it under ``skipped``.
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
from ndwconv.recipes.models import MODELS, build_model, count_parameters, make_weighted

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
    verdict,
    wait_for_quiet,
)

TARGET = 1.02  # weighted/standard time per training step
DENSITY = "default"

# ---------------------------------------------------------------------------------------
# model configurations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One network and the batch it trains on (``quick``: the smoke-test batch)."""

    key: str
    label: str
    kwargs: dict[str, Any] = field(hash=False)
    shape: tuple[int, ...]
    quick: tuple[int, ...]

    @property
    def classes(self) -> int:
        return int(self.kwargs["num_classes"])


CONFIGS = [
    # CIFAR-100 at the cifar100-paper recipe's batch size.
    Config(
        "vgg16_bn",
        "VGG-16-BN, CIFAR-100",
        {"in_channels": 3, "num_classes": 100},
        shape=(128, 3, 32, 32),
        quick=(2, 3, 32, 32),
    ),
    Config(
        "resnet18",
        "ResNet-18, CIFAR-100",
        {"in_channels": 3, "num_classes": 100},
        shape=(128, 3, 32, 32),
        quick=(2, 3, 32, 32),
    ),
    # UCR ArrowHead: univariate, length 251, 3 classes.
    Config(
        "fcn",
        "FCN (Wang et al. 2017), UCR ArrowHead",
        {"in_channels": 1, "num_classes": 3},
        shape=(16, 1, 251),
        quick=(2, 1, 64),
    ),
]

# ---------------------------------------------------------------------------------------
# steps and measurement
# ---------------------------------------------------------------------------------------


def train_step(model: nn.Module, inputs: Tensor, labels: Tensor) -> Callable[[], None]:
    """One training step of the classify recipes: cross-entropy, SGD with Nesterov."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )

    def run() -> None:
        loss = F.cross_entropy(model(inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return run


@dataclass
class Row:
    """One comparison: ``candidate`` against the standard network, training steps."""

    model: str
    pair: str  # "weighted / standard" or "A/A copy / standard"
    shape: tuple[int, ...]
    standard_samples_per_s: float
    candidate_samples_per_s: float
    throughput_ratio: RatioStats  # per pair: t_standard / t_candidate (> 1: faster)
    time_ratio: RatioStats  # per pair: t_candidate / t_standard (< 1: faster)
    target: float | None
    verdict: str | None
    foreign_cores: float | None
    samples_s: dict[str, list[float]]


def build_trio(cfg: Config, device: torch.device) -> dict[str, nn.Module]:
    """Standard network (seed 0), its weighted twin and an A/A copy, on ``device``."""
    torch.manual_seed(0)
    standard = build_model(cfg.key, **cfg.kwargs).to(device)
    if device.type == "cuda" and len(cfg.shape) == 4:  # the trainer's default for 2-D
        standard = standard.to(memory_format=torch.channels_last)
    weighted = make_weighted(copy.deepcopy(standard), DENSITY)
    return {"standard": standard, "weighted": weighted, "control": copy.deepcopy(standard)}


def measure(cfg: Config, settings: StepSettings) -> tuple[list[Row], dict[str, Any]]:
    device = settings.device
    shape = cfg.quick if settings.quick else cfg.shape
    models = build_trio(cfg, device)
    weighted_layers = list(ndwconv.weighted_layers(models["weighted"]))
    info = {
        "key": cfg.key,
        "model": cfg.label,
        "shape": list(shape),
        "classes": cfg.classes,
        "parameters standard": count_parameters(models["standard"]),
        "parameters weighted": count_parameters(models["weighted"]),
        "weighted convolutions": len(weighted_layers),
        "plain convolutions": sum(
            type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) for m in models["weighted"].modules()
        ),
    }
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(shape, generator=generator).to(device)
    labels = torch.randint(cfg.classes, (shape[0],), generator=generator).to(device)
    if device.type == "cuda" and len(shape) == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    for model in models.values():
        model.train()
    steps = {name: train_step(m, inputs, labels) for name, m in models.items()}
    if settings.wait_quiet_s > 0:
        wait_for_quiet(settings.wait_quiet_s)
    with ForeignLoad() as load:
        samples = interleaved(
            steps,
            settings.repeats,
            sync=synchronizer(device),
            warmup=settings.warmup,
            min_sample_s=settings.min_sample_s,
            number=1 if settings.quick else None,  # a smoke test: no calibration calls
        )
    base = samples["standard"]
    rows = []
    for name, pair in (("weighted", "weighted / standard"), ("control", "A/A copy / standard")):
        thr = ratio_stats(base, samples[name])
        tim = ratio_stats(samples[name], base)
        target = TARGET if name == "weighted" else None
        rows.append(
            Row(
                model=cfg.label,
                pair=pair,
                shape=shape,
                standard_samples_per_s=shape[0] / thr.num_median_s,
                candidate_samples_per_s=shape[0] / thr.den_median_s,
                throughput_ratio=thr,
                time_ratio=tim,
                target=target,
                verdict=None if target is None else verdict(tim.median, tim.q1, target),
                foreign_cores=load.cores,
                samples_s={"standard": base, name: samples[name]},
            )
        )
    return rows, info


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------

HEADERS = [
    "model",
    "pair",
    "batch×shape",
    "standard samples/s",
    "candidate samples/s",
    "throughput ratio (median)",
    "IQR",
    "time ratio (median)",
    "IQR",
    "target",
    "verdict",
    "other load",
]


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        thr, tim = r.throughput_ratio, r.time_ratio
        out.append(
            [
                r.model,
                r.pair,
                f"{r.shape[0]}×{'×'.join(map(str, r.shape[1:]))}",
                f"{r.standard_samples_per_s:.1f}",
                f"{r.candidate_samples_per_s:.1f}",
                f"{thr.median:.3f}",
                f"{thr.q1:.3f}–{thr.q3:.3f}",
                f"{tim.median:.3f}",
                f"{tim.q1:.3f}–{tim.q3:.3f}",
                "—" if r.target is None else f"≤ {r.target:.2f}",
                r.verdict or "—",
                fmt_load(r.foreign_cores),
            ]
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "classify_throughput",
        __doc__,
        [
            "python -m benchmarks.classify_throughput           # CPU, ~7 min on 2 cores",
            "python -m benchmarks.classify_throughput --quick   # smoke test: tiny, 1 thread",
            "python -m benchmarks.classify_throughput --models resnet18 fcn",
            "python -m benchmarks.classify_throughput --device cuda",
        ],
    )
    add_step_options(
        parser,
        repeats=(15, 2),
        warmup_note="the first one also creates the momentum buffers",
        wait_unit="network",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[c.key for c in CONFIGS],
        metavar="NAME",
        help=f"which networks (default: all of {', '.join(c.key for c in CONFIGS)})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args)
    settings = step_settings(args, parser, repeats=(15, 2))
    device = settings.device
    chosen = set(args.models or [c.key for c in CONFIGS])
    configs = [c for c in CONFIGS if c.key in chosen]

    run = Run("classify_throughput", args, argv, device)
    header = {
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "min_sample_s": settings.min_sample_s,
        "wait_quiet_s": settings.wait_quiet_s,
        "density": DENSITY,
        "optimizer": "SGD lr 0.01, Nesterov momentum 0.9, weight decay 5e-4",
        "candidates": "standard, weighted, A/A copy of standard (interleaved)",
    }
    print("## Classification training throughput: weighted vs standard networks\n")
    print(run.header(header, markdown=True))
    print()

    rows: list[Row] = []
    models_info: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for cfg in configs:
        if cfg.key not in MODELS:
            note = (
                f"model {cfg.key!r} is not registered in ndwconv.recipes.models "
                "(this checkout does not have it); not measured"
            )
            skipped.append({"key": cfg.key, "model": cfg.label, "reason": note})
            run.log(f"{cfg.label}: skipped, {note}")
            continue
        cfg_rows, cfg_info = measure(cfg, settings)
        rows += cfg_rows
        models_info.append(cfg_info)
        run.log(cfg.label)

    print("### Models\n")
    print(
        format_table(
            [
                "model",
                "input batch×shape",
                "classes",
                "parameters (standard / weighted)",
                "weighted / plain convs",
            ],
            [
                [
                    m["model"],
                    "×".join(map(str, m["shape"])),
                    str(m["classes"]),
                    f"{m['parameters standard']:,} / {m['parameters weighted']:,}",
                    f"{m['weighted convolutions']} / {m['plain convolutions']}",
                ]
                for m in models_info
            ],
            markdown=True,
        )
    )
    for s in skipped:
        print(f"\n- {s['model']}: {s['reason']}")
    print()
    print(
        "### Training throughput\n\n"
        "train step = forward + cross-entropy + zero_grad + backward + SGD step. Throughput "
        "ratio = candidate / standard samples/s per pair (> 1: candidate faster); time "
        "ratio = its inverse (< 1: candidate faster), the verdict's measure. The A/A rows "
        "(standard vs a copy of itself) are the noise floor.\n"
    )
    print(format_table(HEADERS, table_rows(rows), markdown=True))
    print()
    print(f"_{run.footer()}_")
    run.write(
        header,
        {
            "models": models_info,
            "skipped": skipped,
            "rows": [
                {
                    "model": r.model,
                    "pair": r.pair,
                    "shape": list(r.shape),
                    "standard_samples_per_s": r.standard_samples_per_s,
                    "candidate_samples_per_s": r.candidate_samples_per_s,
                    "throughput_ratio": r.throughput_ratio.to_json(),
                    "time_ratio": r.time_ratio.to_json(),
                    "target": r.target,
                    "verdict": r.verdict,
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
