"""Keep the ``session_tags`` summary table: which tags each session's spans carry.

A span's tags are the str values of its ``tag.tags`` (OpenInference) and
``langfuse.trace.tags`` (Langfuse) attributes, each an array of str; a session's tags are the
union over its spans. :func:`add` folds a batch's rows in at ingest, and :func:`rebuild`
recomputes chosen sessions (or all) from their spans. Both read a span's tags with the same
function, :func:`tags_of`, so they agree exactly, whatever the attribute JSON holds: SQLite's
``json_each`` would not do for the rebuild, since it refuses the whole document of a span
with a NaN or infinite float attribute (which the exporter writes as ``NaN``, as ``json``
does), where ingest still reads that span's tags.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sessiontrace import _keys
from sessiontrace.store._schema import COLUMNS, in_chunks

Row = Sequence[Any]

_SESSION_AT = COLUMNS.index("session_id")
_ATTRIBUTES_AT = COLUMNS.index("attributes")

# A key is found as text. Inside a JSON string every quote is escaped, so "<key>": not after a
# backslash can only be a key (after one, it is the end of another key: "x\"<key>":). The
# compact JSON ``_span_rows.to_json`` writes then has the value right after the colon, read
# with raw_decode, and it belongs to the top-level object unless an object value (the SDK
# takes mappings as attribute values) opened before the key: in compact JSON such a "{"
# follows ":", "[" or ",". Where one of those pairs comes before the key (as text in a string
# value, mostly), or the value does not decode there (JSON with spaces, from another
# program), the whole document is decoded instead. Tags are set as a span starts, so they
# mostly come before the long values, and the finds stop early.
_KEYS = (_keys.OI_TAGS, _keys.LANGFUSE_TAGS)
_NEEDLES = tuple(f'"{key}":' for key in _KEYS)
_LOOKUPS = tuple((needle, key, len(needle)) for needle, key in zip(_NEEDLES, _KEYS, strict=True))
_OBJECT_VALUES = (":{", "[{", ",{")
_DECODER = json.JSONDecoder()
_NOTHING: tuple[str, ...] = ()

_INSERT = "INSERT OR IGNORE INTO session_tags (session_id, tag) VALUES (?, ?)"
# Only the spans whose attributes hold either key as text go through tags_of. The attributes
# are read as bytes and decoded leniently, so one row that is not UTF-8 cannot stop a rebuild.
_TAGGED = (
    "SELECT session_id, CAST(attributes AS BLOB) FROM spans "
    "WHERE typeof(session_id) = 'text' AND ({})".format(
        " OR ".join(f"instr(attributes, '{needle}') > 0" for needle in _NEEDLES)
    )
)


def tags_of(attributes: str, cache: dict[str, tuple[str, ...]] | None = None) -> tuple[str, ...]:
    """The tags in a span's attribute JSON text: the non-empty str values of either key's
    array, in order, possibly repeated; nothing for anything malformed (never raises).

    ``cache`` maps an array's JSON text to its tags, for a batch whose spans repeat them
    (``_array_at`` fills it).

    Example:
        >>> tags_of('{"session.id":"chat-1","tag.tags":["a","b"],"langfuse.trace.tags":["a"]}')
        ('a', 'b', 'a')
        >>> tags_of('{"tag.tags":"not an array","langfuse.trace.tags":[1,"",null,"ok"]}')
        ('ok',)
    """
    if cache is None:
        cache = {}
    found = _NOTHING
    whole: Any = None
    for needle, key, after in _LOOKUPS:
        at = attributes.find(needle)
        while at > 0 and attributes[at - 1] == "\\":
            at = attributes.find(needle, at + 1)
        if at <= 0:
            continue
        tags = None
        if attributes.find("{", 1, at) < 0 or not _object_before(attributes, at):
            # The first "]" ends the array unless a tag holds one: a cached text is a whole
            # array, so where the text up to the first "]" is one, the value there is that.
            start = at + after
            end = attributes.find("]", start) + 1
            text = attributes[start:end] if end else ""
            tags = cache.get(text)
            if tags is None:
                tags = _array_at(attributes, start, end, cache)
        if tags is None:  # an object before the key, or no value that decodes after it
            if whole is None:
                whole = _decoded(attributes)
            tags = _str_tags(whole.get(key))
        found = found + tags if found else tags
    return found


def _object_before(attributes: str, at: int) -> bool:
    return any(attributes.find(pair, 1, at) >= 0 for pair in _OBJECT_VALUES)


def _array_at(
    attributes: str, start: int, end: int, cache: dict[str, tuple[str, ...]]
) -> tuple[str, ...] | None:
    try:
        value, stop = _DECODER.raw_decode(attributes, start)
    except (ValueError, RecursionError):
        return None
    tags = _str_tags(value)
    if stop == end:
        cache[attributes[start:end]] = tags
    return tags


def _decoded(attributes: str) -> dict[str, Any]:
    try:
        whole = json.loads(attributes)
    except (ValueError, RecursionError):
        return {}
    return whole if isinstance(whole, dict) else {}


def _str_tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return _NOTHING
    return tuple(tag for tag in value if isinstance(tag, str) and tag and _storable(tag))


def _storable(tag: str) -> bool:
    # JSON may escape a lone surrogate ("\ud800"), which SQLite cannot take as text.
    if tag.isascii():
        return True
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def add(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    """Add the tags of ``rows`` (just inserted, each with a session) to ``session_tags``,
    inside the caller's transaction."""
    cache: dict[str, tuple[str, ...]] = {}
    found: set[tuple[str, tuple[str, ...]]] = set()
    for row in rows:
        # A session's spans mostly repeat the same tags: each (session, tags) is expanded once.
        attributes = row[_ATTRIBUTES_AT]
        if isinstance(attributes, str):
            found.add((row[_SESSION_AT], tags_of(attributes, cache)))
    pairs = {(session_id, tag) for session_id, tags in found for tag in tags}
    if pairs:
        conn.executemany(_INSERT, pairs)


def rebuild(conn: sqlite3.Connection, session_ids: Collection[str] | None) -> None:
    """Recompute the tags of these sessions (``None``: of every session) from their spans,
    inside the caller's transaction, after their rows in ``session_tags`` were deleted."""
    if session_ids is None:
        _insert_from(conn, conn.execute(_TAGGED))
        return
    for chunk, marks in in_chunks(list(session_ids)):
        _insert_from(conn, conn.execute(_TAGGED + f" AND session_id IN ({marks})", chunk))


def _insert_from(conn: sqlite3.Connection, found: Iterable[tuple[str, bytes]]) -> None:
    # The spans are read one at a time (a whole store's attributes need not fit in memory);
    # what is kept is each distinct (session, tag) pair.
    cache: dict[str, tuple[str, ...]] = {}
    pairs = {
        (session_id, tag)
        for session_id, raw in found
        for tag in tags_of(raw.decode("utf-8", "replace"), cache)
    }
    if pairs:
        conn.executemany(_INSERT, pairs)
