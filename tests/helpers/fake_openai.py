"""The fake OpenAI server the examples use (examples/fake_openai_server.py), for the tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from fake_openai_server import REPLY, FakeOpenAI, words

__all__ = ["REPLY", "FakeOpenAI", "words"]
