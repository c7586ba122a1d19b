"""The fake OpenAI server, plus tool calls: an agent with tools calls its first tool once.

Everything :class:`helpers.fake_openai.FakeOpenAI` does is kept (the same reply, usage and
streaming); added: a chat completion whose request offers ``tools`` and holds no tool result
yet is answered with a call of the first tool, every required string parameter set to
``"Oslo"`` (plain JSON, or streamed as OpenAI streams tool calls). The request after the tool
ran (it holds a ``tool`` message) gets the usual reply.
"""

from __future__ import annotations

import importlib
import io
import json
import time
from typing import Any

from helpers.fake_openai import FakeOpenAI

# The request handler of the examples' server, which helpers.fake_openai put on the path.
_Handler = importlib.import_module(FakeOpenAI.__module__)._Handler

__all__ = ["ToolCallingOpenAI"]

TOOL_CALL_ID = "call_fake_1"


def _arguments(tool: dict[str, Any]) -> str:
    parameters = (tool.get("function") or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    return json.dumps({name: "Oslo" for name in parameters.get("required", properties)})


class _ToolHandler(_Handler):
    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.loads(raw or b"{}")
        tools = body.get("tools") or []
        answered = any(m.get("role") == "tool" for m in body.get("messages", []))
        if self.path.rstrip("/") != "/v1/chat/completions" or not tools or answered:
            self.rfile = io.BytesIO(raw)  # the plain fake reads the body itself
            super().do_POST()
            return
        self.server.requests.append(
            {"path": self.path, "body": body, "headers": dict(self.headers)}
        )
        function = {"name": tools[0]["function"]["name"], "arguments": _arguments(tools[0])}
        call = {"id": TOOL_CALL_ID, "type": "function", "function": function}
        base = {"id": "chatcmpl-fake-tool", "created": int(time.time()), "model": body.get("model")}
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if not body.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            self._json(
                200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}
        delta = {"role": "assistant", "tool_calls": [{"index": 0, **call}]}
        self._event({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event(
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**chunk, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class ToolCallingOpenAI(FakeOpenAI):
    """:class:`FakeOpenAI` that also calls an agent's first tool (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._server.RequestHandlerClass = _ToolHandler
