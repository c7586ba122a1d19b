"""Programs of their own for the tests: a free loopback port, a clean environment, a run.

A program a test starts (``sessiontrace ui``, a writer, a migration original) must not read
the settings of the shell that started the suite: ``clean_env`` leaves out every ``OTEL_*``
and ``SESSIONTRACE_*`` variable, and any further prefixes a test names.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clean_env(*prefixes: str) -> dict[str, str]:
    """This process's environment without ``OTEL_*``, ``SESSIONTRACE_*`` and ``prefixes``."""
    left_out = ("OTEL_", "SESSIONTRACE_", *prefixes)
    return {k: v for k, v in os.environ.items() if not k.startswith(left_out)}


def run_program(source: str, *args: str) -> None:
    """Run ``source`` as a Python program of its own with ``args``; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", source, *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
