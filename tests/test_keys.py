"""_keys: the dialect table, the keys derived from it, and the user-facing copy in docs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sessiontrace import _keys
from sessiontrace._keys import (
    ALL_DIALECTS,
    DEFAULT_DIALECTS,
    DIALECTS,
    OWNED_KEYS,
    OWNED_PREFIXES,
    SESSION_ID_KEYS,
    USER_ID_KEYS,
    Dialect,
    is_owned_key,
)

ATTRIBUTES_MD = Path(__file__).resolve().parent.parent / "docs" / "attributes.md"

# What each backend reads, written out once more by hand: a renamed key in _keys fails here
# as well as against the docs.
EXPECTED = {
    "openinference": ("session.id", "user.id", "metadata", None, "tag.tags"),
    "genai": ("gen_ai.conversation.id", "user.id", None, None, None),
    "langfuse": (
        "langfuse.session.id",
        "langfuse.user.id",
        None,
        "langfuse.trace.metadata.",
        "langfuse.trace.tags",
    ),
    "traceloop": (
        "traceloop.association.properties.session_id",
        "traceloop.association.properties.user_id",
        None,
        "traceloop.association.properties.",
        None,
    ),
}


def _row(dialect: Dialect) -> tuple[str | None, ...]:
    return (
        dialect.session_id,
        dialect.user_id,
        dialect.metadata,
        dialect.metadata_prefix,
        dialect.tags,
    )


# --- the table ---------------------------------------------------------------------------


def test_the_table_names_each_dialect_by_its_own_name_in_a_fixed_order():
    assert list(DIALECTS) == ["openinference", "genai", "langfuse", "traceloop"]
    for name, dialect in DIALECTS.items():
        assert dialect.name == name
    # processor and configure() accept "all" as this tuple, in the table's order.
    assert tuple(DIALECTS) == ALL_DIALECTS
    assert DEFAULT_DIALECTS == ("openinference", "genai")
    assert set(DEFAULT_DIALECTS) <= set(ALL_DIALECTS)


def test_each_dialect_writes_its_backends_keys():
    assert {name: _row(dialect) for name, dialect in DIALECTS.items()} == EXPECTED
    # Traceloop association properties are plain text; Langfuse encodes every value.
    assert DIALECTS["traceloop"].metadata_text is True
    assert not any(d.metadata_text for n, d in DIALECTS.items() if n != "traceloop")


def test_a_dialect_puts_metadata_in_one_place_only():
    for dialect in DIALECTS.values():
        assert dialect.metadata is None or dialect.metadata_prefix is None, dialect.name
        if dialect.metadata_text:
            assert dialect.metadata_prefix is not None, dialect.name
        if dialect.metadata_prefix is not None:
            assert dialect.metadata_prefix.endswith("."), dialect.name


def test_a_dialect_row_cannot_be_changed():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DIALECTS["genai"].session_id = "conversation"  # type: ignore[misc]


def test_readers_find_the_session_and_user_of_every_dialect():
    # The store and CLI try these in order; OpenInference's key first.
    assert SESSION_ID_KEYS[0] == "session.id"
    assert set(SESSION_ID_KEYS) == {d.session_id for d in DIALECTS.values()}
    assert set(USER_ID_KEYS) == {d.user_id for d in DIALECTS.values()}
    assert len(set(SESSION_ID_KEYS)) == len(SESSION_ID_KEYS)


def test_the_two_context_keys_are_distinct():
    assert _keys.CONTEXT_KEY != _keys.RESTORE_KEY
    assert _keys.CONTEXT_KEY.startswith("sessiontrace.session")


# --- owned keys --------------------------------------------------------------------------


def test_owned_keys_are_every_key_of_every_dialect_and_nothing_else():
    expected = {
        "session.id",
        "user.id",
        "metadata",
        "tag.tags",
        "gen_ai.conversation.id",
        "langfuse.session.id",
        "langfuse.user.id",
        "langfuse.trace.tags",
        "traceloop.association.properties.session_id",
        "traceloop.association.properties.user_id",
    }
    assert expected == OWNED_KEYS
    derived = {
        key
        for dialect in DIALECTS.values()
        for key in (dialect.session_id, dialect.user_id, dialect.metadata, dialect.tags)
        if key is not None
    }
    assert derived == OWNED_KEYS
    prefixes = {d.metadata_prefix for d in DIALECTS.values()} - {None}
    assert set(OWNED_PREFIXES) == prefixes | {"sessiontrace."}


@pytest.mark.parametrize("dialect", ALL_DIALECTS)
def test_every_key_a_dialect_stamps_is_owned(dialect):
    row = DIALECTS[dialect]
    for key in (row.session_id, row.user_id, row.metadata, row.tags):
        if key is not None:
            assert is_owned_key(key), key
    if row.metadata_prefix is not None:
        assert is_owned_key(row.metadata_prefix + "plan")
        assert is_owned_key(row.metadata_prefix + "a.b.c")


@pytest.mark.parametrize(
    "key",
    [
        "sessiontrace.step.index",
        "sessiontrace.summary.total_tokens",
        "sessiontrace.anything.new",
        "langfuse.trace.metadata.plan",
        "traceloop.association.properties.customer",
    ],
)
def test_keys_under_an_owned_prefix_are_owned(key):
    assert is_owned_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "customer.tier",  # a user's own key
        "app.session.id",
        "session.id.extra",
        "session",
        "sessiontrace",  # the prefix needs its dot
        "sessiontrace_step",
        "langfuse.trace.metadata",  # the prefix itself, without a key
        "langfuse.trace.name",
        "traceloop.workflow.name",
        "llm.token_count.prompt",  # instrumentation's, read but not stamped
        "gen_ai.usage.input_tokens",
        "openinference.span.kind",
        "input.value",
        "SESSION.ID",
        "",
    ],
)
def test_keys_sessiontrace_does_not_stamp_are_not_owned(key):
    assert not is_owned_key(key)


# --- the docs' copy of the tables --------------------------------------------------------


def _section(heading: str) -> str:
    text = ATTRIBUTES_MD.read_text(encoding="utf-8")
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _tables(section: str) -> list[list[list[str]]]:
    """Every markdown table in ``section``: rows of cells, the separator row left out."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in section.splitlines():
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def _code(cell: str) -> str | None:
    """The first `code` span of a cell; None for a dash (the dialect has no such key)."""
    if cell == "—":
        return None
    match = re.search(r"`([^`]+)`", cell)
    assert match, f"no key in the docs' cell {cell!r}"
    return match.group(1)


def test_the_docs_dialect_table_lists_the_keys_each_dialect_writes():
    (table,) = _tables(_section("What each dialect writes"))
    header, *rows = table
    assert header[0] == "concept"
    assert [_code(cell) for cell in header[1:]] == list(ALL_DIALECTS)
    by_concept = {row[0]: [_code(cell) for cell in row[1:]] for row in rows}
    assert set(by_concept) == {"session id", "user id", "metadata", "tags"}
    for column, name in enumerate(ALL_DIALECTS):
        dialect = DIALECTS[name]
        assert by_concept["session id"][column] == dialect.session_id, name
        assert by_concept["user id"][column] == dialect.user_id, name
        assert by_concept["tags"][column] == dialect.tags, name
        metadata = by_concept["metadata"][column]
        if metadata is not None and metadata.endswith("<key>"):
            assert dialect.metadata is None, name
            assert metadata.removesuffix("<key>") == dialect.metadata_prefix, name
        else:
            assert metadata == dialect.metadata, name
            assert dialect.metadata_prefix is None, name


def test_the_docs_list_the_keys_readers_try_in_their_order():
    section = _section("Keys sessiontrace reads")
    prose = " ".join(section.split())
    sessions = re.search(r"find a span's session under (.*?) \(in that order\)", prose)
    users = re.search(r"its user under (.*?), and its token counts", prose)
    assert sessions and users
    assert tuple(re.findall(r"`([^`]+)`", sessions.group(1))) == SESSION_ID_KEYS
    assert tuple(re.findall(r"`([^`]+)`", users.group(1))) == USER_ID_KEYS


def test_the_docs_token_families_are_the_keys_totals_read():
    tables = _tables(_section("Keys sessiontrace reads"))
    families = next(t for t in tables if t[0][0] == "family")
    rows = {row[0]: row[1:] for row in families[1:]}
    assert [_code(c) for c in rows["OpenInference"]] == [
        _keys.OI_TOKENS_PROMPT,
        _keys.OI_TOKENS_COMPLETION,
        _keys.OI_TOKENS_TOTAL,
    ]
    assert [_code(c) for c in rows["OpenTelemetry GenAI"][:2]] == [
        _keys.GENAI_INPUT_TOKENS,
        _keys.GENAI_OUTPUT_TOKENS,
    ]
    assert [_code(c) for c in rows["Traceloop (legacy)"]] == [
        _keys.TRACELOOP_PROMPT_TOKENS,
        _keys.TRACELOOP_COMPLETION_TOKENS,
        _keys.TRACELOOP_TOTAL_TOKENS,
    ]


def test_the_docs_list_every_key_under_the_sessiontrace_prefix():
    tables = _tables(_section("Keys sessiontrace reads"))
    own = next(t for t in tables if t[0][0] == "key")
    documented = {_code(row[0]) for row in own[1:]}
    assert documented == {
        _keys.STEP_INDEX,
        _keys.SPAN_TYPE,
        _keys.STEP_NAME,
        _keys.STATE,
        _keys.SESSION_NAME,
        _keys.PARENT_SESSION_ID,
        _keys.PARENT_TRACE_IDS,
        _keys.STATUS,
        _keys.SUMMARY_PREFIX + "*",
    }
    assert all(key.startswith(_keys.PREFIX) for key in documented if key)
