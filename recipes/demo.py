"""``ndwconv demo``: weighted vs plain convolution on image denoising, in miniature.

The DnCNN denoising experiment of Cammarasana & Patanè ("Optimal Weighted Convolution for
Classification and Denoising", arXiv 2505.24558) made small enough for a laptop CPU: a
small residual denoiser built from plain ``nn.Conv2d`` and its weighted twin
(``ndwconv.convert``, same initial weights) are trained side by side on the same noisy
patches, in the same order, for the same number of Adam steps, then compared by PSNR on
held-out images.

Data are the greyscale photographs that ship inside scikit-image (nothing is downloaded):

* training: ``TRAIN_IMAGES`` (colour ones converted to grey, ITU-R BT.709 luma);
* validation (held out, never seen in training): ``VALIDATION_IMAGES``.

Noise is additive white Gaussian noise of standard deviation ``sigma`` on the 0–255
scale. Training noise and patch positions come from a ``torch.Generator`` seeded with
``seed``; the noise on each validation image is fixed by the image's name, so every run
(whatever its seed) is scored on the very same noisy images. PSNR is measured on the
0–255 scale against the clean 8-bit image, with estimates clipped to [0, 255].

Example:
    >>> results = run_demo(steps=3, patch=24, progress=False)
    >>> sorted(results["psnr"])
    ['noisy', 'plain', 'weighted']
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

import ndwconv
from ndwconv.density import DensityLike

__all__ = [
    "TRAIN_IMAGES",
    "VALIDATION_IMAGES",
    "DnCNN",
    "command",
    "format_results",
    "load_images",
    "psnr",
    "run_demo",
]

TRAIN_IMAGES = (
    "brick",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "moon",
    "page",
    "rocket",
    "text",
)
"""scikit-image sample images the denoisers are trained on."""

VALIDATION_IMAGES = ("camera", "astronaut")
"""Held-out scikit-image sample images the denoisers are scored on (512×512 each)."""

DEPTH = 7
WIDTH = 32
LEARNING_RATE = 1e-3
MIN_PATCH = 8
DEFAULT_STEPS = 1000  # about two minutes on a 2-core CPU
DEFAULT_SIGMA = 25.0
DEFAULT_PATCH = 40
DEFAULT_BATCH = 16
RESULTS_FORMAT = "ndwconv.demo/1"


class DnCNN(nn.Module):
    """A small DnCNN (Zhang et al., 2017): residual learning of the noise.

    ``conv+ReLU``, ``depth - 2`` × ``conv+BatchNorm+ReLU``, ``conv``, all 3×3 with zero
    padding; the body predicts the noise and the forward pass subtracts it. Built from
    plain ``nn.Conv2d`` so that ``ndwconv.convert`` can make it weighted. It is 2-D
    because the demo's data are 2-D images.

    Args:
        channels: image channels (1 for greyscale).
        depth: number of convolutions, ≥ 2.
        width: feature channels of the hidden convolutions.

    Shapes:
        ``(B, channels, H, W)`` → ``(B, channels, H, W)``, the denoised image.
    """

    def __init__(self, channels: int = 1, depth: int = DEPTH, width: int = WIDTH):
        super().__init__()
        if depth < 2:
            raise ValueError(f"DnCNN depth must be ≥ 2, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, noisy: Tensor) -> Tensor:
        return noisy - self.body(noisy)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


def load_images(names: Sequence[str]) -> list[np.ndarray]:
    """scikit-image's bundled sample images as greyscale 8-bit arrays.

    Args:
        names: functions of ``skimage.data`` (e.g. ``"camera"``); colour images are
            converted to grey with ``skimage.color.rgb2gray`` and rounded to 8 bits.

    Returns:
        Read-only ``uint8`` arrays of shape ``(H, W)``, one per name.

    Raises:
        ImportError: if scikit-image is not installed.
        ValueError: if a name is not one of scikit-image's bundled images.
    """
    return [_load_grey(name) for name in names]


@functools.cache
def _load_grey(name: str) -> np.ndarray:
    try:
        import skimage.data
        from skimage.color import rgb2gray
    except ImportError as err:
        raise ImportError(
            "the demo's images ship inside scikit-image, which is not installed: "
            "pip install 'ndwconv[recipes]'"
        ) from err
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError(f"{name!r} is not an image of skimage.data")
    try:
        image = np.asarray(loader())
    except Exception as err:  # e.g. an image that scikit-image would have to download
        raise ValueError(
            f"cannot read scikit-image's sample image {name!r} offline: {err}"
        ) from err
    if image.ndim == 3:
        image = np.round(rgb2gray(image[..., :3]) * 255)
    if image.ndim != 2:
        raise ValueError(f"scikit-image's {name!r} is not a 2-D image: shape {image.shape}")
    image = image.astype(np.uint8)
    image.flags.writeable = False
    return image


def _to_unit(image: np.ndarray) -> Tensor:
    """``uint8 (H, W)`` → ``float32 (H, W)`` in [0, 1]."""
    return torch.from_numpy(image.astype(np.float32) / 255.0)


def _sample_batch(
    images: Sequence[Tensor], patch: int, batch: int, sigma: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random clean patches (uniform image, position and dihedral flip) and their noisy copy.

    Returns:
        ``(clean, noisy)``, each ``(batch, 1, patch, patch)`` float32 on the CPU.
    """
    patches = []
    for _ in range(batch):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        h, w = image.shape
        y = int(torch.randint(h - patch + 1, (1,), generator=generator))
        x = int(torch.randint(w - patch + 1, (1,), generator=generator))
        flip = int(torch.randint(8, (1,), generator=generator))
        crop = image[y : y + patch, x : x + patch].rot90(flip % 4)
        patches.append(crop.flip(0) if flip >= 4 else crop)
    clean = torch.stack(patches)[:, None]
    noise = torch.randn(clean.shape, generator=generator) * (sigma / 255.0)
    return clean, clean + noise


def _validation_noise(name: str, shape: tuple[int, ...], sigma: float) -> Tensor:
    """The fixed noise of one validation image: seeded by the image's name only."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(shape, generator=generator) * (sigma / 255.0)


# ---------------------------------------------------------------------------------------
# Metrics and training
# ---------------------------------------------------------------------------------------


def psnr(estimate: Tensor, clean: np.ndarray) -> float:
    """PSNR in dB on the 0–255 scale of an estimate against the clean 8-bit image.

    Args:
        estimate: ``(H, W)`` image on the 0–1 scale; it is clipped to [0, 1] first.
        clean: ``(H, W)`` ``uint8`` reference.
    """
    est = estimate.detach().to("cpu", torch.float64).clamp(0.0, 1.0) * 255.0
    mse = torch.mean((est - torch.from_numpy(clean.astype(np.float64))) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _resolve_device(device: str) -> torch.device:
    """``"auto"`` (CUDA, else MPS, else CPU) or a torch device string that is available."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    return dev


def _check_args(steps: int, sigma: float, seed: int, patch: int, batch: int, smallest: int) -> None:
    for name, value, low in (("steps", steps, 1), ("seed", seed, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int ≥ {low}, got {value!r}")
    if isinstance(patch, bool) or not isinstance(patch, int) or not MIN_PATCH <= patch <= smallest:
        raise ValueError(
            f"patch must be an int in [{MIN_PATCH}, {smallest}] (the smallest training image "
            f"side), got {patch!r}"
        )
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma < math.inf:
        raise ValueError(f"sigma must be a finite number > 0 (0–255 scale), got {sigma!r}")


def run_demo(
    *,
    steps: int = DEFAULT_STEPS,
    sigma: float = DEFAULT_SIGMA,
    density: DensityLike = "default",
    seed: int = 0,
    patch: int = DEFAULT_PATCH,
    batch: int = DEFAULT_BATCH,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train a plain and a weighted DnCNN side by side and score both on held-out images.

    Both networks start from the same weights (the weighted one is ``ndwconv.convert`` of
    the plain one) and see the same batches: each step draws one batch of ``batch``
    random ``patch``×``patch`` training patches with fresh noise and takes one Adam step
    on each network (learning rate ``LEARNING_RATE`` with cosine decay to 0).

    Args:
        steps: Adam steps per network.
        sigma: noise standard deviation on the 0–255 scale.
        density: density of the weighted network (a spec string such as ``"default"`` or
            ``"gaussian:1.0"``, or anything ``ndwconv.as_density`` takes).
        seed: seeds the initial weights, the patch positions and the training noise.
        patch: side of the square training patches, in pixels.
        batch: patches per step.
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
        progress: show a progress bar on stderr.

    Returns:
        A JSON-safe dict: ``config``, ``data`` (image names), ``psnr`` (mean dB over the
        validation images for ``noisy``, ``plain`` and ``weighted``), ``per_image`` (the
        same per image), ``weighted_layers`` (how many convolutions were converted),
        ``time_s`` (training time of each network, wall time of the whole run) and
        ``versions``.

    Raises:
        ValueError: on a bad argument (including an unknown or unfitting density).
        ImportError: if scikit-image is not installed.
    """
    start = time.perf_counter()
    family = ndwconv.as_density(density)
    dev = _resolve_device(device)
    train = [_to_unit(image) for image in load_images(TRAIN_IMAGES)]
    _check_args(steps, sigma, seed, patch, batch, min(min(t.shape) for t in train))

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        plain = DnCNN().to(dev)
    weighted, report = ndwconv.convert(plain, family, return_report=True)
    models = {"plain": plain, "weighted": weighted}
    optimizers = {k: torch.optim.Adam(m.parameters(), lr=LEARNING_RATE) for k, m in models.items()}
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, steps) for o in optimizers.values()]
    train_time = dict.fromkeys(models, 0.0)

    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc="training plain + weighted", unit="step", disable=not progress)
    for step in bar:
        clean, noisy = (t.to(dev) for t in _sample_batch(train, patch, batch, sigma, generator))
        losses = {}
        for key, model in models.items():
            tic = time.perf_counter()
            optimizers[key].zero_grad(set_to_none=True)
            loss = F.mse_loss(model(noisy), clean)
            loss.backward()
            optimizers[key].step()
            losses[key] = loss.item()  # also waits for an asynchronous device
            train_time[key] += time.perf_counter() - tic
        for schedule in schedules:
            schedule.step()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(
                {k: f"{-10 * math.log10(max(v, 1e-12)):.1f}dB" for k, v in losses.items()}
            )
    bar.close()

    per_image = _evaluate(models, sigma, dev)
    methods = ("noisy", *models)
    mean = {m: float(np.mean([scores[m] for scores in per_image.values()])) for m in methods}
    return {
        "format": RESULTS_FORMAT,
        "task": "denoising: additive white Gaussian noise, DnCNN-style residual network",
        "config": {
            "steps": steps,
            "sigma": float(sigma),
            "density": str(family),
            "seed": seed,
            "patch": patch,
            "batch": batch,
            "device": str(dev),
            "depth": DEPTH,
            "width": WIDTH,
            "optimizer": f"Adam, lr {LEARNING_RATE:g} with cosine decay",
        },
        "data": {"train": list(TRAIN_IMAGES), "validation": list(VALIDATION_IMAGES)},
        "psnr_definition": "dB on the 0-255 scale vs the clean 8-bit image, estimate clipped",
        "psnr": mean,
        "per_image": per_image,
        "weighted_layers": len(report.replaced),
        "time_s": {
            **{f"train_{k}": round(v, 3) for k, v in train_time.items()},
            "wall": round(time.perf_counter() - start, 3),
        },
        "versions": {"ndwconv": ndwconv.__version__, "torch": torch.__version__},
    }


def _evaluate(models: dict[str, nn.Module], sigma: float, dev: torch.device) -> dict[str, dict]:
    """PSNR of the noisy input and of each model's estimate, per validation image."""
    for model in models.values():
        model.eval()
    scores: dict[str, dict] = {}
    with torch.inference_mode():
        for name, image in zip(VALIDATION_IMAGES, load_images(VALIDATION_IMAGES), strict=True):
            clean = _to_unit(image)
            noisy = clean + _validation_noise(name, tuple(clean.shape), sigma)
            scores[name] = {"noisy": psnr(noisy, image)}
            for key, model in models.items():
                scores[name][key] = psnr(model(noisy.to(dev)[None, None])[0, 0], image)
    return scores


# ---------------------------------------------------------------------------------------
# Reporting and the command line
# ---------------------------------------------------------------------------------------


def format_results(results: dict[str, Any]) -> str:
    """A plain-text table of ``run_demo``'s results."""
    cfg = results["config"]
    methods = ("noisy", "plain", "weighted")
    rows = [("image", *methods)]
    rows += [(name, *(f"{s[m]:.2f}" for m in methods)) for name, s in results["per_image"].items()]
    rows.append(("mean", *(f"{results['psnr'][m]:.2f}" for m in methods)))
    times = results["time_s"]
    rows.append(
        ("train time (s)", "-", f"{times['train_plain']:.1f}", f"{times['train_weighted']:.1f}")
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    gain = results["psnr"]["weighted"] - results["psnr"]["plain"]
    return "\n".join(
        [
            f"ndwconv demo: denoising, Gaussian noise σ={cfg['sigma']:g} (0–255 scale)",
            f"PSNR in dB on the 0–255 scale vs the clean 8-bit image, held-out images "
            f"({', '.join(results['data']['validation'])})",
            f"seed {cfg['seed']} · {cfg['steps']} steps · batch {cfg['batch']} × "
            f"{cfg['patch']}×{cfg['patch']} patches · {cfg['optimizer']} · density "
            f"{cfg['density']} on {results['weighted_layers']} layers · {cfg['device']}",
            "",
            line(rows[0]),
            line(["-" * w for w in widths]),
            *(line(row) for row in rows[1:]),
            "",
            f"weighted - plain: {gain:+.2f} dB · wall time {times['wall']:.1f} s",
        ]
    )


def command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ndwconv demo`` (entry point of the ``ndwconv.commands`` group)."""
    sub = subparsers.add_parser(
        "demo",
        help="train a weighted and a plain denoiser on bundled images, compare their PSNR",
        description=(
            "Train a small DnCNN-style denoiser and its weighted twin (same initial\n"
            "weights, same batches, same steps) on the photographs bundled with\n"
            "scikit-image, with additive Gaussian noise; print the PSNR of the noisy\n"
            "input and of both networks on held-out images."
        ),
        epilog=(
            "examples:\n"
            "  ndwconv demo\n"
            "  ndwconv demo --steps 2000 --density gaussian:1.0 --out runs/demo"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument(
        "--steps",
        type=int,
        metavar="N",
        default=DEFAULT_STEPS,
        help="Adam steps per network (%(default)s)",
    )
    sub.add_argument(
        "--sigma",
        type=float,
        metavar="SIGMA",
        default=DEFAULT_SIGMA,
        help="noise std on the 0-255 scale (%(default)s)",
    )
    sub.add_argument(
        "--density",
        default="default",
        metavar="SPEC",
        help="density of the weighted network, e.g. default, table:0.5, gaussian:1.0 "
        "(see 'ndwconv info'; %(default)s)",
    )
    sub.add_argument(
        "--seed", type=int, metavar="N", default=0, help="seed of init, data, noise (%(default)s)"
    )
    sub.add_argument(
        "--patch",
        type=int,
        metavar="PX",
        default=DEFAULT_PATCH,
        help="training patch side (%(default)s)",
    )
    sub.add_argument(
        "--batch",
        type=int,
        metavar="N",
        default=DEFAULT_BATCH,
        help="patches per step (%(default)s)",
    )
    sub.add_argument(
        "--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (%(default)s)"
    )
    sub.add_argument("--out", type=Path, metavar="DIR", help="directory to write results.json into")
    sub.add_argument("--quiet", action="store_true", help="no progress bar, only the table")
    sub.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    results = run_demo(
        steps=args.steps,
        sigma=args.sigma,
        density=args.density,
        seed=args.seed,
        patch=args.patch,
        batch=args.batch,
        device=args.device,
        progress=not args.quiet,
    )
    print(format_results(results))
    if args.out is not None:
        path = _write_json(args.out / "results.json", results)
        if not args.quiet:
            print(f"results written to {path}")
    return 0


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
