"""Hypothesis profiles: ``ci`` (the default, bounded) and ``thorough`` for long runs.

Choose with ``pytest --hypothesis-profile=thorough`` (or HYPOTHESIS_PROFILE=thorough).
The full property battery of tests/test_properties.py takes a third of the profile's
examples per property (20 under ``ci``), as it runs eleven properties on four layers.
Deadlines are off because torch's first call of a kernel can take far longer than later
ones.
"""

import os

import torch
from hypothesis import HealthCheck, settings

# Under pytest-xdist (``pytest -n auto``) each worker is a process of its own: share the
# cores among them instead of letting every worker start a thread per core.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
