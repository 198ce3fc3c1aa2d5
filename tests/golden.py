"""Compare an analysis printout with its golden file, line by line.

Set ENZPY_REGENERATE_GOLDEN=1 to rewrite the golden files after an intended
change, then review the diff.
"""

import os
from pathlib import Path


def assert_matches_golden(case: Path, actual: str) -> None:
    """`actual` must equal `case`'s `.expected` file, line for line."""
    expected_path = case.with_suffix(".expected")
    if os.environ.get("ENZPY_REGENERATE_GOLDEN"):
        expected_path.write_text(actual)
    expected = expected_path.read_text().splitlines()
    actual_lines = actual.splitlines()
    for number, (want, got) in enumerate(zip(expected, actual_lines), 1):
        assert got == want, f"{case.name} line {number}:\n  expected: {want}\n  actual:   {got}"
    assert len(actual_lines) == len(expected), f"{case.name}: {len(actual_lines)} lines, expected {len(expected)}"
