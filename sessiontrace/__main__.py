"""``python -m sessiontrace``: the same command line as the ``sessiontrace`` script."""

from __future__ import annotations

from sessiontrace.cli import main

raise SystemExit(main())
