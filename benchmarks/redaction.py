"""What redaction costs per span: export with ``configure(redact=True)`` against export without,
in one run.

Run from the repository root::

    python benchmarks/redaction.py              # 7 rounds of 2,000 spans each way
    python benchmarks/redaction.py --rounds 3   # quicker

Each span is what OpenInference records for one chat call: a 2 KB prompt twice (in
``input.value`` and ``llm.input_messages.0.message.content``), a 300-byte reply twice, the
model, token counts, and the session keys sessiontrace stamps. The prose has dates, prices and
order numbers in it, so the card detector has digits to look at. Three kinds of text: none of
it secret (the usual case: redaction finds nothing and sends the span as it is), and one
e-mail address and one API key per prompt (every span is copied with its values masked).

Each round makes the spans through ``configure()``'s real pipeline into the local store
(the application thread: start, attributes, end, stamping; the export thread: redaction,
rows, SQLite) and waits for ``force_flush``; the figure is the round's wall time per span,
median of the rounds, with the variants interleaved round by round so the machine's noise
hits them alike. The goal (issue #12): at most 1.2x for the default rules.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry import trace  # noqa: E402

import sessiontrace  # noqa: E402
from store_scale import Prose  # noqa: E402

SPANS = 2000


def prompts(prose: Prose, rng: random.Random, secret: bool) -> list[str]:
    out = []
    for n in range(64):
        parts = []
        while sum(map(len, parts)) < 2048:
            parts.append(prose.take(180))
            parts.append(rng.choice((f" on 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                                     f" for {rng.randint(5, 900)}.{rng.randint(0, 99):02d} EUR",
                                     f" order {rng.randint(10**7, 10**8)}", " at 14:05")))  # fmt: skip
        text = "".join(parts)[:2048]
        if secret:
            middle = len(text) // 2
            text = (f"{text[:middle]} mail me at user{n}@example.com, key "
                    f"sk-proj-{n:04d}abcdefghijklmnopqrstuv {text[middle:]}")[:2048]  # fmt: skip
        out.append(text)
    return out


def one_round(
    store: Path, redact: bool, texts: list[str], replies: list[str]
) -> tuple[float, float]:
    provider = sessiontrace.configure(store_path=store, redact=redact, service_name="bench")
    tracer = trace.get_tracer("openinference.instrumentation.openai")
    started = time.perf_counter()
    with sessiontrace.using_attributes(session_id="bench-session", user_id="u-1", tags=["b"]):
        for n in range(SPANS):
            # Each prompt once (as a conversation's history grows), so no result is reused
            # from an earlier span; within the span it is recorded twice, as OpenInference does.
            prompt = f"{n} {texts[n % len(texts)]}"[:2048]
            reply = replies[n % len(replies)]
            with tracer.start_as_current_span("ChatCompletion") as span:
                span.set_attributes({
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "input.value": prompt,
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": prompt,
                    "output.value": reply,
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": reply,
                    "llm.token_count.prompt": 512,
                    "llm.token_count.completion": 80,
                    "llm.token_count.total": 592,
                })  # fmt: skip
    made = time.perf_counter() - started
    if not sessiontrace.force_flush(timeout=120):
        raise SystemExit("the store did not take the spans within 120 s")
    elapsed = time.perf_counter() - started
    del provider
    return elapsed / SPANS * 1e6, made / SPANS * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(12)
    prose = Prose(rng, size=2_000_000)
    plain_texts = prompts(prose, rng, secret=False)
    secret_texts = prompts(prose, rng, secret=True)
    replies = [prose.take(300) for _ in range(16)]
    directory = Path(tempfile.mkdtemp(prefix="redaction-bench-"))
    variants = {
        "no redaction": (False, plain_texts),
        "redact=True, nothing to mask": (True, plain_texts),
        "redact=True, 2 values masked a prompt": (True, secret_texts),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    app: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        for name, (redact, texts) in variants.items():
            store = directory / f"r{round_number}-{len(times[name])}-{redact}.db"
            total, made = one_round(store, redact, texts, replies)
            times[name].append(total)
            app[name].append(made)
        print(f"  round {round_number + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    base = statistics.median(times["no redaction"])
    app_base = statistics.median(app["no redaction"])
    print(f"per span, {SPANS:,} spans a round, median of {args.rounds} rounds:")
    print(f"  {'':40s} {'exported':>10s} {'':6s} {'app thread':>11s}")
    for name, values in times.items():
        median, made = statistics.median(values), statistics.median(app[name])
        print(f"  {name:40s} {median:7.1f} us {median / base:5.2f}x {made:7.1f} us "
              f"{made / app_base:5.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
