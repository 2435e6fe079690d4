"""Density search for any task: DIRECT-L, a line search, and learn-then-freeze.

The paper's method optimises the density separately from the kernel weights; this
package does it for any registered task, always on a validation split held out of the
training data (``tune.split = "validation"``), so the test split a report is scored on
never steers the search. See ``run`` for the methods and ``space`` for what is searched.

Example:
    >>> from ndwconv.recipes.tune import METHODS
    >>> METHODS
    ('direct-l', 'line', 'learn-freeze')
"""

from .run import METHODS, TuneResult, evaluation_config, plot_search, settings, tune
from .search import EvaluationLog, Found, direct_l, line_search
from .space import REFERENCE_BOUNDS, SearchSpace

__all__ = [
    "METHODS",
    "REFERENCE_BOUNDS",
    "EvaluationLog",
    "Found",
    "SearchSpace",
    "TuneResult",
    "direct_l",
    "evaluation_config",
    "line_search",
    "plot_search",
    "settings",
    "tune",
]
