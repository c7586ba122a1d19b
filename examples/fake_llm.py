"""A fake LLM client for the examples: offline, deterministic, instrumented like a real one.

It makes its spans the way an auto-instrumentation library would (OpenInference attributes:
kind LLM, model, input, output, token counts) and knows nothing about sessiontrace. Tokens are
counted as words, so tests can know the totals in advance.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from opentelemetry import trace

_tracer = trace.get_tracer("fake_llm.instrumentation")


def count_tokens(text: str) -> int:
    return len(text.split())


def chat_completion(
    model: str, messages: Sequence[Mapping[str, str]], replies: Mapping[str, str]
) -> str:
    """Answer the last user message from ``replies`` (first keyword found wins)."""
    prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    with _tracer.start_as_current_span("ChatCompletion") as span:
        answer = next(
            (reply for word, reply in replies.items() if word in prompt.lower()),
            "Could you tell me more?",
        )
        time.sleep(0.01)  # the "network"
        prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
        completion_tokens = count_tokens(answer)
        span.set_attributes(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": model,
                "input.value": prompt,
                "output.value": answer,
                "llm.token_count.prompt": prompt_tokens,
                "llm.token_count.completion": completion_tokens,
                "llm.token_count.total": prompt_tokens + completion_tokens,
            }
        )
        return answer
