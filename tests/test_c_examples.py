"""The C examples of this session's features at every clang level, and under AddressSanitizer.

examples/c/*.c are ctests at -O0 and -O2 (CMakeLists.txt); here the ones for
heap memory, calls that stay calls, split mode, structs by value and vector
forward mode run at -O0..-O3 (inlining, and so what reaches enzpy, changes
with the level: whether a struct goes byval or in registers, which calls
stay calls), and the ones that allocate are linked once more with
AddressSanitizer, which fails the program on a leak, a double free or a read
of freed memory (shadow blocks, frames and tapes must be freed exactly once,
and the reverse sweep must not read a block the program freed). Each program
checks its derivatives against central finite differences, a width-1 call
or the combined-mode gradient, and exits non-zero on a mismatch; the number
of checks that passed is counted too, so that a program that checks nothing
fails.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, EXAMPLES, build_and_run, needs_clang

CHECKS = {"heap.c": 21, "recursion.c": 33, "split_mode.c": 14, "structs.c": 19, "width.c": 18}
ALLOCATING = ("heap.c", "recursion.c", "split_mode.c")


def example_source(name: str) -> str:
    """An example with enzyme.h pasted in (the test builds it in a folder of its own)."""
    return (EXAMPLES / name).read_text().replace('#include "enzyme.h"', (EXAMPLES / "enzyme.h").read_text())


def sanitizer_links() -> bool:
    if CLANG is None:
        return False
    probe = subprocess.run([CLANG, "-fsanitize=address", "-x", "c", "-", "-o", "/dev/null"],
                           input="int main(void) { return 0; }", capture_output=True, text=True)
    return probe.returncode == 0


def run_under_sanitizer(tmp_path, text: str, level: str) -> subprocess.CompletedProcess:
    """clang `level` -> enzpy opt -> clang with AddressSanitizer -> run; asserts it exits 0."""
    source, primal, derivative, executable = (tmp_path / name for name in ("p.c", "p.ll", "p.d.ll", "p"))
    source.write_text(text)
    subprocess.run([CLANG, level, "-S", "-emit-llvm", str(source), "-o", str(primal)], check=True)
    assert main(["opt", str(primal), "-o", str(derivative)]) == 0
    subprocess.run([CLANG, "-O1", "-fsanitize=address", str(derivative), "-o", str(executable), "-lm"], check=True)
    finished = subprocess.run([str(executable)], capture_output=True, text=True,
                              env={"ASAN_OPTIONS": "detect_leaks=1"})
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
@pytest.mark.parametrize("example", sorted(CHECKS))
def test_example_at_every_level(tmp_path, example, level):
    finished = build_and_run(tmp_path, example_source(example), level)
    assert finished.stdout.count(" ok\n") == CHECKS[example], finished.stdout


@needs_clang
@pytest.mark.skipif(not sanitizer_links(), reason="clang cannot link AddressSanitizer's runtime here")
@pytest.mark.parametrize("level", ["-O0", "-O2"])
@pytest.mark.parametrize("example", ALLOCATING)
def test_example_frees_everything_once(tmp_path, example, level):
    finished = run_under_sanitizer(tmp_path, example_source(example), level)
    assert finished.stdout.count(" ok\n") == CHECKS[example], finished.stdout
