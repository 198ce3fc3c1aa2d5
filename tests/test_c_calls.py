"""C functions that stay calls: recursion and noinline helpers (frontend/c_calls.py, ad/calls.py).

examples/c/recursion.c is a ctest at -O0 and -O2; here it runs at every level
and under AddressSanitizer (the reverse sweep's frames and shadow blocks are
freed exactly once). Each program checks its gradients against central finite
differences and its forward-mode tangents against the gradients.
"""

from __future__ import annotations

import pytest

from tests.test_c_frontend import EXAMPLES, build_and_run, needs_clang
from tests.test_c_heap import run_under_sanitizer, sanitizer_links

RECURSION = (EXAMPLES / "recursion.c").read_text().replace('#include "enzyme.h"',
                                                         (EXAMPLES / "enzyme.h").read_text())
CHECKS = 33


@needs_clang
@pytest.mark.parametrize("level", ["-O0", "-O1", "-O2", "-O3"])
def test_recursion_and_noinline_helpers_in_both_modes(tmp_path, level):
    finished = build_and_run(tmp_path, RECURSION, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout


@needs_clang
@pytest.mark.skipif(not sanitizer_links(), reason="clang cannot link AddressSanitizer's runtime here")
@pytest.mark.parametrize("level", ["-O0", "-O2"])
def test_recursion_frees_each_frame_once(tmp_path, level):
    finished = run_under_sanitizer(tmp_path, RECURSION, level)
    assert finished.stdout.count(" ok\n") == CHECKS, finished.stdout
