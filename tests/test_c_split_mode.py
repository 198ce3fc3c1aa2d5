"""Enzyme's split reverse mode in C (frontend/split_mode.py): __enzyme_augmentfwd, __enzyme_reverse,
__enzyme_augmentsize.

examples/c/split_mode.c is a ctest at -O0 and -O2; here it runs at every
level and under AddressSanitizer (each tape is freed once, by the reverse
call, or left to the program when it owns the memory). The program compares
a time loop reversed step by step with the combined gradient of the whole
loop, and the scalar cases with finite differences.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, EXAMPLES, PRELUDE, build_and_run, needs_clang
from tests.test_c_heap import run_under_sanitizer, sanitizer_links

SPLIT = (EXAMPLES / "split_mode.c").read_text().replace('#include "enzyme.h"', (EXAMPLES / "enzyme.h").read_text())
CHECKS = 14


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
def test_split_mode_matches_the_combined_gradient(tmp_path, level):
    finished = build_and_run(tmp_path, SPLIT, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout


@needs_clang
@pytest.mark.skipif(not sanitizer_links(), reason="clang cannot link AddressSanitizer's runtime here")
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_split_mode_frees_each_tape_once(tmp_path, level):
    finished = run_under_sanitizer(tmp_path, SPLIT, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout


DECLARATIONS = r"""
extern int enzyme_allocated, enzyme_tape;
void *__enzyme_augmentfwd(void *, ...);
void __enzyme_augmentfwd_void(void *, ...);
void __enzyme_reverse(void *, ...);
void scale(double *x, int n) { for (int i = 0; i < n; i++) x[i] = x[i] * x[i]; }
"""
ERRORS = {
    "tape too small": ("char buffer[8]; __enzyme_augmentfwd_void((void *)scale, enzyme_allocated, 8, "
                       "enzyme_tape, buffer, x, dx, 2);", ["enzyme_allocated gives 8 bytes", "takes 96"]),
    "void without owned tape": ("__enzyme_augmentfwd_void((void *)scale, x, dx, 2);",
                                ["declared void, so the tape enzpy allocates would be lost"]),
    "reverse without tape": ("__enzyme_reverse((void *)scale, x, dx, 2);", ["passes no tape"]),
    "tape without size": ("char buffer[128]; __enzyme_augmentfwd_void((void *)scale, enzyme_tape, buffer, "
                          "x, dx, 2);", ["enzyme_tape without enzyme_allocated"]),
}


@needs_clang
@pytest.mark.parametrize("case", sorted(ERRORS))
def test_split_mode_mistakes_are_named(tmp_path, capsys, case):
    statement, expected = ERRORS[case]
    source = PRELUDE + DECLARATIONS + "int main(void) { double x[2] = {1, 2}, dx[2] = {0}; " + statement \
        + " return 0; }\n"
    (tmp_path / "p.c").write_text(source)
    subprocess.run([CLANG, "-O1", "-S", "-emit-llvm", str(tmp_path / "p.c"), "-o", str(tmp_path / "p.ll")],
                   check=True)
    assert main(["opt", str(tmp_path / "p.ll"), "-o", str(tmp_path / "out.ll")]) == 2
    message = capsys.readouterr().err
    for fragment in expected:
        assert fragment in message, message
