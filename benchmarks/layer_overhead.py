"""Overhead of ndwconv's weighted layers over the plain PyTorch convolution.

Checks the performance bar of DESIGN.md:

* weighted/plain training step (forward + backward) ≤ 1.03, inference ≤ 1.01, for
  ``WeightedConv{1,2,3}d`` (density ``Table.default()``) against the matching ``nn.ConvNd``
  holding identical weights;
* N = 4: ``WeightedConvNd(4, …)`` within 1.25× of the sum of its constituent 3-D
  convolutions — the ``k0`` ``F.conv3d`` calls on pre-sliced, contiguous ``(B·O0, C, …)``
  inputs with ``weight[:, :, j]``, i.e. the work any tap-decomposition must do anyway.

Every ratio is the median of per-pair ratios from interleaved repeats in one process (the
order alternates between repeats; see ``benchmarks/_timing.py``). A per-call overhead
breakdown (the W⊙Φ multiply, its backward, the inference-cache lookup, the checks in
``functional.weighted_conv``) follows, measured on tiny inputs where the convolution itself
is nearly free. An A/A control row (the plain layer against a copy of itself, measured the
same way) shows the noise floor of the machine, and every row reports the CPU load that
*other* processes put on the machine while it was measured.

Usage::

    python benchmarks/layer_overhead.py             # full run, ~4 min on 2 idle CPU cores
    python benchmarks/layer_overhead.py --quick     # smoke test, about a minute
    python benchmarks/layer_overhead.py --markdown  # tables for docs/benchmarks.md
    python benchmarks/layer_overhead.py --device cuda --repeats 50
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import (
    ForeignLoad,
    RatioStats,
    format_table,
    header_lines,
    interleaved,
    machine_info,
    ratio_stats,
    resolve_device,
    synchronizer,
    verdict,
    wait_for_quiet,
)

from ndwconv import Table, WeightedConv1d, WeightedConv2d, WeightedConv3d, WeightedConvNd
from ndwconv.functional import weighted_conv

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

# N = 4: batch 2, 8 → 8 channels, 12×16×16×16, kernel 3⁴, padding 1.
ND_SHAPE = (2, 8, 12, 16, 16, 16)
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
    waited_s: float


def compare(
    candidate: Callable[[], object], baseline: Callable[[], object], cfg: Settings
) -> Measured:
    """Interleaved timing of ``candidate`` vs ``baseline``; ratio = candidate / baseline."""
    waited = 0.0
    if cfg.wait_quiet_s > 0:
        waited, _ = wait_for_quiet(cfg.wait_quiet_s)
    with ForeignLoad() as load:
        samples = interleaved(
            {"baseline": baseline, "candidate": candidate},
            cfg.repeats,
            sync=synchronizer(cfg.device),
            warmup=cfg.warmup,
            min_sample_s=cfg.min_sample_s,
        )
    return Measured(ratio_stats(samples["candidate"], samples["baseline"]), load.cores, waited)


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


def _nd_pieces(device: torch.device):
    """The 4-D layer, its input, and the pre-sliced inputs/weights of the ideal decomposition."""
    torch.manual_seed(0)
    b, c = ND_SHAPE[:2]
    k, p = ND_KERNEL, ND_KERNEL // 2
    layer = WeightedConvNd(4, c, c, k, padding=p, density=Table.default()).to(device)
    x = torch.randn(ND_SHAPE, device=device, requires_grad=True)
    d0 = ND_SHAPE[2]
    out0 = d0 + 2 * p - k + 1
    with torch.no_grad():
        w_eff = layer.weight * layer.phi().to(layer.weight.dtype)
        xp = F.pad(x, (0, 0) * 3 + (p, p))  # zero planes on the first spatial axis only
        # Tap j sees planes j … j+out0-1, folded into the batch: (B·O0, C, D1, D2, D3).
        slices = [
            xp[:, :, j : j + out0].movedim(2, 1).reshape(b * out0, c, *ND_SHAPE[3:]).contiguous()
            for j in range(k)
        ]
        w_taps = [w_eff[:, :, j].contiguous() for j in range(k)]
        bias = layer.bias.detach().clone()
    return layer, x, slices, w_taps, bias, p


def measure_nd(cfg: Settings) -> dict[str, Measured]:
    layer, x, slices, w_taps, bias, p = _nd_pieces(cfg.device)
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
# per-call overhead breakdown (tiny inputs: the convolution itself costs microseconds)
# ---------------------------------------------------------------------------------------


def _us(
    fn: Callable[[], object], sync: Callable[[], None], number: int = 2000, repeats: int = 7
) -> float:
    """Minimum over ``repeats`` of the mean time per call of ``fn`` in µs (as timeit does)."""
    for _ in range(number // 10 + 1):
        fn()
    ts = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        ts.append((time.perf_counter() - t0) / number * 1e6)
    return min(ts)


def breakdown(device: torch.device, quick: bool) -> list[tuple[str, str]]:
    """µs per call of the pieces the weighted layer adds, on a 64→64 3×3 Conv2d.

    Runs with one intra-op thread: these tensors are far too small to be split across
    threads anyway, and with one thread another job holding a core cannot stall the
    measurement at a thread barrier (it did, by 10-100×, with two).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _breakdown(device, quick)
    finally:
        torch.set_num_threads(threads)


def _breakdown(device: torch.device, quick: bool) -> list[tuple[str, str]]:
    sync = synchronizer(device)
    number = 200 if quick else 1000
    torch.manual_seed(0)
    plain, weighted = make_pair(Case("2-D", (1, 64, 4, 4), 3), device)
    x = torch.randn(1, 64, 4, 4, device=device)
    xg = x.clone().requires_grad_()
    w, phi, bias = weighted.weight, weighted.phi(), weighted.bias
    w_eff = (w * phi).detach()
    g_w = torch.ones_like(w)
    rows = []

    def t(label: str, fn: Callable[[], object]) -> float:
        v = _us(fn, sync, number)
        rows.append((label, f"{v:.1f}"))
        return v

    def pair(name_a: str, name_b: str, what: str, a: Callable[[], object], b: Callable[[], object]):
        """Interleaved, min over repeats of the mean per call, µs."""
        s = interleaved({"a": a, "b": b}, 9, sync=sync, warmup=number // 10, number=number)
        ta, tb = min(s["a"]) * 1e6, min(s["b"]) * 1e6
        rows.append((f"{name_a} {what}", f"{ta:.1f}"))
        rows.append((f"{name_b} {what}", f"{tb:.1f}"))
        return ta, tb

    with torch.no_grad():
        t("W ⊙ Φ (64×64×3×3, no grad)", lambda: w * phi.to(w.dtype))
    t(
        "W ⊙ Φ forward + its backward (autograd.grad)",
        lambda: torch.autograd.grad(w * phi.to(w.dtype), w, g_w),
    )
    t(
        "  reference: autograd.grad of W * 1.0 (a bare autograd mul)",
        lambda: torch.autograd.grad(w * 1.0, w, g_w),
    )
    weighted.eval()
    with torch.no_grad():
        weighted.effective_weight()
        t("_cache_key() (inference)", weighted._cache_key)
        t("effective_weight() cache hit (inference)", weighted.effective_weight)
        t("F.conv2d(x 1×64×4×4, W, b, padding=1)", lambda: F.conv2d(x, w_eff, bias, 1, 1))
        t(
            "functional.weighted_conv(x, W, None, b, padding=1)",
            lambda: weighted_conv(x, w_eff, None, bias, 1, 1),
        )
        t(
            "functional.weighted_conv(x, W, Φ, b, padding=1)",
            lambda: weighted_conv(x, w, phi, bias, 1, 1),
        )
        plain.eval()
        tp, tw = pair(
            "nn.Conv2d",
            "WeightedConv2d",
            "forward, eval + no_grad",
            lambda: plain(x),
            lambda: weighted(x),
        )
    rows.append(("  → inference overhead per call", f"{tw - tp:+.1f}"))
    plain.train()
    weighted.train()
    pp, pw = list(plain.parameters()), list(weighted.parameters())

    def step(layer, params):
        def run():
            for p in params:
                p.grad = None
            xg.grad = None
            layer(xg).sum().backward()

        return run

    tp, tw = pair(
        "nn.Conv2d", "WeightedConv2d", "train step (fwd + bwd)", step(plain, pp), step(weighted, pw)
    )
    rows.append(("  → training overhead per call", f"{tw - tp:+.1f}"))
    return rows


# ---------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _load(m: Measured) -> str:
    return "n/a" if m.foreign_cores is None else f"{m.foreign_cores:.2f}"


def _stat_cells(m: Measured, target: float) -> list[str]:
    st = m.stats
    return [
        _ms(st.den_median_s),
        _ms(st.num_median_s),
        f"{st.diff_median_s * 1e3:+.3f}",
        f"{st.median:.3f}",
        f"{st.q1:.3f}–{st.q3:.3f}",
        f"{st.min_ratio:.3f}",
        _load(m),
        f"≤ {target:.2f}",
        verdict(st, target),
    ]


STAT_HEADERS = ["Δ ms", "ratio (median)", "IQR", "min/min", "other load", "target", "verdict"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Weighted/plain convolution overhead (DESIGN.md performance bar).",
        epilog="Example: python benchmarks/layer_overhead.py --quick",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved pairs per row (default 25; 3 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="few repeats, for smoke-testing")
    parser.add_argument(
        "--markdown", action="store_true", help="emit Markdown tables (for docs/benchmarks.md)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--only",
        default="layers,nd,breakdown",
        help="comma-separated parts to run: layers (N ≤ 3), nd (N = 4), breakdown "
        "(default: all three)",
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
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the run (default: leave torch's default); 1 is less "
        "sensitive to other jobs taking a core",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 25)
    if repeats < 1:
        parser.error(f"--repeats must be ≥ 1, got {repeats}")
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 10.0)
    if wait < 0:
        parser.error(f"--wait-quiet must be ≥ 0, got {wait}")
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - {"layers", "nd", "breakdown"}:
        parser.error(
            f"--only takes a comma-separated subset of layers,nd,breakdown; got {args.only!r}"
        )
    selected = [c for c in CASES if args.cases in f"{c.label} {c.shape_str}"]
    if not selected:
        shapes = ", ".join(f"{c.label} {c.shape_str}" for c in CASES)
        parser.error(f"--cases {args.cases!r} matches no row; rows: {shapes}")
    cfg = Settings(
        device,
        repeats,
        warmup=1 if args.quick else 3,
        min_sample_s=0.02 if args.quick else 0.1,
        wait_quiet_s=wait,
    )
    md = args.markdown
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    def progress(msg: str) -> None:
        print(f"  [{time.perf_counter() - t_start:5.0f} s] {msg}", file=sys.stderr, flush=True)

    print(
        "## Layer overhead: weighted / plain\n"
        if md
        else "ndwconv layer overhead: weighted / plain"
    )
    info = machine_info(device)
    info["repeats"] = (
        f"{repeats} interleaved pairs per row, warm-up {cfg.warmup}, "
        f"≥ {cfg.min_sample_s * 1e3:.0f} ms per sample, wait for quiet ≤ {wait:.0f} s"
    )
    for line in header_lines(info, markdown=md):
        print(line)
    print()

    t_start = time.perf_counter()
    rows, nd_rows = [], []
    if "layers" in parts:
        for case in selected:
            res = measure_case(case, cfg)
            for mode, target in (("train", TARGET_TRAIN), ("infer", TARGET_INFER)):
                rows.append(
                    [
                        case.label,
                        case.shape_str,
                        str(case.kernel),
                        mode,
                        *_stat_cells(res[mode], target),
                    ]
                )
            progress(f"{case.label} {case.shape_str} k{case.kernel}")
        if not args.cases:
            res = measure_case(CONTROL, cfg, control=True)
            for mode in ("train", "infer"):
                cells = _stat_cells(res[mode], 1.0)
                cells[-2:] = ["—", "noise floor"]
                rows.append([CONTROL.label, CONTROL.shape_str, str(CONTROL.kernel), mode, *cells])
            progress("A/A control")
        title = (
            "N ≤ 3: WeightedConv{1,2,3}d vs nn.Conv{1,2,3}d with identical weights, "
            "density Table.default(), padding k//2"
        )
        print(f"### {title}\n" if md else title)
        headers = [
            "case",
            "shape (B×C×spatial)",
            "k",
            "mode",
            "plain ms",
            "weighted ms",
            *STAT_HEADERS,
        ]
        print(format_table(headers, rows, markdown=md))
        print()

    if "nd" in parts:
        nd = measure_nd(cfg)
        progress("N = 4")
        for mode in ("infer", "train"):
            nd_rows.append([mode, *_stat_cells(nd[mode], TARGET_ND)])
        shape = "×".join(map(str, ND_SHAPE))
        title = (
            f"N = 4: WeightedConvNd(4, 8, 8, {ND_KERNEL}, padding={ND_KERNEL // 2}) on {shape} "
            f"vs the sum of its {ND_KERNEL} constituent F.conv3d calls "
            "on pre-sliced contiguous inputs"
        )
        print(f"### {title}\n" if md else title)
        headers = ["mode", "ideal Σ conv3d ms", "WeightedConvNd(4) ms", *STAT_HEADERS]
        print(format_table(headers, nd_rows, markdown=md))
        print()

    if "breakdown" in parts:
        bd = breakdown(device, args.quick)
        progress("breakdown")
        title = (
            "Per-call overhead breakdown (µs per call, best of 7–9, 1 thread; "
            "input 1×64×4×4, 64→64 k3)"
        )
        print(f"### {title}\n" if md else title)
        print(format_table(["piece", "µs"], bd, markdown=md))
        print()

    all_rows = [r for r in rows + nd_rows if r[-1] != "noise floor"]
    n_pass = sum(r[-1] == "PASS" for r in all_rows)
    load_now = machine_info()["load average (1/5/15 min)"]
    summary = (
        f"{n_pass} of {len(all_rows)} rows PASS; wall time "
        f"{time.perf_counter() - t_start:.0f} s; load average now {load_now}"
    )
    print(f"_{summary}_" if md else summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
