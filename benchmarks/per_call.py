"""Fixed cost per call of the weighted layers, against plain and reference-style layers.

On shapes small enough that a call's fixed cost shows (batch 1, 8×8 feature maps, 3-D
8³, MNIST-1D's length 40) and on one large 2-D shape, this times in one process,
interleaved, on one thread by default, five ways of computing the same layer (in = out
channels, kernel 3, padding 1, identical weight and bias, and the same Φ: the reference
implementation's k = 3 example, profile ``[0.7, 1, 0.7]`` on every axis, ``Table([0.7])``):

* ``plain``: ``nn.Conv{1,2,3}d`` (no density: the floor);
* ``reference``: :class:`ReferenceConv`, the approach of the paper's public layer
  (weightedConvolution2.0): Φ stored as a buffer and ``F.convNd(x, W * Φ, b, …)`` on
  every call;
* ``weighted``: ``ndwconv.WeightedConv{1,2,3}d``;
* ``weighted_nd``: ``ndwconv.WeightedConvNd(N, …)``;
* ``functional``: ``ndwconv.functional.weighted_conv(x, W, bias=b, padding=1, phi=Φ)``.

Each in three modes: ``no_grad`` (``eval()`` under ``torch.no_grad()``), ``inference_mode``
(``eval()`` under ``torch.inference_mode()``) and ``train`` (``train()``; gradients reset
to ``None``, forward, ``sum()``, backward; the input requires grad, as in the middle of a
network). A sample is a block of calls lasting ≥ ``--min-sample-ms``; the candidates take
turns in an order that rotates between repeats, so drift and other jobs hit all alike.
Reported: median and quartiles of µs per call, the added µs over ``plain`` (median of
per-repeat differences) and the ratio to ``plain`` (median of per-repeat ratios).

Targets: on the small shapes ndwconv's added cost ≤ the reference layer's (per repeat:
``weighted − reference ≤ 0``); on the large shape weighted/plain ≤ 1.01 for inference
and ≤ 1.03 for the training step.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ndwconv import Table, WeightedConv1d, WeightedConv2d, WeightedConv3d, WeightedConvNd
from ndwconv.functional import weighted_conv

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
    spread,
    verdict,
)

KERNEL = 3
PROFILE = (0.7, 1.0, 0.7)  # den = [0.7]: outermost weight, centre 1, symmetric
TARGET_INFER = 1.01
TARGET_TRAIN = 1.03
MODES = ("no_grad", "inference_mode", "train")
CANDIDATES = ("plain", "reference", "weighted", "weighted_nd", "functional")

PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
WEIGHTED = {1: WeightedConv1d, 2: WeightedConv2d, 3: WeightedConv3d}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass(frozen=True)
class Case:
    """One layer: ``shape`` is (batch, channels, *spatial); in = out channels, kernel 3."""

    label: str
    shape: tuple[int, ...]
    groups: int = 1
    large: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape) - 2

    @property
    def shape_str(self) -> str:
        return "×".join(map(str, self.shape))

    @property
    def name(self) -> str:
        return f"{self.label} {self.shape_str}" + (f" g{self.groups}" if self.groups > 1 else "")


CASES = (
    Case("2-D dense", (1, 64, 8, 8)),
    Case("2-D depthwise", (1, 64, 8, 8), groups=64),
    Case("1-D MNIST-1D", (1, 32, 40)),
    Case("3-D", (1, 16, 8, 8, 8)),
    Case("2-D large", (8, 64, 64, 64), large=True),
)
QUICK_LARGE_SHAPE = (1, 64, 16, 16)


class ReferenceConv(nn.Module):
    """The reference layer's approach: Φ a buffer, ``F.convNd(x, W * Φ, b, …)`` per call.

    Args:
        conv: the plain layer whose weight, bias and arguments are copied.
        phi: the density, shaped like the kernel's spatial axes.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, phi: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.register_buffer("phi", phi.detach().clone())
        self.conv = CONV[phi.dim()]
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.phi
        return self.conv(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Functional(nn.Module):
    """``functional.weighted_conv`` with its own weight and bias, called with keywords."""

    def __init__(self, conv: nn.Module, phi: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.bias = nn.Parameter(conv.bias.detach().clone())
        self.phi = phi.detach().clone()
        self.groups = conv.groups

    def forward(self, x: Tensor) -> Tensor:
        return weighted_conv(
            x, self.weight, bias=self.bias, padding=KERNEL // 2, groups=self.groups, phi=self.phi
        )


def reference_phi(ndim: int) -> Tensor:
    """Φ as the reference implementation builds it: the outer product of ``PROFILE`` over
    ``ndim`` axes, shape ``(3,) * ndim`` (independent of ndwconv's density code)."""
    alpha = torch.tensor(PROFILE)
    phi = torch.ones(())
    for _ in range(ndim):
        phi = phi.unsqueeze(-1) * alpha
    return phi


def build_layers(case: Case) -> dict[str, nn.Module]:
    """The five candidates of ``case`` with identical weight, bias and Φ (seed 0)."""
    torch.manual_seed(0)
    n, c, g = case.ndim, case.shape[1], case.groups
    plain = PLAIN[n](c, c, KERNEL, padding=KERNEL // 2, groups=g)
    density = Table([PROFILE[0]])
    weighted = WEIGHTED[n](c, c, KERNEL, padding=KERNEL // 2, groups=g, density=density)
    weighted_nd = WeightedConvNd(n, c, c, KERNEL, padding=KERNEL // 2, groups=g, density=density)
    with torch.no_grad():
        for layer in (weighted, weighted_nd):
            layer.weight.copy_(plain.weight)
            layer.bias.copy_(plain.bias)
    phi = reference_phi(n)
    return {
        "plain": plain,
        "reference": ReferenceConv(plain, phi),
        "weighted": weighted,
        "weighted_nd": weighted_nd,
        "functional": Functional(plain, phi),
    }


def check_agreement(layers: dict[str, nn.Module], x: Tensor) -> None:
    """Every weighted candidate computes what the reference layer computes.

    Raises:
        RuntimeError: naming the candidate that differs.
    """
    with torch.no_grad():
        expected = layers["reference"](x)
        for name in ("weighted", "weighted_nd", "functional"):
            if not torch.allclose(layers[name](x), expected, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"{name} does not compute what the reference layer computes")


def make_step(layer: nn.Module, x: Tensor, train: bool) -> Callable[[], object]:
    """One call of ``layer``: a forward, or a training step (fwd + bwd of ``sum()``)."""
    if not train:
        return lambda: layer(x)
    params = list(layer.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        layer(x).sum().backward()

    return step


def mode_context(mode: str) -> contextlib.AbstractContextManager[Any]:
    """The autograd context a mode's calls run in (entered once around all the timing)."""
    if mode == "no_grad":
        return torch.no_grad()
    if mode == "inference_mode":
        return torch.inference_mode()
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Settings:
    repeats: int
    warmup: int
    min_sample_s: float


def measure(case: Case, settings: Settings) -> list[dict[str, Any]]:
    """One result row per mode: every candidate's µs per call, added µs, ratio, verdict."""
    layers = build_layers(case)
    x = torch.randn(case.shape)
    check_agreement(layers, x)
    x_train = x.clone().requires_grad_()
    warmup = min(settings.warmup, 3) if case.large else settings.warmup  # 3 calls: ~1 s
    rows = []
    for mode in MODES:
        train = mode == "train"
        for layer in layers.values():
            layer.train(train)
        steps = {n: make_step(layers[n], x_train if train else x, train) for n in CANDIDATES}
        with ForeignLoad() as load, mode_context(mode):
            samples = interleaved(
                steps,
                settings.repeats,
                warmup=warmup,
                min_sample_s=settings.min_sample_s,
            )
        rows.append(summarise(case, mode, samples, load.cores))
    return rows


def summarise(
    case: Case, mode: str, samples: dict[str, list[float]], foreign_cores: float | None
) -> dict[str, Any]:
    """The JSON row of one (case, mode) from the interleaved samples (seconds per call)."""
    plain = samples["plain"]
    layers: dict[str, Any] = {}
    for name in CANDIDATES:
        entry: dict[str, Any] = {"us": spread(samples[name]).scaled(1e6).to_json()}
        if name != "plain":
            diffs = [a - b for a, b in zip(samples[name], plain, strict=True)]
            entry["added_us"] = spread(diffs).scaled(1e6).to_json()
            st = ratio_stats(samples[name], plain)
            entry["ratio"] = {"median": st.median, "q1": st.q1, "q3": st.q3}
        layers[name] = entry
    if case.large:
        target = TARGET_TRAIN if mode == "train" else TARGET_INFER
        goal = f"weighted/plain ≤ {target:.2f}"
        check = {n: layers[n]["ratio"] for n in ("weighted", "weighted_nd")}
        verdicts = {n: verdict(r["median"], r["q1"], target) for n, r in check.items()}
    else:
        goal = "added ≤ reference's"
        verdicts = {}
        for name in ("weighted", "weighted_nd"):
            over_ref = spread(
                [a - b for a, b in zip(samples[name], samples["reference"], strict=True)]
            ).scaled(1e6)
            layers[name]["minus_reference_us"] = over_ref.to_json()
            verdicts[name] = verdict(over_ref.median, over_ref.q1, 0.0)
    return {
        "case": case.label,
        "shape": list(case.shape),
        "groups": case.groups,
        "kernel": KERNEL,
        "large": case.large,
        "mode": mode,
        "foreign_cores": foreign_cores,
        "layers": layers,
        "target": goal,
        "verdict": verdicts,
    }


# ---------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------

HEADERS = [
    "case",
    "mode",
    "plain µs",
    "+reference µs",
    "+WeightedConv µs",
    "+WeightedConvNd µs",
    "+weighted_conv µs",
    "reference/plain",
    "weighted/plain [IQR]",
    "target",
    "verdict (WeightedConv / Nd)",
    "other load",
]


def table_row(row: dict[str, Any]) -> list[str]:
    """One table line: medians per call, added µs over plain, ratios, verdicts."""
    lay = row["layers"]

    def added(name: str) -> str:
        return f"{lay[name]['added_us']['median']:+.1f}"

    ratio = lay["weighted"]["ratio"]
    shape = "×".join(map(str, row["shape"])) + (f" g{row['groups']}" if row["groups"] > 1 else "")
    return [
        f"{row['case']} {shape}",
        row["mode"],
        f"{lay['plain']['us']['median']:.1f}",
        added("reference"),
        added("weighted"),
        added("weighted_nd"),
        added("functional"),
        f"{lay['reference']['ratio']['median']:.3f}",
        f"{ratio['median']:.3f} [{ratio['q1']:.3f}–{ratio['q3']:.3f}]",
        row["target"],
        f"{row['verdict']['weighted']} / {row['verdict']['weighted_nd']}",
        fmt_load(row["foreign_cores"]),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "per_call",
        __doc__,
        [
            "python -m benchmarks.per_call              # ~2 min on a 2-core CPU",
            "python -m benchmarks.per_call --quick      # smoke test, seconds",
            "python -m benchmarks.per_call --markdown   # table for docs/benchmarks.md",
            "python -m benchmarks.per_call --threads 2 --cases 2-D",
        ],
        threads_default="1",
    )
    parser.add_argument(
        "--repeats", type=positive_int, help="interleaved repeats (default 21; 3 with --quick)"
    )
    parser.add_argument(
        "--min-sample-ms",
        type=float,
        help="shortest block of calls one sample times (default 20; 2 with --quick)",
    )
    parser.add_argument(
        "--cases", default="", metavar="TEXT", help="only the cases whose label contains TEXT"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown (for the docs)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args, default=1)
    min_sample_ms = args.min_sample_ms or (2.0 if args.quick else 20.0)
    if min_sample_ms <= 0:
        parser.error(f"--min-sample-ms must be > 0, got {min_sample_ms}")
    cases = [c for c in CASES if args.cases in c.label]
    if not cases:
        parser.error(f"--cases {args.cases!r} matches none of: {', '.join(c.label for c in CASES)}")
    if args.quick:
        cases = [dataclasses.replace(c, shape=QUICK_LARGE_SHAPE) if c.large else c for c in cases]
    settings = Settings(
        repeats=args.repeats or (3 if args.quick else 21),
        warmup=2 if args.quick else 20,
        min_sample_s=min_sample_ms / 1e3,
    )
    md = args.markdown
    run = Run("per_call", args, argv, torch.device("cpu"))
    header = {
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "min_sample_s": settings.min_sample_s,
        "density": f"Table([{PROFILE[0]}]), profile {list(PROFILE)} per axis",
        "candidates": ", ".join(CANDIDATES),
    }
    title = "Per-call cost: ndwconv vs nn.ConvNd and a reference-style layer"
    print(f"## {title}\n" if md else title)
    print(run.header(header, md))
    print()
    rows = []
    for case in cases:
        rows += measure(case, settings)
        run.log(case.name)
    print(format_table(HEADERS, [table_row(r) for r in rows], markdown=md))
    print()
    scored = [v for r in rows for v in r["verdict"].values()]
    summary = (
        f"µs per call: medians of {settings.repeats} interleaved repeats; +X: added µs over "
        f"plain (median of per-repeat differences). {scored.count('PASS')} of {len(scored)} "
        f"verdicts PASS; {run.footer()}"
    )
    print(f"_{summary}_" if md else summary)
    run.write(header, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
