"""The web view's application: its page and a read-only JSON API over the local store
(Starlette).

Each request opens the store read-only for itself (SQLite connections stay in the thread that
made them, and a fresh read sees what the program wrote a moment ago), so the app never holds
the file and never writes to it. Unknown ids answer 404 and bad parameters 400, both as JSON
that says what was wrong and what is allowed.

Example:
    >>> from starlette.testclient import TestClient
    >>> client = TestClient(create_app("/tmp/no-such-store.db"))  # doctest: +SKIP
    >>> client.get("/api/sessions").json()["sessions"]  # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessiontrace import __version__
from sessiontrace.store import SessionNotFoundError, SessionStore
from sessiontrace.store._paging import MAX_LIMIT, PageArgumentError
from sessiontrace.ui._documents import (
    doctor_document,
    session_document,
    summary_document,
    timeline_document,
)
from sessiontrace.ui._pages import ASSETS, SecurityHeaders, change_stamp, page_route

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_QUERY_ARGUMENTS = {
    "user": "user_id",
    "tag": "tag",
    "status": "status",
    "q": "text",
    "sort": "sort",
}
_NUMBERS = {"limit": (1, MAX_LIMIT), "offset": (0, 2**62)}
_KNOWN = {*_QUERY_ARGUMENTS, *_NUMBERS, "top_level"}
_PARAMETERS = {argument: name for name, argument in _QUERY_ARGUMENTS.items()}  # back to URL
Endpoint = Callable[[Request], JSONResponse]


class BadParameter(Exception):
    """A query parameter that is not allowed: answered with 400."""

    def __init__(self, parameter: str, message: str, allowed: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.allowed = allowed


def create_app(store_path: str | os.PathLike[str]) -> Starlette:
    """The app over the store at ``store_path``, which it only reads."""
    path = os.fspath(store_path)

    def listing(request: Request) -> JSONResponse:
        try:
            query = _page_arguments(request)
            with SessionStore(path) as store:
                page = store.page(**query)  # checks each value, naming a bad one
        except BadParameter as bad:
            return _error(400, str(bad), parameter=bad.parameter, allowed=bad.allowed)
        except PageArgumentError as bad:
            parameter = _PARAMETERS.get(bad.argument, bad.argument)
            return _error(400, str(bad), parameter=parameter, allowed=bad.allowed)
        return JSONResponse(
            {
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
                "sessions": [summary_document(found) for found in page.sessions],
            }
        )

    def one_session(build: Callable[[SessionStore, str], dict[str, Any]]) -> Endpoint:
        def endpoint(request: Request) -> JSONResponse:
            session_id = request.path_params["session_id"]
            try:
                with SessionStore(path) as store:
                    return JSONResponse(build(store, session_id))
            except SessionNotFoundError:
                return _error(404, "no session with this id in the store", session_id=session_id)

        return endpoint

    session, timeline = one_session(session_document), one_session(timeline_document)
    doctor = one_session(doctor_document)

    def info(request: Request) -> JSONResponse:
        return JSONResponse({"store": path, "version": __version__, "read_only": True})

    def changes(request: Request) -> JSONResponse:
        return JSONResponse({"stamp": change_stamp(path)})

    return Starlette(
        routes=[
            Route("/", page_route("index.html")),
            *(Route(f"/assets/{name}", page_route(name)) for name in ASSETS),
            Route("/favicon.svg", page_route("favicon.svg")),
            Route("/favicon.ico", page_route("favicon.svg")),
            Route("/api/info", info),
            Route("/api/changes", changes),
            Route("/api/sessions", listing),
            Route("/api/sessions/{session_id:path}/timeline", timeline),
            Route("/api/sessions/{session_id:path}/doctor", doctor),
            Route("/api/sessions/{session_id:path}", session),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )


def _page_arguments(request: Request) -> dict[str, Any]:
    """``SessionStore.page()``'s arguments from the query string, or :class:`BadParameter`."""
    params = request.query_params
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise BadParameter(
            unknown[0], f"unknown parameter {unknown[0]!r}", ", ".join(sorted(_KNOWN))
        )
    query: dict[str, Any] = {}
    for name, argument in _QUERY_ARGUMENTS.items():
        value = params.get(name)
        if value is not None and value != "":
            query[argument] = value
    for name, (low, high) in _NUMBERS.items():
        text = params.get(name)
        if text is None:
            continue
        if not text.isascii() or not text.isdigit():  # the range is the store's to check
            raise BadParameter(name, f"{name} {text!r:.60} is not allowed", f"{low} to {high}")
        query[name] = int(text)
    flag = params.get("top_level")
    if flag is not None:
        if flag.lower() not in _BOOLEANS:
            raise BadParameter("top_level", f"top_level {flag!r:.60} is not allowed", "true, false")
        query["top_level"] = _BOOLEANS[flag.lower()]
    return query


def _error(status: int, message: str, **details: str) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)
