"""The local web view of the store: ``sessiontrace ui`` and its JSON API (``pip install
'sessiontrace[ui]'``, Starlette and uvicorn).

Example:
    >>> from sessiontrace.ui import create_app  # doctest: +SKIP
    >>> app = create_app(".sessiontrace/sessions.db")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessiontrace.ui._app import create_app as create_app

MISSING = (
    "the web view needs Starlette and uvicorn: pip install 'sessiontrace[ui]' "
    "(in a checkout: pip install -e '.[ui]')"
)


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import sessiontrace.ui` works without the extra and says
    # what to install only when the app is asked for.
    if name == "create_app":
        try:
            from sessiontrace.ui._app import create_app
        except ImportError as error:
            raise ImportError(MISSING) from error
        return create_app
    raise AttributeError(f"module 'sessiontrace.ui' has no attribute {name!r}")


__all__ = ["MISSING", "create_app"]
