"""How to install ndwconv's optional extras, for the hints in error messages.

ndwconv is installed from a checkout of its repository (or a wheel built from one), not
from a package index, so every hint names the editable install run in the repository
root; docs/getting-started.md ("Installing") also shows the wheel route.
"""

from __future__ import annotations

__all__ = ["INSTALL_DOC", "install_hint"]

INSTALL_DOC = "docs/getting-started.md#installing"
"""Where the installation routes (checkout, wheel, extras) are documented."""


def install_hint(extra: str | None = None) -> str:
    """The command that installs ndwconv with ``extra`` from a checkout.

    Example:
        >>> install_hint("volumes")
        'pip install -e ".[volumes]" in the ndwconv repository root'
    """
    target = f'".[{extra}]"' if extra else "."
    return f"pip install -e {target} in the ndwconv repository root"
