"""The examples in docstrings, the README and docs/ run, and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import sessiontrace

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    [
        # The package itself: the public classes and functions say they are its own, so
        # their examples are found there.
        "sessiontrace",
        *(
            module.name
            for module in pkgutil.walk_packages(sessiontrace.__path__, "sessiontrace.")
            if not module.name.endswith("__main__")
        ),
    ]
)
SKIP_MARK = "<!-- not run in tests"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def python_blocks(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"(<!--[^\n]*-->\n)?```python\n(.*?)```", text, re.S):
        if match.group(1) and match.group(1).startswith(SKIP_MARK):
            continue
        blocks.append(match.group(2))
    return blocks


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_markdown_python_blocks_run(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_example"}
    ran = 0
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)
        ran += 1
    # Every python block ran, except those marked as not run: none is lost to the pattern.
    text = path.read_text(encoding="utf-8")
    marked = len(re.findall(re.escape(SKIP_MARK) + r"[^\n]*-->\n```python\n", text))
    assert ran + marked == text.count("```python\n"), "a python block was neither run nor marked"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert "python examples/chatbot.py" in commands[0]
    assert "sessiontrace show" in commands[0]
    assert 'pip install -e ".[test]" && pytest' in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && pytest' in ci
