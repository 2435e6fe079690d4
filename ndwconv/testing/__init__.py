"""Property-based testing of convolution kernels, for ndwconv and for its users.

Three pieces, usable separately:

* **A float64 reference** in NumPy for any number of dimensions: ``reference_conv`` (the
  forward cross-correlation with PyTorch's stride/padding/dilation/groups semantics and
  every padding mode) and ``reference_conv_transpose`` (its exact adjoint). Padding uses
  ``np.pad`` and the sums run tap by tap, so nothing depends on PyTorch's convolution
  kernels. PyTorch's convolution is a cross-correlation: for one channel, stride 1 and an
  odd kernel padded by ``k // 2`` it equals ``scipy.ndimage.correlate(x, w, mode=...)``
  with the modes of ``SCIPY_MODES`` (``zeros → 'constant'``, ``reflect → 'mirror'``,
  ``replicate → 'nearest'``, ``circular → 'wrap'``).
* **Hypothesis strategies** of always-valid configurations: ``conv_cases`` (ndim,
  channels, groups, anisotropic kernels, stride, padding incl. ``"same"`` and every mode,
  dilation, bias, density, and seeded input/weights), ``densities`` (every built-in family
  plus those added with ``register_density_strategy``) and ``signals`` (finite arrays).
  They shrink towards small cases: one dimension, one channel, kernel 1, no groups.
* **Property checks**: functions ``check_*(factory, case)`` that each state one property
  in their docstring and raise ``AssertionError`` with a readable message when it fails,
  ``assert_matches_reference(layer, case)``, and ``check_layer(factory, ndim)`` that runs
  the whole battery under hypothesis and returns a ``LayerReport`` naming the shrunk
  counter-example of every property that failed.

A *factory* builds a layer from ``case.layer_kwargs`` — the arguments of ``nn.ConvNd``
plus ``density=`` (leave ``density`` out with ``density=False``); a factory that takes an
``ndim`` argument (like ``WeightedConvNd``) gets ``ndim=case.ndim`` too. The checks set
the layer's ``weight`` and ``bias`` to the case's seeded values.

Modules: ``reference`` (the float64 reference), ``cases`` (``ConvCase``), ``strategies``,
``properties`` (the ``check_*`` functions) and ``battery`` (``PROPERTIES``,
``check_layer``).

Hypothesis settings: the checks use the active hypothesis profile's ``max_examples``
(100 by default) with the deadline off (a kernel's first call in torch is slow) and no
example database, unless ``check_layer(..., max_examples=...)`` says otherwise. For a long
run, register and load a larger profile (see docs/testing.md).

Example:
    >>> import ndwconv as nw
    >>> report = check_layer(nw.WeightedConvNd, ndim=2, max_examples=5,
    ...                      properties=["matches_reference", "linear_in_input"])
    >>> report.ok
    True
"""

from .battery import PROPERTIES, LayerReport, PropertyResult, check_layer
from .battery import Property as Property
from .battery import _merge_options as _merge_options
from .cases import ConvCase
from .properties import Factory as Factory
from .properties import NotApplicable as NotApplicable
from .properties import (
    assert_matches_reference,
    check_adjointness,
    check_dtype_device,
    check_flip_symmetry,
    check_fold_equivalence,
    check_gradcheck,
    check_linear_in_input,
    check_linear_in_weight,
    check_matches_reference,
    check_ones_equals_conv,
    check_state_dict_round_trip,
    check_translation_equivariance,
    make_layer,
)
from .reference import NUMPY_PAD_MODES, SCIPY_MODES, reference_conv, reference_conv_transpose
from .strategies import conv_cases, densities, register_density_strategy, signals

__all__ = [
    "NUMPY_PAD_MODES",
    "PROPERTIES",
    "SCIPY_MODES",
    "ConvCase",
    "LayerReport",
    "PropertyResult",
    "assert_matches_reference",
    "check_adjointness",
    "check_dtype_device",
    "check_flip_symmetry",
    "check_fold_equivalence",
    "check_gradcheck",
    "check_layer",
    "check_linear_in_input",
    "check_linear_in_weight",
    "check_matches_reference",
    "check_ones_equals_conv",
    "check_state_dict_round_trip",
    "check_translation_equivariance",
    "conv_cases",
    "densities",
    "make_layer",
    "reference_conv",
    "reference_conv_transpose",
    "register_density_strategy",
    "signals",
]
