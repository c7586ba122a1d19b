"""A fake Anthropic Messages API on 127.0.0.1: real HTTP, real JSON, usage, SSE streaming.

Answers ``POST /v1/messages`` with a fixed reply whose token counts are known in advance:
``input_tokens`` is the number of words of the system prompt and the messages (the part not
read from or written to the cache, as Anthropic counts it), ``output_tokens`` the words of the
reply, and ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` what the server was
made with. With ``"stream": true`` it sends the events Anthropic sends, in its order:
``message_start`` (usage with ``output_tokens`` 1, as Anthropic reports it there),
``content_block_start``, a ``ping``, one ``content_block_delta`` per word,
``content_block_stop``, ``message_delta`` (the cumulative usage) and ``message_stop``.

Example:
    with FakeAnthropic(cache_read_tokens=40) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test")
        client.messages.create(model="claude-fake", max_tokens=64, messages=[...])
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Oslo is lovely in spring"
START_OUTPUT_TOKENS = 1
"""The ``output_tokens`` of ``message_start``'s usage: Anthropic reports 1 there."""


def words(text: str) -> int:
    return len(text.split())


def _text(content: object) -> str:
    """The text of a message's (or the system prompt's) content: a string or text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def prompt_words(body: dict[str, Any]) -> int:
    """The ``input_tokens`` the server reports for a request body."""
    parts = [_text(body.get("system"))]
    parts += [_text(m.get("content")) for m in body.get("messages", []) if isinstance(m, dict)]
    return words(" ".join(parts))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(
            {"path": self.path, "body": body, "headers": dict(self.headers)}
        )
        if self.path.split("?")[0].rstrip("/") != "/v1/messages":
            self._json(
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"no route {self.path}"},
                },
            )
            return
        usage = {
            "input_tokens": prompt_words(body),
            "cache_creation_input_tokens": self.server.cache_creation_tokens,
            "cache_read_input_tokens": self.server.cache_read_tokens,
            "output_tokens": words(REPLY),
        }
        message = {
            "id": f"msg_fake{next(self.server.ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "stop_sequence": None,
        }
        if not body.get("stream"):
            self._json(
                200,
                {
                    **message,
                    "content": [{"type": "text", "text": REPLY}],
                    "stop_reason": "end_turn",
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "usage": {**usage, "output_tokens": START_OUTPUT_TOKENS},
                },
            },
        )
        self._event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        self._event("ping", {"type": "ping"})
        pieces = REPLY.split(" ")
        for n, piece in enumerate(pieces):
            text = piece if n == len(pieces) - 1 else piece + " "
            self._event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": usage,  # cumulative, as Anthropic sends it
            },
        )
        self._event("message_stop", {"type": "message_stop"})

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        self.wfile.write(
            b"event: " + name.encode() + b"\ndata: " + json.dumps(payload).encode() + b"\n\n"
        )
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake01")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]
    cache_read_tokens: int
    cache_creation_tokens: int
    ids: itertools.count[int]


class FakeAnthropic:
    """The fake server, started on a free port as a context manager.

    Args:
        cache_read_tokens: The ``cache_read_input_tokens`` of every answer.
        cache_creation_tokens: The ``cache_creation_input_tokens`` of every answer.
    """

    def __init__(self, *, cache_read_tokens: int = 0, cache_creation_tokens: int = 0) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._server.cache_read_tokens = cache_read_tokens
        self._server.cache_creation_tokens = cache_creation_tokens
        self._server.ids = itertools.count(1)  # a new message id per answer, as Anthropic
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The address to give ``anthropic.Anthropic(base_url=...)`` (it adds ``/v1``)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._server.requests

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
