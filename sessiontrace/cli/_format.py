"""Plain-text formatting shared by the CLI commands: safe text, times, tokens, status words,
totals, tables, JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sessiontrace.store import SessionSummary, SessionTotals

PREVIEW_CHARS = 80
"""The longest a one-line preview of an input or output may be."""

_ELLIPSIS = "..."

# What a terminal could act on or that could disguise text: C0 controls, DEL, C1 controls,
# the bidi marks, embeddings, overrides and isolates (Trojan Source), the Unicode line and
# paragraph separators, and lone surrogates (which cannot even be encoded for output).
_UNSAFE_CLASS = (
    "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff"
)
_UNSAFE = re.compile(f"[{_UNSAFE_CLASS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"(?!\n)[{_UNSAFE_CLASS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
_PRINTABLE_ASCII_NL = _PRINTABLE_ASCII + b"\n"


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = _NAMED.get(char)
    if named is not None:
        return named
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(value: object, *, newlines: bool = False) -> str:
    """``value`` as text a terminal shows as is: control and bidi characters are escaped.

    Every piece of text the CLI prints that came from the store goes through here. C0 controls
    (newline and tab included), DEL, C1 controls (U+0080 to U+009F), the bidi marks, overrides
    and isolates (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), U+2028, U+2029
    and lone surrogates are written as Python-style escapes (``\\x1b``, ``\\u202e``, ``\\n``).
    Backslashes are left alone, so the output is safe to show but not always reversible.

    Args:
        value: The text; anything else is converted with ``str`` first.
        newlines: Keep ``\\n`` as a line break (for whole lines the CLI itself assembled).

    Returns:
        The escaped text.

    Example:
        >>> safe("\\x1b[2Jhi\\u202e")
        '\\\\x1b[2Jhi\\\\u202e'
        >>> safe("a\\nb"), safe("a\\nb", newlines=True)
        ('a\\\\nb', 'a\\nb')
    """
    text = value if isinstance(value, str) else str(value)
    # Fast path for ASCII (all of --json, most text): deleting every harmless byte in C is
    # far quicker than a regex scan over megabytes; anything left over needs escaping.
    if text.isascii() and not text.encode("ascii").translate(
        None, _PRINTABLE_ASCII_NL if newlines else _PRINTABLE_ASCII
    ):
        return text
    pattern = _UNSAFE_BUT_NEWLINE if newlines else _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escaped, text)


def lines(text: str) -> list[str]:
    """``text`` split at its newlines only (``\\r\\n`` counts as one), unlike ``splitlines``.

    ``str.splitlines`` also breaks at U+2028, U+0085 and other separators, which would let a
    stored value start lines the CLI did not mean to print; here they stay, for :func:`safe`.

    Example:
        >>> lines("a\\r\\nb\\u2028c")
        ['a', 'b\\u2028c']
    """
    return text.replace("\r\n", "\n").split("\n")


def local_time(moment: datetime) -> str:
    """A UTC moment as local wall-clock time, to the second.

    Example:
        >>> from datetime import timezone
        >>> len(local_time(datetime(2025, 1, 1, tzinfo=timezone.utc)))
        19
    """
    # time.localtime is 3x quicker than datetime.astimezone: it counts in a listing of
    # 10,000 sessions.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment.timestamp()))


def duration(seconds: float) -> str:
    """A duration short enough for a table cell.

    Example:
        >>> [duration(s) for s in (0.0123, 4.5, 125, 7500)]
        ['12ms', '4.50s', '2m 05s', '2h 05m']
    """
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m {rest:02d}s"
    hours, rest = divmod(int(seconds) // 60, 60)
    return f"{hours}h {rest:02d}m"


def milliseconds(ms: float) -> str:
    """A span duration in milliseconds, with one decimal.

    Example:
        >>> milliseconds(12.345)
        '12.3 ms'
    """
    return f"{ms:.1f} ms"


def elapsed(ms: float) -> str:
    """A duration given in milliseconds: as :func:`milliseconds` below a second, else short.

    Example:
        >>> elapsed(43.59), elapsed(1500)
        ('43.6 ms', '1.50s')
    """
    return milliseconds(ms) if ms < 1000 else duration(ms / 1000)


def tokens(prompt: int | None, completion: int | None, total: int | None) -> str:
    """Token counts as ``prompt/completion/total``; ``-`` for a count not reported.

    Example:
        >>> tokens(12, 30, 42), tokens(None, None, None), tokens(None, None, 7)
        ('12/30/42', '-', '-/-/7')
    """
    if prompt is None and completion is None and total is None:
        return "-"
    return "/".join("-" if count is None else str(count) for count in (prompt, completion, total))


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """One safe line of at most ``limit`` characters: whitespace collapsed, the rest cut.

    Control and bidi characters are escaped (see :func:`safe`) before the text is cut.

    Example:
        >>> preview("a\\n  b")
        'a b'
        >>> preview("x" * 100, limit=10)
        'xxxxxxx...'
    """
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = safe(" ".join(text.split()))
    if len(text) > limit:
        text = text[: max(limit - len(_ELLIPSIS), 0)] + _ELLIPSIS
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """Columns padded to their widest cell; columns in ``numeric`` are right-aligned.

    Example:
        >>> print(table(["ID", "N"], [["a", "1"], ["bb", "10"]], numeric={1}))
        ID   N
        a    1
        bb  10
    """
    widths = [
        max([len(headers[column])] + [len(row[column]) for row in rows])
        for column in range(len(headers))
    ]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(widths[column]) if column in numeric else cell.ljust(widths[column])
            for column, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def dump_json(document: Any) -> str:
    """``document`` as indented, ASCII-only JSON.

    Example:
        >>> dump_json({"a": [1]})
        '{\\n  "a": [\\n    1\\n  ]\\n}'
    """
    return json.dumps(document, indent=2, default=str)


def full_text(value: object) -> str:
    """``value`` whole: a string as it is, anything else as indented JSON.

    Example:
        >>> full_text({"a": 1})
        '{\\n  "a": 1\\n}'
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def cost(usd: float | None) -> str:
    """A cost in US dollars, to six decimals; ``-`` when unknown.

    Example:
        >>> cost(0.0000417), cost(None)
        ('$0.000042', '-')
    """
    return "-" if usd is None else f"${usd:.6f}"


_STATUS_WORDS = {"UNSET": "ok", "OK": "ok", "ERROR": "error", "RUNNING": "running"}


def status_word(status: str) -> str:
    """The one word every command prints for a status: ``ok``, ``error`` or ``running``.

    A session's or a step's status is already one of these. A span's OpenTelemetry status code
    is ``ok`` for ``UNSET`` and ``OK`` alike, and ``error`` for ``ERROR``. Any other text (a
    row another program wrote) is shown escaped, as it is.

    Example:
        >>> [status_word(s) for s in ("UNSET", "OK", "ERROR", "ok", "running")]
        ['ok', 'ok', 'error', 'ok', 'running']
    """
    text = status if isinstance(status, str) else str(status)
    return _STATUS_WORDS.get(text.upper()) or safe(text)


def status(status: str, message: str | None = None) -> str:
    """:func:`status_word`, and for an error its message, previewed on one line.

    Example:
        >>> status("UNSET"), status("ERROR"), status("ERROR", "TimeoutError: no answer")
        ('ok', 'error', 'error: TimeoutError: no answer')
    """
    word = status_word(status)
    if word == "error" and message:
        return f"error: {preview(message)}"
    return word


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an ``s`` unless the count is one.

    Example:
        >>> plural(1, "span"), plural(3, "LLM call")
        ('1 span', '3 LLM calls')
    """
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def totals(t: SessionSummary | SessionTotals) -> str:
    """A session's totals in the words every command uses; cost only when a span reported one.

    Example:
        >>> from datetime import datetime, timezone
        >>> now = datetime(2025, 1, 1, tzinfo=timezone.utc)
        >>> totals(SessionTotals(sessions=2, trace_count=7, span_count=13, llm_calls=4,
        ...     prompt_tokens=70, completion_tokens=52, total_tokens=122, cost_usd=None,
        ...     error_count=0, last_end=now))
        '7 traces, 13 spans, 4 LLM calls, tokens 70/52/122, 0 errors'
    """
    parts = [
        plural(t.trace_count, "trace"),
        plural(t.span_count, "span"),
        plural(t.llm_calls, "LLM call"),
        "tokens " + tokens(t.prompt_tokens, t.completion_tokens, t.total_tokens),
    ]
    if t.cost_usd is not None:
        parts.append("cost " + cost(t.cost_usd))
    parts.append(plural(t.error_count, "error"))
    return ", ".join(parts)


def subsession_count(s: SessionSummary) -> int:
    """How many sessions are below ``s``, at every level (0 without sub-sessions).

    Example:
        >>> subsession_count(summary)  # doctest: +SKIP
        1
    """
    below = s.with_subsessions
    return 0 if below is None else max(below.sessions - 1, 0)


def with_subsessions_label(count: int) -> str:
    """How the totals that include sub-sessions are introduced, everywhere.

    Example:
        >>> with_subsessions_label(1), with_subsessions_label(3)
        ('with 1 sub-session', 'with 3 sub-sessions')
    """
    return "with " + plural(count, "sub-session")


def with_subsessions(s: SessionSummary) -> str | None:
    """``s``'s totals including all of its sub-sessions, labelled; ``None`` without any.

    Example:
        >>> with_subsessions(summary)  # doctest: +SKIP
        'with 1 sub-session: 7 traces, 13 spans, 4 LLM calls, tokens 70/52/122, 0 errors'
    """
    below = s.with_subsessions
    count = subsession_count(s)
    if below is None or count == 0:
        return None
    return f"{with_subsessions_label(count)}: {totals(below)}"


def totals_lines(s: SessionSummary) -> list[str]:
    """The own totals, then (with sub-sessions) the totals including them: one line each.

    Example:
        >>> totals_lines(summary)  # doctest: +SKIP
        ['5 traces, 9 spans, ...', 'with 1 sub-session: 7 traces, 13 spans, ...']
    """
    below = with_subsessions(s)
    return [totals(s)] if below is None else [totals(s), below]


StateChange = tuple[str, str]
"""``(marker, key)``: ``+`` a key the snapshot adds, ``~`` one whose value changed, ``-`` one
it no longer has."""


def state_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[StateChange]:
    """What changed from one state snapshot to the next, key by key, in the order seen.

    Example:
        >>> state_changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4})
        [('~', 'b'), ('+', 'c')]
        >>> state_changes({"a": 1}, {})
        [('-', 'a')]
    """
    before = before or {}
    changes: list[StateChange] = []
    for key, value in after.items():
        if key not in before:
            changes.append(("+", key))
        elif before[key] != value:
            changes.append(("~", key))
    changes.extend(("-", key) for key in before if key not in after)
    return changes
