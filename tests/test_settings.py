"""_settings: each configure() setting is declared once, and what documents it agrees."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from sessiontrace import configure
from sessiontrace._settings import SETTINGS, check_arguments, resolve

ROOT = Path(__file__).resolve().parent.parent
NOT_SETTINGS = {"exporters", "tracer_provider", "batch"}  # no environment variable


def argument_docs() -> dict[str, str]:
    """configure()'s Args section, one paragraph per argument."""
    doc = inspect.getdoc(configure) or ""
    section = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0]
    return {
        match.group(1): match.group(2)
        for match in re.finditer(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", section, re.S | re.M)
    }


def test_every_setting_is_an_argument_of_configure_and_no_argument_is_forgotten():
    parameters = set(inspect.signature(configure).parameters)
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
    assert set(names) == parameters - NOT_SETTINGS


def test_each_arguments_doc_names_exactly_its_settings_variables():
    docs = argument_docs()
    for setting in SETTINGS:
        named = set(re.findall(r"\b(?:OTEL|SESSIONTRACE)_[A-Z_]+\b", docs[setting.name]))
        assert named == set(setting.env), setting.name


def test_the_settings_table_in_the_docs_matches_the_declarations():
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    rows = {
        match.group(1): re.findall(r"`([A-Z_]+)`", match.group(2))
        for match in re.finditer(r"^\| `(\w+)` \| ([^|]*) \|", text, re.M)
    }
    assert rows == {setting.name: list(setting.env) for setting in SETTINGS}


def test_argument_then_variable_then_default():
    environ = {"SESSIONTRACE_QUEUE_SIZE": "77", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert resolve({"queue_size": 5}, environ)["queue_size"] == 5
    assert resolve({}, environ)["queue_size"] == 77
    assert resolve({}, {})["queue_size"] == 8192
    # The first variable set wins: the traces-specific one before the general one.
    both = {**environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert resolve({}, both)["protocol"] == "http/protobuf"


def test_each_setting_checks_its_argument_by_its_own_name():
    valid = {name: None for name in (s.name for s in SETTINGS)}
    valid.update(exporters=(), tracer_provider=None, batch=True)
    for setting in SETTINGS:
        with pytest.raises((TypeError, ValueError), match=rf"configure\({setting.name}=\.\.\.\)"):
            check_arguments({**valid, setting.name: object()})
