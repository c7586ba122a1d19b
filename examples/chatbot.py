"""A multi-turn chatbot against a fake LLM, offline, with every turn in one session.

Run it, then look at the session it recorded:

    python examples/chatbot.py
    sessiontrace sessions
    sessiontrace show latest

Each user turn is its own trace. The fake LLM client below makes its spans the way an
auto-instrumentation library would (it knows nothing about sessiontrace), and still every span
carries the session id, user id, metadata and tags, because `configure()` installed the
`SessionSpanProcessor`. With no OTLP endpoint set, spans go to ./.sessiontrace/sessions.db.
"""

from __future__ import annotations

import argparse
import time
import uuid

from opentelemetry import trace

import sessiontrace

# --- a fake LLM client, instrumented like a third-party library ---------------------------
_llm_tracer = trace.get_tracer("fake_llm.instrumentation")

REPLIES = {
    "weather": "Expect 12°C and some sun in Oslo next week: pack a light jacket.",
    "oslo": "Oslo in spring is lovely. Flights from Berlin take about two hours.",
    "hello": "Hi! I can help you plan a trip. Where would you like to go?",
}


def fake_chat_completion(model: str, messages: list[dict[str, str]]) -> str:
    """Answer from a fixed table, recording an LLM span as OpenInference instrumentation does."""
    prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    with _llm_tracer.start_as_current_span("ChatCompletion") as span:
        answer = next(
            (reply for word, reply in REPLIES.items() if word in prompt.lower()),
            "Could you tell me more?",
        )
        time.sleep(0.01)  # the "network"
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        completion_tokens = len(answer.split())
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


# --- the application ------------------------------------------------------------------------
@sessiontrace.observe(kind="tool")
def lookup_weather(city: str) -> str:
    return f"{city}: 12°C, partly sunny"


@sessiontrace.observe("chat.turn", kind="chain")
def chat_turn(history: list[dict[str, str]], user_message: str) -> str:
    history.append({"role": "user", "content": user_message})
    if "weather" in user_message.lower():
        history.append({"role": "tool", "content": lookup_weather("Oslo")})
    answer = fake_chat_completion("fake-gpt-mini", history)
    history.append({"role": "assistant", "content": answer})
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=f"chat-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--user-id", default="ada@example.com")
    parser.add_argument("--store", default=None, help="SQLite file (default ./.sessiontrace/)")
    arguments = parser.parse_args()

    provider = sessiontrace.configure(service_name="chatbot-example", store_path=arguments.store)
    history: list[dict[str, str]] = []
    with sessiontrace.using_attributes(
        session_id=arguments.session_id,
        user_id=arguments.user_id,
        metadata={"app": "chatbot-example", "plan": "pro"},
        tags=["example", "offline"],
    ):
        for message in ("Hello!", "I want to fly to Oslo.", "What's the weather like?"):
            print(f"user> {message}")
            print(f"bot>  {chat_turn(history, message)}")
    provider.shutdown()  # flush to the store before we exit
    print(f"\nsession {arguments.session_id}: 3 turns recorded. Now run: sessiontrace show latest")


if __name__ == "__main__":
    main()
