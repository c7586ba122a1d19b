"""A client library's methods, recorded before an instrumentor runs and put back after it.

Some instrumentors leave wrappers behind at ``uninstrument()`` (Traceloop's OpenAI one does);
the instrumentation helpers record every method first and restore any left changed, so no
test's instrumentation reaches the next test.
"""

from __future__ import annotations

import sys


def client_methods(prefix: str) -> dict[tuple[type, str], object]:
    """Every callable on every class of the loaded modules whose names start with ``prefix``."""
    found = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefix) or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name:
                for attribute, member in list(vars(value).items()):
                    if callable(member):
                        found[(value, attribute)] = member
    return found


def put_back(before: dict[tuple[type, str], object]) -> list[str]:
    """Restore each method of ``before`` that is no longer the one recorded; their names.

    Compared by identity: a wrapt wrapper compares equal to what it wraps.
    """
    restored = []
    for (owner, attribute), original in before.items():
        if vars(owner).get(attribute) is not original:
            setattr(owner, attribute, original)
            restored.append(f"{owner.__module__}.{owner.__qualname__}.{attribute}")
    return restored
