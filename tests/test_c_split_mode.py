"""Mistakes in split-mode calls (frontend/split_mode.py) are errors naming them.

examples/c/split_mode.c (a time loop reversed step by step against the
combined gradient, tape memory the program owns) runs in tests/test_c_examples.py.
"""

from __future__ import annotations

import subprocess

import pytest

from enzpy.cli import main
from tests.test_c_frontend import CLANG, PRELUDE, needs_clang

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
