"""Hypothesis profiles: ``ci`` (the default, bounded) and ``thorough`` for long runs.

Choose with ``pytest --hypothesis-profile=thorough`` (or HYPOTHESIS_PROFILE=thorough).
The full property battery of tests/test_properties.py takes a third of the profile's
examples per property (20 under ``ci``), as it runs eleven properties on four layers.
Deadlines are off because torch's first call of a kernel can take far longer than later
ones.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
