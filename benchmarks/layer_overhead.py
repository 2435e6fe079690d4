"""Weighted/plain ratio of single convolution layers on realistic shapes.

Checks the performance bar:

* weighted/plain training step (forward + backward) ≤ 1.03, inference ≤ 1.01, for
  ``WeightedConv{1,2,3}d`` (density ``Table.default()``) against the matching ``nn.ConvNd``
  holding identical weights;
* N = 4: ``WeightedConvNd(4, …)`` within 1.25× of the sum of its constituent 3-D
  convolutions — the ``k0`` ``F.conv3d`` calls on pre-sliced, contiguous ``(B·O0, C, …)``
  inputs with ``weight[:, :, j]``, i.e. the work any tap-decomposition must do anyway.

Every ratio is the median of per-pair ratios from interleaved repeats in one process (the
order alternates between repeats). An A/A control row (the plain layer against a copy of
itself, measured the same way) shows the noise floor of the machine, and every row reports
the CPU load that *other* processes put on the machine while it was measured. The fixed
cost per call, which these shapes hide, is ``benchmarks.per_call``'s subject.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ndwconv import Table, WeightedConv1d, WeightedConv2d, WeightedConv3d, WeightedConvNd
from ndwconv.recipes.engine.distributed import resolve_device

from ._timing import (
    ForeignLoad,
    RatioStats,
    Run,
    fmt_load,
    format_table,
    interleaved,
    make_parser,
    positive_int,
    ratio_stats,
    set_threads,
    synchronizer,
    verdict,
    wait_for_quiet,
)

TARGET_TRAIN = 1.03
TARGET_INFER = 1.01
TARGET_ND = 1.25

PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
WEIGHTED = {1: WeightedConv1d, 2: WeightedConv2d, 3: WeightedConv3d}


@dataclass(frozen=True)
class Case:
    """One layer: ``shape`` is (batch, channels, *spatial); in = out channels, padding k//2."""

    label: str
    shape: tuple[int, ...]
    kernel: int

    @property
    def ndim(self) -> int:
        return len(self.shape) - 2

    @property
    def shape_str(self) -> str:
        return "×".join(str(s) for s in self.shape)

    def shrunk(self) -> Case:
        """The same layer on a tiny input (batch 1, ≤ 16 channels, ≤ 16 per axis): --quick."""
        _, c, *spatial = self.shape
        return dataclasses.replace(self, shape=(1, min(c, 16), *(min(s, 16) for s in spatial)))


CASES = [
    Case("1-D", (32, 64, 4096), 3),
    Case("1-D", (16, 32, 8192), 7),
    Case("2-D CIFAR-like", (128, 64, 32, 32), 3),
    Case("2-D", (32, 64, 64, 64), 3),
    Case("2-D", (16, 32, 96, 96), 5),
    Case("2-D", (8, 16, 128, 128), 7),
    Case("3-D", (4, 16, 32, 32, 32), 3),
]

# A/A control: the plain layer against a copy of itself, measured exactly like the rows above.
# Its spread and its distance from 1.000 are the noise floor of this machine and harness.
CONTROL = Case("A/A control", (4, 16, 32, 32, 32), 3)

# N = 4: batch 2, 8 → 8 channels, 12×16×16×16, kernel 3⁴, padding 1 (tiny with --quick).
ND_SHAPE = (2, 8, 12, 16, 16, 16)
ND_SHAPE_QUICK = (1, 4, 6, 8, 8, 8)
ND_KERNEL = 3


# ---------------------------------------------------------------------------------------
# layers and steps
# ---------------------------------------------------------------------------------------


def make_pair(case: Case, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``nn.ConvNd`` and ``WeightedConvNd`` with identical weight and bias."""
    c, k, n = case.shape[1], case.kernel, case.ndim
    plain = PLAIN[n](c, c, k, padding=k // 2).to(device)
    weighted = WEIGHTED[n](c, c, k, padding=k // 2, density=Table.default()).to(device)
    with torch.no_grad():
        weighted.weight.copy_(plain.weight)
        weighted.bias.copy_(plain.bias)
    return plain, weighted


def train_step(layer: nn.Module, x: Tensor) -> Callable[[], None]:
    """forward + backward of ``sum(output)``; grads reset to None (as zero_grad does)."""
    params = list(layer.parameters())
    layer.train()

    def step() -> None:
        for p in params:
            p.grad = None
        x.grad = None
        layer(x).sum().backward()

    return step


def infer_step(layer: nn.Module, x: Tensor) -> Callable[[], Tensor]:
    """eval() forward under no_grad (ndwconv serves W⊙Φ from its cache here)."""
    layer.eval()

    def step() -> Tensor:
        with torch.no_grad():
            return layer(x)

    return step


@dataclass(frozen=True)
class Settings:
    device: torch.device
    repeats: int
    warmup: int
    min_sample_s: float
    wait_quiet_s: float


@dataclass
class Measured:
    """Ratio statistics of one row plus the CPU load other processes put on the machine."""

    stats: RatioStats
    foreign_cores: float | None


def compare(
    candidate: Callable[[], object], baseline: Callable[[], object], cfg: Settings
) -> Measured:
    """Interleaved timing of ``candidate`` vs ``baseline``; ratio = candidate / baseline."""
    if cfg.wait_quiet_s > 0:
        wait_for_quiet(cfg.wait_quiet_s)
    with ForeignLoad() as load:
        samples = interleaved(
            {"baseline": baseline, "candidate": candidate},
            cfg.repeats,
            sync=synchronizer(cfg.device),
            warmup=cfg.warmup,
            min_sample_s=cfg.min_sample_s,
        )
    return Measured(ratio_stats(samples["candidate"], samples["baseline"]), load.cores)


def measure_case(case: Case, cfg: Settings, control: bool = False) -> dict[str, Measured]:
    """Weighted vs plain; with ``control``, a deep copy of the plain layer vs itself (A/A)."""
    torch.manual_seed(0)
    plain, weighted = make_pair(case, cfg.device)
    if control:
        weighted = copy.deepcopy(plain)
    # Input of a layer in the middle of a network: its gradient is needed as well.
    x = torch.randn(case.shape, device=cfg.device, requires_grad=True)
    out = {}
    for mode, step in (("train", train_step), ("infer", infer_step)):
        plain_step, weighted_step = step(plain, x), step(weighted, x)
        out[mode] = compare(weighted_step, plain_step, cfg)
    return out


def _nd_pieces(shape: tuple[int, ...], device: torch.device):
    """The 4-D layer, its input, and the pre-sliced inputs/weights of the ideal decomposition."""
    torch.manual_seed(0)
    b, c = shape[:2]
    k, p = ND_KERNEL, ND_KERNEL // 2
    layer = WeightedConvNd(4, c, c, k, padding=p, density=Table.default()).to(device)
    x = torch.randn(shape, device=device, requires_grad=True)
    d0 = shape[2]
    out0 = d0 + 2 * p - k + 1
    with torch.no_grad():
        w_eff = layer.weight * layer.phi().to(layer.weight.dtype)
        xp = F.pad(x, (0, 0) * 3 + (p, p))  # zero planes on the first spatial axis only
        # Tap j sees planes j … j+out0-1, folded into the batch: (B·O0, C, D1, D2, D3).
        slices = [
            xp[:, :, j : j + out0].movedim(2, 1).reshape(b * out0, c, *shape[3:]).contiguous()
            for j in range(k)
        ]
        w_taps = [w_eff[:, :, j].contiguous() for j in range(k)]
        bias = layer.bias.detach().clone()
    return layer, x, slices, w_taps, bias, p


def measure_nd(shape: tuple[int, ...], cfg: Settings) -> dict[str, Measured]:
    layer, x, slices, w_taps, bias, p = _nd_pieces(shape, cfg.device)
    k = len(slices)

    def ideal_infer() -> None:
        with torch.no_grad():
            for j in range(k):
                F.conv3d(slices[j], w_taps[j], bias if j == 0 else None, 1, p)

    def nd_infer() -> Tensor:
        with torch.no_grad():
            return layer(x)

    # Training: the ideal needs the gradients of every tap's input slice, weight and bias.
    s_leaf = [s.clone().requires_grad_() for s in slices]
    w_leaf = [w.clone().requires_grad_() for w in w_taps]
    b_leaf = bias.clone().requires_grad_()
    with torch.no_grad():
        g_tap = torch.ones_like(F.conv3d(slices[0], w_taps[0], None, 1, p))
        g_out = torch.ones_like(layer(x))
    params = list(layer.parameters())

    def ideal_train() -> None:
        for t in (*s_leaf, *w_leaf, b_leaf):
            t.grad = None
        ys = [F.conv3d(s_leaf[j], w_leaf[j], b_leaf if j == 0 else None, 1, p) for j in range(k)]
        torch.autograd.backward(ys, [g_tap] * k)

    def nd_train() -> None:
        for t in params:
            t.grad = None
        x.grad = None
        layer(x).backward(g_out)  # same upstream gradient (ones) as the ideal

    out = {}
    layer.eval()
    out["infer"] = compare(nd_infer, ideal_infer, cfg)
    layer.train()
    out["train"] = compare(nd_train, ideal_train, cfg)
    return out


# ---------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------


def _stat_cells(m: Measured, target: float | None) -> list[str]:
    """Table cells of one row; no target: the A/A control (its verdict is the noise floor)."""
    st = m.stats
    return [
        f"{st.den_median_s * 1e3:.2f}",
        f"{st.num_median_s * 1e3:.2f}",
        f"{st.diff_median_s * 1e3:+.3f}",
        f"{st.median:.3f}",
        f"{st.q1:.3f}–{st.q3:.3f}",
        f"{st.min_ratio:.3f}",
        fmt_load(m.foreign_cores),
        "—" if target is None else f"≤ {target:.2f}",
        "noise floor" if target is None else verdict(st.median, st.q1, target),
    ]


STAT_HEADERS = ["Δ ms", "ratio (median)", "IQR", "min/min", "other load", "target", "verdict"]


def _row_json(fields: dict[str, Any], m: Measured, target: float | None) -> dict[str, Any]:
    verdict_ = None if target is None else verdict(m.stats.median, m.stats.q1, target)
    return (
        fields
        | m.stats.to_json()
        | {
            "foreign_cores": m.foreign_cores,
            "target": target,
            "verdict": verdict_,
        }
    )


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "layer_overhead",
        __doc__,
        [
            "python -m benchmarks.layer_overhead             # ~4 min on 2 idle CPU cores",
            "python -m benchmarks.layer_overhead --quick     # smoke test, seconds",
            "python -m benchmarks.layer_overhead --markdown --only layers --cases 3-D",
            "python -m benchmarks.layer_overhead --device cuda --repeats 50",
        ],
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help="interleaved pairs per row (default 25; 2 with --quick)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print Markdown tables (for docs/benchmarks.md)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--only",
        default="layers,nd",
        help="comma-separated parts to run: layers (N ≤ 3), nd (N = 4) (default: both)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="S",
        help="before each row wait up to S seconds for other processes to use < 0.25 "
        "cores (default 10; 0 with --quick)",
    )
    parser.add_argument(
        "--cases",
        default="",
        metavar="TEXT",
        help="only the N ≤ 3 rows whose label or shape contains TEXT (e.g. 3-D, 128×64)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_threads(args)
    try:
        device = resolve_device(args.device, "--device")
    except ValueError as err:
        parser.error(str(err))
    repeats = args.repeats or (2 if args.quick else 25)
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 10.0)
    if wait < 0:
        parser.error(f"--wait-quiet must be ≥ 0, got {wait}")
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - {"layers", "nd"}:
        parser.error(f"--only takes a comma-separated subset of layers,nd; got {args.only!r}")
    selected = [c for c in CASES if args.cases in f"{c.label} {c.shape_str}"]
    if not selected:
        shapes = ", ".join(f"{c.label} {c.shape_str}" for c in CASES)
        parser.error(f"--cases {args.cases!r} matches no row; rows: {shapes}")
    control = CONTROL
    nd_shape = ND_SHAPE_QUICK if args.quick else ND_SHAPE
    if args.quick:
        selected = [c.shrunk() for c in selected]
        control = control.shrunk()
    cfg = Settings(
        device,
        repeats,
        warmup=1 if args.quick else 3,
        min_sample_s=0.005 if args.quick else 0.1,
        wait_quiet_s=wait,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    md = args.markdown
    run = Run("layer_overhead", args, argv, device)
    settings = {
        "repeats": repeats,
        "warmup": cfg.warmup,
        "min_sample_s": cfg.min_sample_s,
        "wait_quiet_s": wait,
        "density": "Table.default()",
    }
    print("## Layer overhead: weighted / plain\n" if md else "Layer overhead: weighted / plain")
    print(run.header(settings, md))
    print()

    rows, nd_rows, results = [], [], []
    if "layers" in parts:
        for case in selected:
            res = measure_case(case, cfg)
            for mode, target in (("train", TARGET_TRAIN), ("infer", TARGET_INFER)):
                cells = _stat_cells(res[mode], target)
                rows.append([case.label, case.shape_str, str(case.kernel), mode, *cells])
                fields = {"case": case.label, "shape": list(case.shape), "kernel": case.kernel}
                results.append(_row_json(fields | {"mode": mode}, res[mode], target))
            run.log(f"{case.label} {case.shape_str} k{case.kernel}")
        if not args.cases:
            res = measure_case(control, cfg, control=True)
            for mode in ("train", "infer"):
                cells = _stat_cells(res[mode], None)
                rows.append([control.label, control.shape_str, str(control.kernel), mode, *cells])
                fields = {"case": control.label, "shape": list(control.shape), "mode": mode}
                results.append(_row_json(fields | {"kernel": control.kernel}, res[mode], None))
            run.log("A/A control")
        title = (
            "N ≤ 3: WeightedConv{1,2,3}d vs nn.Conv{1,2,3}d with identical weights, "
            "density Table.default(), padding k//2"
        )
        print(f"### {title}\n" if md else title)
        headers = ["case", "shape (B×C×spatial)", "k", "mode", "plain ms", "weighted ms"]
        print(format_table(headers + STAT_HEADERS, rows, markdown=md))
        print()

    if "nd" in parts:
        nd = measure_nd(nd_shape, cfg)
        run.log("N = 4")
        for mode in ("infer", "train"):
            nd_rows.append([mode, *_stat_cells(nd[mode], TARGET_ND)])
            fields = {"case": "N = 4 vs Σ conv3d", "shape": list(nd_shape), "mode": mode}
            results.append(_row_json(fields | {"kernel": ND_KERNEL}, nd[mode], TARGET_ND))
        shape = "×".join(map(str, nd_shape))
        c = nd_shape[1]
        title = (
            f"N = 4: WeightedConvNd(4, {c}, {c}, {ND_KERNEL}, padding={ND_KERNEL // 2}) on "
            f"{shape} vs the sum of its {ND_KERNEL} constituent F.conv3d calls "
            "on pre-sliced contiguous inputs"
        )
        print(f"### {title}\n" if md else title)
        headers = ["mode", "ideal Σ conv3d ms", "WeightedConvNd(4) ms", *STAT_HEADERS]
        print(format_table(headers, nd_rows, markdown=md))
        print()

    scored = [r for r in results if r["target"] is not None]
    n_pass = sum(r["verdict"] == "PASS" for r in scored)
    summary = f"{n_pass} of {len(scored)} rows PASS; {run.footer()}"
    print(f"_{summary}_" if md else summary)
    run.write(settings, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
