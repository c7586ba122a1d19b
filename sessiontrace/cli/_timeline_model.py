"""What the timeline draws, before any HTML: the time axis, each bar's kind, the tooltips.

:class:`Axis` places a time on the shared track, :func:`extent` is the time a run covers,
:func:`kind_class` and :func:`badge_class` pick a bar's and a badge's colour, and
:func:`span_tip` is the text of a span's tooltip. ``_timeline_html.py`` draws the page with
them.

Example:
    >>> axis = Axis(0, 2_000_000)
    >>> axis.place(500_000, 1_000_000)
    'left:25.000%;width:25.000%'
"""

from __future__ import annotations

import math

from sessiontrace import _keys
from sessiontrace._usage import model_name
from sessiontrace.cli import _format
from sessiontrace.cli._view import Run, kind_of
from sessiontrace.store import StoredSpan

TOOLTIP_CHARS = 300
"""The longest an input or output preview in a tooltip may be."""


# --- the time axis -----------------------------------------------------------------------


class Axis:
    """Maps a time in nanoseconds to a left offset in percent of the track.

    Args:
        start_ns: The time at the track's left edge.
        end_ns: The time at its right edge (at least 1 ns after ``start_ns`` is assumed).

    Example:
        >>> axis = Axis(0, 10_000_000)
        >>> axis.x(2_500_000), axis.x(-5), axis.x(99_000_000)
        (25.0, 0.0, 100.0)
    """

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns = start_ns
        self.span_ns = max(end_ns - start_ns, 1)

    def x(self, ns: int) -> float:
        """The offset of ``ns`` in percent of the track, kept between 0 and 100."""
        return min(max((ns - self.start_ns) / self.span_ns * 100, 0.0), 100.0)

    def place(self, start_ns: int, end_ns: int) -> str:
        """The CSS ``left`` and ``width`` of a bar from ``start_ns`` to ``end_ns``."""
        left = self.x(start_ns)
        return f"left:{left:.3f}%;width:{max(self.x(end_ns) - left, 0):.3f}%"

    def after(self, start_ns: int, end_ns: int) -> str:
        """Where a label beside a bar goes: right of it, or left of it if more room is there.

        The label is clipped to the room it has, so it never runs off the page.
        """
        start, end = self.x(start_ns), self.x(end_ns)
        if 100 - end >= 18 or 100 - end >= start:
            return f"left:calc({end:.3f}% + 5px);right:0"
        return f"right:calc({100 - start:.3f}% + 5px);max-width:calc({start:.3f}% - 5px)"

    def ticks(self) -> list[tuple[float, str]]:
        """The grid lines, about ten at a round step: each one's offset and its label.

        Example:
            >>> [label for _, label in Axis(0, 2_000_000_000).ticks()][:3]
            ['0 ms', '200 ms', '400 ms']
            >>> Axis(0, 20_000_000_000).ticks()[:2]
            [(0.0, '0 s'), (10.0, '2 s')]
        """
        times = self._tick_times()
        step = times[1] - times[0] if len(times) > 1 else 1.0
        return [(self.x(self.start_ns + int(ms * 1e6)), _tick_label(ms, step)) for ms in times]

    def _tick_times(self) -> list[float]:
        total_ms = self.span_ns / 1e6
        raw = total_ms / 10
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
        return [k * step for k in range(int(total_ms / step + 1e-9) + 1)]


def _tick_label(ms: float, step: float) -> str:
    if step >= 1000:
        return f"{round(ms / 1000, 3):g} s"
    return f"{round(ms, 3):g} ms"


def extent(run: Run) -> tuple[int, int]:
    """The first start and the last end of a run's steps, spans and sub-sessions, in ns.

    A run without any spans covers one millisecond from the session's first start.
    """
    starts: list[int] = []
    ends: list[int] = []

    def visit(current: Run) -> None:
        for step in current.steps:
            starts.append(step.start_ns)
            ends.append(max([step.end_ns, *(span.end_ns for span in step.spans)]))
        for span in current.outside:
            starts.append(span.start_ns)
            ends.append(span.end_ns)
        for child in current.sub.values():
            visit(child)

    visit(run)
    if not starts:
        first = int(run.session.first_start.timestamp() * 1e9)
        return first, first + 1_000_000
    return min(starts), max(ends)


# --- what a bar or a badge looks like ----------------------------------------------------


def kind_class(span: StoredSpan) -> str:
    """The CSS class of a span's bar: ``error``, ``llm``, ``tool``, ``chain`` or ``other``."""
    if span.status_code == "ERROR":
        return "error"
    kind = kind_of(span).upper()
    if kind == "LLM":
        return "llm"
    if kind == "TOOL":
        return "tool"
    if kind in ("CHAIN", "AGENT"):
        return "chain"
    return "other"


def badge_class(status: str) -> str:
    """The badge's CSS class for a status word; anything unknown is drawn as ``running``."""
    return status if status in ("ok", "error", "running") else "running"


def has_state(run: Run) -> bool:
    """Whether any step of the run or of a loaded sub-session has a state snapshot."""
    return any(step.state is not None for step in run.steps) or any(
        has_state(child) for child in run.sub.values()
    )


# --- text for tooltips -------------------------------------------------------------------


def span_tip(span: StoredSpan) -> str:
    """A span's tooltip, one fact a line: name, kind and duration, tokens, status, in and out.

    Store text is passed through ``_format.safe``; escaping for HTML is the page's job.
    """
    head = [_format.safe(kind_of(span)), _format.milliseconds(span.duration_ms)]
    model = model_name(span.attributes)
    if model:
        head.append(_format.safe(model))
    lines = [_format.safe(span.name), " · ".join(head)]
    if span.total_tokens is not None:
        lines.append(tokens_line(span.prompt_tokens, span.completion_tokens, span.total_tokens))
    if _format.status_word(span.status_code) != "ok":
        message = _format.safe(span.status_message or "")
        lines.append(_format.status_word(span.status_code) + (f": {message}" if message else ""))
    for label, key in (("in", _keys.OI_INPUT_VALUE), ("out", _keys.OI_OUTPUT_VALUE)):
        value = span.attributes.get(key)
        if value is not None:
            lines.append(f"{label}: {preview(value)}")
    return "\n".join(lines)


def tokens_line(prompt: int | None, completion: int | None, total: int | None) -> str:
    """The tooltip line of token counts, saying which count is which."""
    return f"tokens {_format.tokens(prompt, completion, total)} (prompt/completion/total)"


def preview(value: object) -> str:
    """A tooltip's preview of a value: one line, at most :data:`TOOLTIP_CHARS` characters."""
    return _format.preview(value, TOOLTIP_CHARS)
