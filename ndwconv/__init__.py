"""ndwconv: N-dimensional weighted convolution for PyTorch.

A weighted convolution computes ``conv(x, W ⊙ Φ) + b``: the kernel ``W`` is scaled
element-wise by a spatial density ``Φ`` that weights neighbours by their position
(Cammarasana & Patanè, "Optimal Weighted Convolution for Classification and Denoising",
arXiv 2505.24558).

>>> import torch, ndwconv as nw
>>> conv = nw.WeightedConv2d(3, 8, 3, padding=1, density=nw.Table([0.7]))
>>> conv(torch.randn(1, 3, 16, 16)).shape
torch.Size([1, 8, 16, 16])
"""

from importlib.metadata import PackageNotFoundError, version

from . import functional
from .convert import (
    ConversionReport,
    InferenceModel,
    Replacement,
    convert,
    fold,
    for_inference,
    freeze,
    fuse_batchnorm,
    init_from_density,
    param_groups,
    weighted_layers,
)
from .density import (
    Density,
    DensityFile,
    FixedPhi,
    Gaussian,
    Learned,
    LearnedPhi,
    Ones,
    Table,
    as_density,
    load_densities,
    register_density,
    registered_families,
    save_densities,
)
from .modules import WeightedConv1d, WeightedConv2d, WeightedConv3d, WeightedConvNd, is_weighted

try:
    __version__ = version("ndwconv")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConversionReport",
    "Density",
    "DensityFile",
    "FixedPhi",
    "Gaussian",
    "InferenceModel",
    "Learned",
    "LearnedPhi",
    "Ones",
    "Replacement",
    "Table",
    "WeightedConv1d",
    "WeightedConv2d",
    "WeightedConv3d",
    "WeightedConvNd",
    "__version__",
    "as_density",
    "convert",
    "fold",
    "for_inference",
    "freeze",
    "functional",
    "fuse_batchnorm",
    "init_from_density",
    "is_weighted",
    "load_densities",
    "param_groups",
    "register_density",
    "registered_families",
    "save_densities",
    "weighted_layers",
]
