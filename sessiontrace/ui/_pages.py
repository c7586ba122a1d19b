"""The web view's page: its files, the headers every answer carries, the change stamp.

The page (``static/index.html``, its style sheet and its JavaScript modules) is read from
the package once and served by the app itself, so the view works offline and asks no other
host for anything.
Every answer carries a Content-Security-Policy that lets the page run only its own script and
style sheet and talk only to this server: should a piece of span data ever reach the page as
markup, the browser would still refuse to run it.

The page polls ``GET /api/changes`` every second and reloads what it shows when the stamp
changes. The stamp is read from the store file's and its write-ahead log's size and
modification time, so asking costs no query: every commit of a writer changes the log.

Example:
    >>> change_stamp("/tmp/no-such-store.db")
    'missing'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

ASSETS: tuple[str, ...] = tuple(
    sorted(
        entry.name
        for entry in (resources.files("sessiontrace.ui") / "static").iterdir()
        if entry.name.endswith((".js", ".css"))
    )
)
"""The page's scripts and style sheet, served under ``/assets/``."""

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
"""Sent with every answer, the API's included."""


@cache
def asset(name: str) -> bytes:
    """One of the page's files, from the package."""
    return (resources.files("sessiontrace.ui") / "static" / name).read_bytes()


def page_route(name: str) -> Callable[[Request], Response]:
    """An endpoint that answers with the page file ``name``."""
    media_type = _TYPES[os.path.splitext(name)[1]]

    def endpoint(request: Request) -> Response:
        return Response(asset(name), media_type=media_type)

    return endpoint


def change_stamp(path: str) -> str:
    """Text that changes whenever a writer commits to the store at ``path``."""
    parts = []
    for suffix in ("", "-wal"):
        try:
            found = os.stat(path + suffix)
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{found.st_size}:{found.st_mtime_ns}")
    return "missing" if parts == ["-", "-"] else "/".join(parts)


class SecurityHeaders:
    """ASGI middleware that adds :data:`HEADERS` to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
