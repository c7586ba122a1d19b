"""The ``sessiontrace`` command line: ``sessions``, ``show``, ``replay``, ``timeline``, ``doctor``.

Example:
    >>> from sessiontrace.cli import main
    >>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

from sessiontrace.cli._main import main

__all__ = ["main"]
