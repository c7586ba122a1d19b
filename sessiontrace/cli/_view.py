"""The view model the commands share: a session found by id or ``latest``, loaded as a run.

``find`` turns a SESSION_ID argument into a session's summary; ``load`` reads a session with
its steps, summary and sub-sessions as a :class:`Run` (what ``replay`` prints and
``timeline`` draws); ``span_tree`` orders a step's spans for display (with ``depth_first``,
which ``show`` walks a trace with too) and ``kind_of`` names a span's kind; ``fields`` and
``family_fields`` lay out the labelled lines of a header.

Example:
    >>> with SessionStore() as store:  # doctest: +SKIP
    ...     run = load(store, find(store, "latest").session_id)
    ...     print([step.name for step in run.steps])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sessiontrace import _keys
from sessiontrace._usage import is_llm_call
from sessiontrace.cli import _format
from sessiontrace.cli._errors import CommandError
from sessiontrace.cli._families import newest
from sessiontrace.store import (
    SessionNotFoundError,
    SessionStore,
    SessionSummary,
    SessionTotals,
    StoredSpan,
    StoredStep,
    StoredTrackerSummary,
    children,
    outside_steps,
    steps,
    summary,
)

LATEST = "latest"
"""The SESSION_ID that means the session ``sessions`` lists first (unless one is named so)."""

SUBSESSIONS_SHOWN = 5
"""How many sub-session ids the header names before it says how many more there are."""

MAX_DEPTH = 3
"""How many levels of sub-sessions a run loads (and ``replay`` and ``timeline`` show)."""

_INDENT = "  "


# --- finding a session -------------------------------------------------------------------


def find(store: SessionStore, session_id: str) -> SessionSummary:
    """The summary of the session a SESSION_ID argument names: its id, or :data:`LATEST`.

    A session whose id is ``latest`` wins over the meaning of the word.

    Args:
        store: The store to read.
        session_id: The argument as given on the command line.

    Returns:
        The session's summary.

    Raises:
        SessionNotFoundError: If no session has the id (and it is not ``latest``).
        CommandError: For ``latest`` when the store holds no sessions (exit code 1).

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     print(find(store, "latest").session_id)
    """
    try:
        return store.session(session_id)
    except SessionNotFoundError:
        if session_id != LATEST:
            raise
    found = newest(store)
    if found is None:
        raise CommandError(
            f"the store at {store.path} holds no sessions yet; run your program inside "
            "sessiontrace.using_session(...) after sessiontrace.configure()",
            exit_code=1,
        )
    return found


# --- header fields -----------------------------------------------------------------------


def fields(labelled: list[tuple[str, str | list[str]]], indent: str = _INDENT) -> list[str]:
    """Labelled values in two aligned columns; a list value continues under the first line.

    Example:
        >>> for line in fields([("steps", "4"), ("totals", ["a", "b"])], ""): print(line)
        steps   4
        totals  a
                b
    """
    width = max(len(label) for label, _ in labelled)
    lines = []
    for label, value in labelled:
        first, *rest = [value] if isinstance(value, str) else value
        lines.append(f"{indent}{label.ljust(width)}  {first}")
        lines.extend(f"{indent}{' ' * width}  {more}" for more in rest)
    return lines


def family_fields(s: SessionSummary) -> list[tuple[str, str | list[str]]]:
    """The header lines naming a session's parent and its direct sub-sessions, if any."""
    found: list[tuple[str, str | list[str]]] = []
    if s.parent_session_id:
        found.append(("parent", _format.safe(s.parent_session_id)))
    if s.subsessions:
        shown = ", ".join(_format.safe(child) for child in s.subsessions[:SUBSESSIONS_SHOWN])
        more = len(s.subsessions) - SUBSESSIONS_SHOWN
        found.append(("sub-sessions", shown + (f" and {more:,} more" if more > 0 else "")))
    return found


# --- a session as replayed --------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One session as replayed: its steps, summary and (down to :data:`MAX_DEPTH`) children."""

    session: SessionSummary
    summary: StoredTrackerSummary | None
    steps: list[StoredStep]
    outside: list[StoredSpan]
    # Sub-sessions that started inside no step, and the loaded runs of all children by id.
    loose: list[str] = field(default_factory=list)
    sub: dict[str, Run] = field(default_factory=dict)

    @property
    def tracked(self) -> bool:
        """Whether a SessionTracker wrote the session (else each trace is one step)."""
        return self.summary is not None or any(step.tracked for step in self.steps)

    @property
    def name(self) -> str | None:
        """The tracker's name for the run, if it gave one."""
        return self.session.name or (self.summary.name if self.summary else None)

    @property
    def totals(self) -> SessionSummary | SessionTotals:
        """The store's totals the tracker's own should match: including sub-sessions if any."""
        return self.session.with_subsessions or self.session

    def tracker_cost(self) -> float | None:
        """The cost the tracker priced, when the stored spans report none (or another).

        A tracker prices LLM calls from its ``prices``; the store only has the costs spans
        report, so the two can differ. ``None`` when they agree or the tracker has none.
        """
        t = self.summary
        if t is None or t.cost_usd is None:
            return None
        stored = self.totals.cost_usd
        if stored is not None and _format.cost(stored) == _format.cost(t.cost_usd):
            return None
        return t.cost_usd

    @property
    def priced_by(self) -> str:
        """Where :meth:`tracker_cost` comes from, in words."""
        count = _format.subsession_count(self.session)
        scope = f", {_format.with_subsessions_label(count)}" if count else ""
        return f"priced by the tracker{scope}"

    def tracker_note(self) -> str | None:
        """A sentence when the tracker counted other tokens or LLM calls than the store holds.

        The tracker counts the spans that end in its own process; the store, the spans that
        reached it. Spans lost on the way, or made in another process, make them differ.
        """
        t, stored = self.summary, self.totals
        if t is None:
            return None
        if (t.total_tokens, t.llm_calls) == (stored.total_tokens or 0, stored.llm_calls):
            return None
        return (
            f"the tracker counted {t.total_tokens:,} tokens and "
            f"{_format.plural(t.llm_calls, 'LLM call')} as its spans ended; the store holds "
            f"{stored.total_tokens or 0:,} and {stored.llm_calls:,}: spans reached only one of "
            "them (lost before the store, or made in another process)"
        )


def load(store: SessionStore, session_id: str, *, depth: int = 0) -> Run:
    """Read a session and its sub-sessions, down to :data:`MAX_DEPTH` levels.

    Args:
        store: The store to read.
        session_id: The session to load.
        depth: How many levels deep this session is (0 for the one asked for).

    Returns:
        The session as replayed.

    Example:
        >>> with SessionStore() as store:  # doctest: +SKIP
        ...     print(len(load(store, "trip-1").steps))
    """
    return _load(store, session_id, depth, frozenset())


def _load(store: SessionStore, session_id: str, depth: int, seen: frozenset[str]) -> Run:
    found = steps(store, session_id)
    in_steps = [child for step in found for child in step.children]
    loose = [child for child in children(store, session_id) if child not in in_steps]
    sub: dict[str, Run] = {}
    seen = seen | {session_id}
    if depth < MAX_DEPTH:
        for child in [*in_steps, *loose]:
            if child not in seen:  # a malformed store could name a session its own ancestor
                sub[child] = _load(store, child, depth + 1, seen)
    return Run(
        session=store.session(session_id),
        summary=summary(store, session_id),
        steps=found,
        outside=outside_steps(store, session_id),
        loose=loose,
        sub=sub,
    )


def span_tree(step: StoredStep) -> list[tuple[StoredSpan, int]]:
    """The step's spans depth first, siblings in start order, each with its depth.

    The step's own span is at depth 0 and a span whose parent is not in the step hangs under
    it. While the step is still open (its span not yet stored), such spans are at depth 0.

    Example:
        >>> [(span.name, depth) for span, depth in span_tree(step)]  # doctest: +SKIP
        [('step 0: plan', 0), ('ChatCompletion', 1)]
    """
    top = step.span.span_id if step.span else None
    ids = {span.span_id for span in step.spans} | {top}
    kids: dict[str | None, list[StoredSpan]] = {}
    for span in step.spans:  # in start order, so siblings come out in start order
        parent = span.parent_span_id
        if parent not in ids or parent == span.span_id:
            parent = top
        kids.setdefault(parent, []).append(span)
    starts = [step.span] if step.span else kids.get(None, [])
    return depth_first(starts, kids, step.spans, lost_depth=0 if step.span is None else 1)


def depth_first(
    starts: Sequence[StoredSpan],
    kids: Mapping[str | None, Sequence[StoredSpan]],
    spans: Sequence[StoredSpan],
    *,
    depth: int = 0,
    lost_depth: int,
) -> list[tuple[StoredSpan, int]]:
    """A tree of spans depth first from ``starts``, each span once, with its depth.

    ``kids`` maps a span id to its children, in the order they are listed. The spans of
    ``spans`` the walk does not reach (only a parent cycle hides them) follow, from the
    first such span, at ``lost_depth``. Iterative, so a deep or cyclic (malformed) tree
    cannot exhaust the stack.

    Args:
        starts: The spans at the top, in order.
        kids: Each span id's children.
        spans: Every span the tree holds (bar, maybe, the starts).
        depth: The depth of the spans at the top.
        lost_depth: The depth of a span only a parent cycle kept the walk from.

    Returns:
        The spans in the order they are shown, each with its depth.

    Example:
        >>> [(s.name, d) for s, d in depth_first(trace.roots, kids, trace.spans, lost_depth=0)]
        ... # doctest: +SKIP
        [('agent', 0), ('chat', 1)]
    """
    stack = [(span, depth) for span in reversed(starts)]
    ordered: list[tuple[StoredSpan, int]] = []
    seen: set[str] = set()
    while True:
        while stack:
            span, level = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            ordered.append((span, level))
            stack.extend((kid, level + 1) for kid in reversed(kids.get(span.span_id, [])))
        unreached = [span for span in spans if span.span_id not in seen]
        if not unreached:
            return ordered
        stack.append((unreached[0], lost_depth))


def kind_of(span: StoredSpan) -> str:
    """The span's OpenInference kind if it has one, ``LLM`` for a model call, else its kind.

    Example:
        >>> kind_of(span)  # doctest: +SKIP
        'TOOL'
    """
    kind = span.attributes.get(_keys.OI_SPAN_KIND)
    if isinstance(kind, str) and kind:
        return kind
    if is_llm_call(span.attributes):
        return "LLM"
    return span.kind
