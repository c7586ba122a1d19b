"""An agent that books a trip, as one tracked session: plan, tool calls, a sub-agent, summary.

Offline, against the fake LLM beside this file. Run it, then replay the session step by step:

    python examples/agent.py
    sessiontrace replay latest
    sessiontrace timeline latest --html timeline.html

Every LLM and tool span carries the session, the user and the step index; each step's state
snapshot is on its step span; the hotel researcher is a sub-session whose totals roll into the
run's; the run's summary (steps, tokens, cost, duration, status) is printed and stored.
"""

from __future__ import annotations

import argparse
import uuid

import fake_llm  # the fake LLM client beside this file

import sessiontrace

MODEL = "fake-gpt-mini"
# USD per million tokens, for the tracker's cost total (the fake client reports no cost).
PRICES = {MODEL: {"prompt": 0.15, "completion": 0.60}}
REPLIES = {  # the first keyword found in the prompt picks the reply
    "summarise": "Booked: SK 1234 on 14 May at 09:40, and Hotel Bristol for 4 nights.",
    "plan": "1. find flights Berlin to Oslo 2. find a hotel near the centre 3. summarise",
    "flights": "The 09:40 SK 1234 at 129 EUR is the best fit.",
    "hotel": "Hotel Bristol, 4 nights, 560 EUR, 300 m from Karl Johans gate.",
}


@sessiontrace.observe(kind="tool")
def search_flights(origin: str, destination: str) -> list[dict[str, object]]:
    return [
        {"flight": "SK 1234", "departs": "09:40", "price_eur": 129},
        {"flight": "DY 1100", "departs": "18:05", "price_eur": 99},
    ]


@sessiontrace.observe(kind="tool")
def search_hotels(city: str, nights: int) -> list[dict[str, object]]:
    return [{"hotel": "Hotel Bristol", "nights": nights, "price_eur": 560}]


def ask(prompt: str) -> str:
    return fake_llm.chat_completion(MODEL, [{"role": "user", "content": prompt}], REPLIES)


def research_hotels(parent: sessiontrace.SessionTracker) -> str:
    """A sub-agent: its own session, tied to the step that spawned it."""
    with parent.child("hotel-researcher") as researcher:
        with researcher.step("search hotels"):
            hotels = search_hotels("Oslo", nights=4)
            researcher.set_state("candidates", hotels)
            return ask(f"Pick a hotel from {hotels}")


def run(session_id: str, user_id: str) -> sessiontrace.TrackerSummary:
    tracker = sessiontrace.SessionTracker(
        session_id, user_id=user_id, name="book-trip", tags=["example", "agent"], prices=PRICES
    )
    with tracker:
        with tracker.step("plan"):
            request = "Plan a trip from Berlin to Oslo on 14 May, 4 nights"
            tracker.set_state("request", request)
            plan = ask(f"Make a plan: {request}")
            tracker.set_state("plan", plan.split(" 2. ")[0])
        with tracker.step("search flights"):
            flights = search_flights("BER", "OSL")
            tracker.set_state("flights_found", len(flights))
            choice = ask(f"Choose among these flights: {flights}")
            tracker.set_state("flight", choice)
        with tracker.step("delegate hotel"):
            hotel = research_hotels(tracker)
            tracker.set_state("hotel", hotel)
        with tracker.step("summarise"):
            print(ask(f"Summarise the booking: {choice} {hotel}"))
    return tracker.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-id", default=f"trip-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--user-id", default="ada@example.com")
    parser.add_argument("--store", default=None, help="SQLite file (default ./.sessiontrace/)")
    arguments = parser.parse_args()

    provider = sessiontrace.configure(service_name="agent-example", store_path=arguments.store)
    summary = run(arguments.session_id, arguments.user_id)
    provider.shutdown()  # flush to the store before we exit
    print(
        f"\nsession {summary.session_id}: {summary.steps} steps, {summary.llm_calls} LLM calls, "
        f"{summary.total_tokens} tokens, ${summary.cost_usd:.6f}, {summary.status}. "
        "Now run: sessiontrace replay latest"
    )


if __name__ == "__main__":
    main()
