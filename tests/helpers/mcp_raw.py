"""A raw MCP client: JSON-RPC over streamable HTTP with httpx, ``_meta`` exactly as given.

The SDK's client types ``_meta``; this one sends whatever a hostile peer could: a list, numbers,
control characters, megabytes. It opens a handshake-era session (``initialize``, then
``notifications/initialized``) and calls a tool with the ``_meta`` it is handed.

Example:
    with RawSession(url) as session:
        reply = session.call_tool("whoami", meta={"baggage": "session.id=s-1"})
        assert "result" in reply
"""

from __future__ import annotations

import itertools
import json
from types import TracebackType
from typing import Any

import httpx

PROTOCOL_VERSION = "2025-06-18"


class RawSession:
    """One MCP session over streamable HTTP, driven by hand."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._http = httpx.Client(timeout=30)
        self._ids = itertools.count(1)
        self._headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        }

    def __enter__(self) -> RawSession:
        response = self._post(
            {
                "jsonrpc": "2.0",
                "id": next(self._ids),
                "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            }
        )
        self._headers["mcp-session-id"] = response.headers["mcp-session-id"]
        self._headers["mcp-protocol-version"] = PROTOCOL_VERSION
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    def call_tool(self, name: str, arguments: dict[str, Any] | None = None, **extra: Any) -> Any:
        """The JSON-RPC reply to ``tools/call``; ``meta=`` is sent as ``params._meta``."""
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        if "meta" in extra:
            params["_meta"] = extra["meta"]
        request_id = next(self._ids)
        response = self._post(
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        )
        assert response.status_code == 200, (response.status_code, response.text[:300])
        return _reply(response, request_id)

    def _post(self, message: dict[str, Any]) -> httpx.Response:
        return self._http.post(self._url, content=json.dumps(message), headers=self._headers)


def _reply(response: httpx.Response, request_id: int) -> Any:
    """The JSON-RPC message answering ``request_id``, from a JSON or an SSE body."""
    if response.headers.get("content-type", "").startswith("application/json"):
        messages = [response.json()]
    else:
        messages = [
            json.loads(line[len("data:") :])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[len("data:") :].strip()
        ]
    for message in messages:
        if message.get("id") == request_id:
            return message
    raise AssertionError(f"no reply to request {request_id}: {response.text[:300]}")
