"""The examples in docstrings, the README and docs/ run, and say what they show.

Each ```python block of a document runs on its own, in a fresh interpreter started in an
empty directory with no SESSIONTRACE_* or OTEL_* variables, the way a reader who copies it
into a file runs it. Two marks, on the line before a block, change that:

- ``<!-- fragment: continues the block above -->``: the block goes on from the one before it
  (which may itself be a fragment); it runs joined to the blocks it continues.
- ``<!-- after: python examples/NAME.py ARGS -->``: the block reads what that example
  records (the text before it says so); the example runs first, in the same directory.
- ``<!-- not run in tests: <reason> -->``: the block cannot run here (it would export to a
  remote host); it must still compile, and name nothing it does not define or import.

The ``sessiontrace`` commands in bash and console blocks name only subcommands and options
that the command line accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import doctest
import importlib
import io
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import sessiontrace
from sessiontrace.cli._main import _parser

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
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARK = "<!-- not run in tests:"
FRAGMENT_MARK = "<!-- fragment: continues the block above -->"
AFTER_MARK = re.compile(r"<!-- after: python (examples/\w+\.py)((?: [\w.=-]+)*) -->")
# A fence at the start of a line; group 1 is the line before it, if it is an HTML comment.
FENCE = re.compile(r"(?:^(<!--[^\n]*-->)\n)?^```(\w+)\n(.*?)^```$", re.M | re.S)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    code: str  # the block's own text
    whole: str  # what runs: the block, after the blocks it continues if it is a fragment
    run: bool  # False for a block marked as not run (or a fragment of one)
    after: tuple[str, ...] = ()  # the example that runs first, and its arguments

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(path: Path, language: str) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found: list[Block] = []
    previous: Block | None = None
    for match in FENCE.finditer(text):
        mark, lang, code = match.group(1) or "", match.group(2), match.group(3)
        line = text.count("\n", 0, match.start(2)) + 1
        if lang != language:
            continue
        whole, run, after = code, not mark.startswith(SKIP_MARK), ()
        if mark == FRAGMENT_MARK:
            assert previous is not None, f"{path.name}:{line}: a fragment with no block above"
            whole, run, after = previous.whole + code, previous.run, previous.after
        elif mark.startswith("<!-- after:"):
            example = AFTER_MARK.fullmatch(mark)
            assert example, f"{path.name}:{line}: {mark} names no example and arguments"
            after = (example.group(1), *example.group(2).split())
        block = Block(path, line, lang, code, whole, run, after)
        found.append(block)
        previous = block
    return found


def python_blocks() -> list[Block]:
    return [block for path in DOCUMENTS for block in blocks(path, "python")]


def user_env() -> dict[str, str]:
    """The environment of a reader's shell: none of our settings or OpenTelemetry's."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SESSIONTRACE_", "OTEL_", "PYTEST_"))
    }


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_no_python_block_is_lost_to_the_pattern(path):
    text = path.read_text(encoding="utf-8")
    found = blocks(path, "python")
    ran = sum(block.run for block in found)
    not_run = sum(not block.run for block in found)
    assert ran + not_run == text.count("```python\n"), "a python block was neither run nor marked"
    # Each mark sits on a block the pattern found: the blocks not run are the marked ones
    # and the fragments that continue them.
    marked = len(re.findall(re.escape(SKIP_MARK) + r"[^\n]*-->\n```python\n", text))
    assert marked == sum(not block.run and block.whole == block.code for block in found)
    assert len(re.findall(re.escape(FRAGMENT_MARK) + r"\n```python\n", text)) == sum(
        block.whole != block.code for block in found
    )


@pytest.mark.parametrize(
    "block", [b for b in python_blocks() if b.run], ids=lambda block: block.name
)
def test_python_block_runs_alone(block, tmp_path):
    # As a reader runs it: pasted into a file, run with a fresh interpreter in an empty
    # directory. A file, not `python -c`: a process pool's workers import the main module.
    if block.after:
        example, *arguments = block.after
        subprocess.run(
            [sys.executable, str(ROOT / example), *arguments],
            cwd=tmp_path,
            env=user_env(),
            capture_output=True,
            check=True,
            timeout=60,
        )
    script = tmp_path / "example.py"
    script.write_text(block.whole, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{block.name} failed:\n{done.stderr}"
    assert done.stderr == "", f"{block.name} wrote to stderr:\n{done.stderr}"
    for shown in printed(block.whole):
        assert shown in done.stdout, (
            f"{block.name}: the comment says {shown!r}, it printed:\n{done.stdout}"
        )


def printed(code: str) -> list[str]:
    """What a block's comments say its prints show.

    The comment at the end of a ``print(...)`` line, or the comment-only line after it, is
    the output; prose about the call goes on the line above it.
    """
    lines = code.splitlines()
    shown = []
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if not line.lstrip().startswith("print("):
            continue
        if "  # " in line:
            shown.append(line.split("  # ", 1)[1].strip())
        elif after.lstrip().startswith("# "):
            shown.append(after.lstrip()[2:].strip())
    return shown


@pytest.mark.parametrize(
    "block", [b for b in python_blocks() if not b.run], ids=lambda block: block.name
)
def test_python_block_not_run_still_compiles(block):
    compile(block.whole, block.name, "exec")
    # A block that uses a name it neither defines nor imports fails for a reader who copies
    # it; ruff's undefined-name check finds that without running it.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--select",
            "F821",
            "--output-format",
            "concise",
            "--stdin-filename",
            "block.py",
            "-",
        ],
        input=block.whole,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{block.name}:\n{done.stdout}{done.stderr}"


def sessiontrace_commands(block: Block) -> list[list[str]]:
    """The argument lists of every ``sessiontrace`` command in a bash or console block."""
    commands = []
    for raw in block.code.splitlines():
        line = raw.strip()
        if block.language == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in {"&&", "||", "|", ";", ">", ">>", "&"}:
                if words and words[0] == "sessiontrace":
                    commands.append(words[1:])
                words = [] if token != ">" else ["(redirect)"]
            else:
                words.append(token)
    return commands


SHELL_BLOCKS = [
    block
    for path in DOCUMENTS
    for language in ("bash", "console")
    for block in blocks(path, language)
]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def parses(argv: list[str]) -> str | None:
    """None if the command line accepts argv, else argparse's complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0
            return err.getvalue().strip()
    # argparse also takes a prefix of an option (`--older` for `--older-than`): the docs
    # name each option in full, so a renamed one cannot pass as the prefix of another.
    command = next((word for word in argv if word in subcommands()), None)
    known = options(_parser()) | (options(subcommands()[command]) if command else set())
    for word in argv:
        if word.startswith("-") and word.split("=")[0] not in known:
            return f"{word} is not the full name of an option"
    return None


@pytest.mark.parametrize(
    "block",
    [block for block in SHELL_BLOCKS if sessiontrace_commands(block)],
    ids=lambda block: block.name,
)
def test_shell_blocks_name_real_subcommands_and_options(block):
    for argv in sessiontrace_commands(block):
        assert parses(argv) is None, (
            f"{block.name}: sessiontrace {shlex.join(argv)}: {parses(argv)}"
        )


def test_shell_blocks_together_show_every_subcommand():
    # The check above cannot pass by finding no commands: the docs use each subcommand.
    used = {
        _parser().parse_args(argv).command
        for block in SHELL_BLOCKS
        for argv in sessiontrace_commands(block)
        if parses(argv) is None and not {"--help", "--version"} & set(argv)
    }
    assert used == set(subcommands())


SESSION_COMMANDS = {"show", "replay", "timeline", "doctor"}


@pytest.mark.parametrize(
    "block",
    [block for block in SHELL_BLOCKS if block.language == "bash" and sessiontrace_commands(block)],
    ids=lambda block: block.name,
)
def test_bash_blocks_name_no_session_a_reader_has_not_recorded(block):
    # A bash block is for a reader to type. A session id in one is `latest` or a placeholder
    # (SESSION_ID): an id that only the author's store holds fails for everyone else.
    # (Console blocks are transcripts: the text around them says how their ids were made.)
    for argv in sessiontrace_commands(block):
        args = _parser().parse_args(argv)
        session_id = getattr(args, "session_id", None)
        if args.command in SESSION_COMMANDS and session_id is not None:
            assert session_id == "latest" or session_id.isupper(), (
                f"{block.name}: sessiontrace {shlex.join(argv)} names a session no example records"
            )


def readme_commands() -> list[str]:
    return [block.code.strip() for block in blocks(ROOT / "README.md", "bash")][:2]


def venv_of(command: str) -> str:
    match = re.match(r"python3 -m venv (\S+) && \. (\S+)/bin/activate && ", command)
    assert match and match.group(1) == match.group(2), command
    return match.group(1)


def test_readme_starts_with_the_two_commands():
    run_example, run_tests = readme_commands()
    assert "python examples/chatbot.py" in run_example
    assert "sessiontrace show" in run_example
    assert run_tests.endswith('pip install -e ".[test]" && pytest')
    # The test extra pins OpenTelemetry versions that the plain install may not pick: in one
    # venv, the second command would downgrade what the first installed.
    assert venv_of(run_example) != venv_of(run_tests)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert run_tests in ci.splitlines() or f"{run_tests} || exit 1" in ci.splitlines()


def test_contributing_sets_up_the_venv_the_readme_tests_in():
    (_, run_tests) = readme_commands()
    setup = blocks(ROOT / "CONTRIBUTING.md", "bash")[0].code.strip()
    assert venv_of(setup) == venv_of(run_tests)
