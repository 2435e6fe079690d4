"""Spatial densities Φ that scale a convolution kernel element-wise.

A weighted convolution computes ``conv(x, W ⊙ Φ)`` (Cammarasana & Patanè, "Optimal
Weighted Convolution for Classification and Denoising", arXiv 2505.24558). Φ has the
kernel's spatial shape and weights each tap by its position relative to the centre.

Convention (the one of the authors' reference layer): for an axis of odd size
``k = 2m + 1`` a profile is given by ``m`` values, outermost first. ``[d1, …, dm]``
means the axis profile ``[d1, …, dm, 1, dm, …, d1]``: centre fixed to 1, symmetric.
The N-D density is the outer product of the per-axis profiles,
``Φ[i1, …, iN] = α¹[i1] · … · αᴺ[iN]``.

A *family* (``Table``, ``Gaussian``, ``Learned``, ``Ones`` or a user subclass of
``Density``) is a small immutable description that builds Φ for any kernel shape and
round-trips through a plain spec (a string or a JSON-safe dict). A layer *binds* the
family to its kernel shape, which gives an ``nn.Module`` that returns Φ: a fixed buffer
for fixed families, trainable parameters for ``Learned``.

Modules, lowest first: ``profiles`` (per-axis profile arithmetic), ``spec`` (the text of
specs: names, numbers, physical units, JSON), ``bound`` (the bound modules ``FixedPhi`` and
``LearnedPhi``), ``base`` (``Density``, the registry, ``as_density``) and ``families``
(the built-in families); ``file`` reads and writes density files (what a density
search found, shared or per layer).

Example:
    >>> d = as_density("gaussian:1.5mm")     # σ in mm: needs the voxel spacing
    >>> d.unit
    'mm'
    >>> d.resolve((1.0, 1.0, 3.0)).build((1, 1, 3))[0, 0]
    tensor([0.1353, 1.0000, 0.1353], dtype=torch.float64)
"""

from .base import Density, DensityLike, as_density, register_density, registered_families
from .bound import FixedPhi, LearnedPhi
from .families import Gaussian, Learned, Ones, Table
from .file import DensityFile, is_density_file, load_densities, save_densities
from .profiles import outer
from .spec import UNITS

__all__ = [
    "UNITS",
    "Density",
    "DensityFile",
    "DensityLike",
    "FixedPhi",
    "Gaussian",
    "Learned",
    "LearnedPhi",
    "Ones",
    "Table",
    "as_density",
    "is_density_file",
    "load_densities",
    "outer",
    "register_density",
    "registered_families",
    "save_densities",
]
