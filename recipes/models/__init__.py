"""Denoising networks for the recipes, built from plain ``torch.nn`` layers.

Each model is made weighted with ``ndwconv.convert``; ``odd_kernel_convs`` selects the
layers a ``Table`` density fits (odd kernels, not pointwise), e.g. to leave NAFNet's 2×2
down-sampling convolutions plain::

    net = ndwconv.convert(build_model("nafnet"), "default", where=odd_kernel_convs)

``make_weighted`` does that and also gives a density to the N-D layers that models of 4 or
more dimensions are built from (``WeightedConvNd`` with the ``ones`` density, since PyTorch
has no plain 4-D convolution).

* ``DnCNN`` — Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP 2017; any dimension.
* ``NAFNet`` — Chen et al., "Simple Baselines for Image Restoration", ECCV 2022; 2-D.
* ``mnist1d_cnn``, ``fcn``, ``resnet_ts`` — series classifiers (``series.py``): the MNIST-1D
  benchmark's CNN and the FCN and ResNet of Wang et al. (2017); any dimension.
* ``vgg11_bn`` … ``vgg19_bn`` — VGG with BatchNorm and the CIFAR head (``VGG``); 1-D to 3-D.
* ``resnet18``, ``resnet34``, ``resnet50`` — ResNet with the CIFAR stem (``ResNet``); any
  dimension.

Example:
    >>> net = build_model("dncnn", ndim=1, depth=3, width=4)
    >>> count_parameters(net)  # 1·4·3 + 4, 4·4·3 + BatchNorm 2·4, 4·1·3 + 1
    85
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

import ndwconv
from ndwconv.density import DensityFile, Ones, is_density_file, load_densities

from .dncnn import DnCNN
from .layers import BatchNormNd, batch_norm, conv_type
from .nafnet import NAFNet
from .receptive import receptive_radius
from .resnet import ResNet, resnet18, resnet34, resnet50
from .series import FCN, MNIST1DCNN, ResNetTS
from .vgg import VGG, vgg11_bn, vgg13_bn, vgg16_bn, vgg19_bn

__all__ = [
    "FCN",
    "MNIST1DCNN",
    "MODELS",
    "VGG",
    "BatchNormNd",
    "DnCNN",
    "NAFNet",
    "ResNet",
    "ResNetTS",
    "batch_norm",
    "build_model",
    "conv_type",
    "count_parameters",
    "density_description",
    "make_weighted",
    "odd_kernel_convs",
    "read_density",
    "receptive_radius",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "dncnn": DnCNN,
    "nafnet": NAFNet,
    "vgg11_bn": vgg11_bn,
    "vgg13_bn": vgg13_bn,
    "vgg16_bn": vgg16_bn,
    "vgg19_bn": vgg19_bn,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    # time-series classifiers (recipes/models/series.py)
    "mnist1d_cnn": MNIST1DCNN,
    "fcn": FCN,
    "resnet_ts": ResNetTS,
}
"""The recipe models by name (what ``build_model`` accepts)."""


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a recipe model by name.

    Args:
        name: a key of ``MODELS`` (case-insensitive), e.g. ``"dncnn"``.
        **kwargs: the model's constructor arguments.

    Returns:
        The model, with PyTorch's default initialisation.

    Raises:
        ValueError: on an unknown name (the message lists the known ones) or an invalid
            argument value (the message names the argument).
        TypeError: on a keyword the model does not take (the message names it).
    """
    if not isinstance(name, str) or name.lower() not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    model_class = MODELS[name.lower()]
    accepted = [p for p in inspect.signature(model_class).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"{model_class.__name__} got unexpected argument(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted)}"
        )
    return model_class(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter elements (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def odd_kernel_convs(name: str, module: nn.Module) -> bool:
    """``where=`` selector for ``ndwconv.convert``: convolutions a ``Table`` density fits.

    True when every kernel size is odd and at least one is > 1 (so 3×3, 5×5, 3×3×3 and
    anisotropic 1×3 kernels qualify; pointwise 1×1 and even 2×2 kernels do not). ``name``
    is unused: the choice depends on the layer only.

    Example:
        >>> [odd_kernel_convs("", nn.Conv2d(8, 8, k)) for k in (3, (1, 3), 1, 2)]
        [True, True, False, False]
    """
    kernel_size = getattr(module, "kernel_size", None)
    if kernel_size is None:
        return False
    sizes = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,)
    return all(k % 2 == 1 for k in sizes) and any(k > 1 for k in sizes)


def read_density(density: Any) -> Any:
    """What a ``[weighted] density`` names, read and checked: a ``Density`` for a spec, a
    ``DensityFile`` for a density file (its path, or its document as a checkpoint's
    description embeds it; its densities must be in samples/pixels/voxels, so
    ``getattr(result, "unit", None)`` is the unit of either).

    Raises:
        ValueError, TypeError: a bad spec, a file that is not a density file, or a file
            holding a density in physical units.
    """
    if isinstance(density, Mapping) and "format" in density:
        found = DensityFile.from_dict(density)
    elif is_density_file(density):
        found = density if isinstance(density, DensityFile) else load_densities(density)
    else:
        return ndwconv.as_density(density)
    for name, family in [("shared", found.shared), *found.layers.items()]:
        if family is not None and family.unit is not None:
            raise ValueError(
                f"density file {str(found.path or '')!r}: {name} density {family} is in "
                f"{family.unit}; density files hold densities in samples/pixels/voxels"
            )
    return found


def density_description(density: Any) -> Any:
    """``density`` as a checkpoint's description records it: a density file's path is
    replaced by the file's document, so that the checkpoint rebuilds without the file.

    Example:
        >>> density_description("table:0.7")
        'table:0.7'
    """
    if isinstance(density, (str, os.PathLike)) and is_density_file(density):
        return load_densities(density).to_dict()
    return density


def make_weighted(model: nn.Module, density: Any) -> nn.Module:
    """Make a recipe model weighted in place: every layer ``odd_kernel_convs`` selects.

    The density must describe each of them (``convert(..., strict=True)``): a comparison
    whose weighted arm silently kept some layers plain would not compare what it says.

    Plain ``nn.Conv1d/2d/3d`` layers are converted by ``ndwconv.convert``; the
    ``WeightedConvNd`` layers of 4-D (and higher) models, which hold the ``ones`` density
    until then, get ``density``. Layers that already have another density are left alone.

    Args:
        model: a recipe model (e.g. from ``build_model``).
        density: anything ``ndwconv.as_density`` takes, or a density file (a path to its
            JSON, a ``DensityFile`` or its document, as ``DensityFile.to_dict`` gives): each
            layer gets its own density there, else the shared one.

    Returns:
        ``model`` itself.

    Example:
        >>> net = make_weighted(build_model("dncnn", ndim=4, depth=3, width=2), "table:0.5")
        >>> sorted({str(layer.density) for _, layer in ndwconv.weighted_layers(net)})
        ['table:0.5']
    """
    if isinstance(density, Mapping) and "format" in density:  # a density file's document
        density = DensityFile.from_dict(density)
    if is_density_file(density):
        found = density if isinstance(density, DensityFile) else load_densities(density)
        _, report = ndwconv.convert(
            model, found, where=odd_kernel_convs, inplace=True, strict=True, return_report=True
        )
        missing = [r.name for r in report.skipped if r.reason == "density callable returned None"]
        if missing:
            raise ValueError(
                f"density file {str(found.path or '')!r} has no shared density and none for "
                f"layer(s) {', '.join(map(repr, missing))}"
            )
        choose = found
    else:
        family = ndwconv.as_density(density)
        ndwconv.convert(model, family, where=odd_kernel_convs, inplace=True, strict=True)
        choose = lambda name, layer: family  # noqa: E731
    for name, layer in ndwconv.weighted_layers(model):
        if isinstance(layer.density, Ones) and odd_kernel_convs(name, layer):
            chosen = choose(name, layer)
            if chosen is None:
                raise ValueError(f"the density file gives layer {name!r} no density")
            layer.set_density(chosen)
    return model
