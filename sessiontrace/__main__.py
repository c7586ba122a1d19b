"""``python -m sessiontrace``: the same command line as the ``sessiontrace`` script."""

from __future__ import annotations

from sessiontrace.cli import main

# Guarded so that importing this module (doctest collection, tooling) does not run the CLI.
if __name__ == "__main__":
    raise SystemExit(main())
