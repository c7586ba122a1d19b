"""What a type checker sees of the public API: mypy on tests/data/typed_usage.py.

That file decorates functions with ``observe`` and ``suppress_tracing`` and states the types
mypy must infer (``assert_type``); one call passes a wrong argument on purpose, and must be
the one error mypy reports.
"""

from __future__ import annotations

from pathlib import Path

from mypy import api

USAGE = Path(__file__).parent / "data" / "typed_usage.py"


def test_decorated_functions_keep_their_signatures_for_type_checkers():
    stdout, stderr, status = api.run(
        [str(USAGE), "--no-incremental", "--follow-imports=silent", "--hide-error-context"]
    )
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    wrong_call = next(
        number
        for number, line in enumerate(USAGE.read_text().splitlines(), 1)
        if line.startswith("bare(42)")
    )
    assert len(errors) == 1, stdout + stderr
    assert f"typed_usage.py:{wrong_call}: error: Argument 1 to \"bare\"" in errors[0], errors
    assert status == 1
