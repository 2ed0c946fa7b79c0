"""What a user error looks like from the CLI (the project's standard for bad input), as one assertion."""

from __future__ import annotations


def assert_one_line_error(result, fragment: str | None = None) -> str:
    """``result`` (click's CliRunner) is a user error: exit != 0 through SystemExit (no uncaught exception), no
    traceback, exactly one stderr line starting with ``error: `` (containing ``fragment``), nothing on stdout.
    Returns the line."""
    assert result.exit_code != 0, f"exit code 0; output:\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    if fragment:
        assert fragment in lines[0]
    return lines[0]
