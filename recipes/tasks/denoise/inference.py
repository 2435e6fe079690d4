"""Whole-image (or whole-volume) inference for evaluation, tile by tile when asked."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from ndwconv.adapters.receptive import receptive_radius
from ndwconv.adapters.tiling import sliding_window

from .metrics import describe_value

__all__ = ["PERCENTILES", "denoise_image"]

PERCENTILES = (0.5, 99.5)
"""The percentiles of its input that ``ndwconv denoise`` maps to 0 and 1 before the network."""


def denoise_image(
    model: nn.Module,
    noisy: Tensor,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Run ``model`` on one image, whole or in overlapping tiles, without gradients.

    With ``tile`` set and the image larger than ``tile`` along some axis, the image is cut
    into ``tile``-sided tiles every ``tile - overlap`` pixels, the last tile of each axis
    shifted inward to end at the border. Each tile's output loses ``overlap // 2`` pixels
    on the sides it shares with other tiles (where the cut, not the image, bordered the
    input); the kept parts, which cover the image, are averaged with constant weights. So
    for a model whose receptive-field radius is at most ``overlap // 2`` the tiled result
    equals the untiled one. Works for any number of spatial axes: the tiles are those of
    ``ndwconv.adapters.tiling.sliding_window`` (constant blend, ``margin = overlap // 2``).

    When the tiles cut an axis along which ``overlap // 2`` is less than the model's
    receptive radius (``ndwconv.recipes.models.receptive_radius``, an upper bound), a
    ``UserWarning`` names the radius: the tiled result then differs from the untiled one.

    The model must already be on ``device`` and in the mode wanted (call ``.eval()`` for
    inference with batch normalisation); this function changes neither.

    Args:
        model: maps ``(1, C, *spatial)`` to ``(1, C_out, *spatial)``.
        noisy: ``(C, H, W)`` image (or ``(C, *spatial)``), on any device.
        tile: side of the tiles; ``None`` processes the whole image at once.
        overlap: overlap of neighbouring tiles, in pixels.
        device: where the model runs.

    Returns:
        ``(C_out, H, W)`` output on the CPU.

    Raises:
        ValueError: if ``noisy`` has fewer than 2 dimensions, ``tile`` is not > ``overlap``,
            ``overlap`` is negative, or the model changes the spatial size.

    Example:
        >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> image = torch.rand(1, 70, 53)
        >>> whole = denoise_image(net, image)
        >>> torch.allclose(denoise_image(net, image, tile=32, overlap=4), whole, atol=1e-6)
        True
    """
    if not isinstance(noisy, Tensor) or noisy.ndim < 2:
        raise ValueError(f"noisy must be a (C, H, W) tensor, got {describe_value(noisy)}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be an int ≥ 0, got {overlap!r}")
    if tile is not None and (
        isinstance(tile, bool) or not isinstance(tile, int) or tile <= overlap
    ):
        raise ValueError(f"tile must be None or an int > overlap ({overlap}), got {tile!r}")
    spatial = tuple(noisy.shape[1:])

    def run(x: Tensor) -> Tensor:
        out = model(x.to(device)[None])[0]
        if tuple(out.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"the model must keep the spatial size: input {tuple(x.shape[1:])}, "
                f"output {tuple(out.shape[1:])}"
            )
        return out.to("cpu")

    if tile is None or all(size <= tile for size in spatial):
        with torch.no_grad():
            return run(noisy)
    # One tiler for every N: ndwconv.adapters.tiling, constant blend, margin overlap // 2.
    tiles = tuple(min(tile, size) for size in spatial)
    overlaps = tuple(overlap if t < size else 0 for t, size in zip(tiles, spatial, strict=True))
    _warn_if_too_small(model, spatial, tiles, tile, overlap)
    result = sliding_window(
        lambda batch: model(batch),
        noisy.detach().to("cpu"),
        tiles,
        overlap=overlaps,
        blend="constant",
        batch_size=1,
        device=device,
        progress=False,
        margin=tuple(ov // 2 for ov in overlaps),
    )
    return torch.from_numpy(result)


def _warn_if_too_small(
    model: nn.Module, spatial: tuple[int, ...], tiles: tuple[int, ...], tile: int, overlap: int
) -> None:
    """Warn when the tiles drop fewer pixels at inner faces than the receptive radius."""
    if not isinstance(model, nn.Module):
        return
    radius = receptive_radius(model, len(spatial))
    cut = [axis for axis, (t, n) in enumerate(zip(tiles, spatial, strict=True)) if t < n]
    if radius is None:
        warnings.warn(
            f"the model pools over its whole input, so tiles of {tile} give another result "
            "than the whole image; score whole images (tile None)",
            UserWarning,
            stacklevel=3,
        )
        return
    short = [axis for axis in cut if overlap // 2 < radius[axis]]
    if short:
        r = max(radius[axis] for axis in short)
        warnings.warn(
            f"the model's receptive radius {r} exceeds the {overlap // 2} pixels dropped at "
            f"inner tile faces (tile {tile}, overlap {overlap}), so the tiled result differs "
            f"from the whole-image one; use an overlap of {2 * r} or more",
            UserWarning,
            stacklevel=3,
        )
