"""A multi-turn chatbot against a fake LLM, offline, with every turn in one session.

Run it, then look at the session it recorded:

    python examples/chatbot.py
    sessiontrace sessions
    sessiontrace show latest

Each user turn is its own trace. The fake LLM client (fake_llm.py) makes its spans the way an
auto-instrumentation library would (it knows nothing about sessiontrace), and still every span
carries the session id, user id, metadata and tags, because `configure()` installed the
`SessionSpanProcessor`. With no OTLP endpoint set, spans go to ./.sessiontrace/sessions.db.
"""

from __future__ import annotations

import argparse
import uuid

import fake_llm  # the fake LLM client beside this file

import sessiontrace

REPLIES = {
    "weather": "Expect 12°C and some sun in Oslo next week: pack a light jacket.",
    "oslo": "Oslo in spring is lovely. Flights from Berlin take about two hours.",
    "hello": "Hi! I can help you plan a trip. Where would you like to go?",
}


# --- the application ------------------------------------------------------------------------
@sessiontrace.observe(kind="tool")
def lookup_weather(city: str) -> str:
    return f"{city}: 12°C, partly sunny"


@sessiontrace.observe("chat.turn", kind="chain")
def chat_turn(history: list[dict[str, str]], user_message: str) -> str:
    history.append({"role": "user", "content": user_message})
    if "weather" in user_message.lower():
        history.append({"role": "tool", "content": lookup_weather("Oslo")})
    answer = fake_llm.chat_completion("fake-gpt-mini", history, REPLIES)
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
