"""A fake OpenAI-compatible server on 127.0.0.1: real HTTP, real JSON, usage, SSE streaming.

Answers ``POST /v1/chat/completions`` with a fixed reply whose token counts are the words of
the prompt and of the reply, so tests know the usage in advance. With ``"stream": true`` it
sends the reply as server-sent events, one chunk per word, and a final usage chunk when
``stream_options.include_usage`` is set, as OpenAI does.

Example:
    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
        client.chat.completions.create(model="fake", messages=[...])

Run it on its own (``python examples/fake_openai_server.py``) to point any OpenAI client at it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Oslo is lovely in spring"


def words(text: str) -> int:
    return len(text.split())


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
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        usage = {
            "prompt_tokens": words(prompt),
            "completion_tokens": words(REPLY),
            "total_tokens": words(prompt) + words(REPLY),
        }
        model = body.get("model", "fake-model")
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            self._json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": REPLY},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks = [{"role": "assistant", "content": ""}] + [
            {"content": word + " "} for word in REPLY.split()
        ]
        for index, delta in enumerate(chunks):
            last = index == len(chunks) - 1
            self._event(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [
                        {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
                    ],
                }
            )
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[dict[str, Any]]


class FakeOpenAI:
    """The fake server, started on a free port as a context manager."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._server.requests

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


if __name__ == "__main__":
    with FakeOpenAI() as running:
        print(f"fake OpenAI server at {running.base_url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
