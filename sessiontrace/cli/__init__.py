"""The ``sessiontrace`` command line: ``sessions`` lists the store, ``show`` opens one session.

Example:
    >>> from sessiontrace.cli import main
    >>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

from sessiontrace.cli._main import main

__all__ = ["main"]
