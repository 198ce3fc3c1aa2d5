"""Errors in the user's terms (enzpy/messages.py): the first line names the construct, the Python
function, the file and line; the line's text and what to do follow; IR details come last."""

import inspect

import numpy as np
import pytest

from enzpy import Const, DifferentiationError, Duplicated, differentiate
from enzpy.messages import for_user, python_name


def chooses_a_constant(x, c, flag):
    chosen = x if flag > 0 else c
    total = 0.0
    for i in range(chosen.size):
        total += chosen[i] * chosen[i]
    return total


def factors(x):
    centred = x - np.mean(x)
    q, r = np.linalg.qr(np.outer(centred, centred) + np.eye(x.size))
    return np.sum(r)


def line_of(function, text) -> int:
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_numba_symbols_become_python_names():
    assert python_name("_ZN5tests7kernels5lists6statesB3v57B54c8tJTC_2fWwGaMLSg_3d_3dE5ArrayIdLi1E") \
        == "tests.kernels.lists.states"
    assert python_name("_ZN8__main__12_3clambda_3eB2v1E") == "__main__.<lambda>"
    assert python_name("plain_c_function") == "plain_c_function"


def test_a_constant_meeting_a_differentiated_array_is_explained():
    kernel = differentiate(chooses_a_constant)
    with pytest.raises(DifferentiationError) as caught:
        kernel.autodiff(Duplicated(np.ones(3), np.zeros(3)), Const(np.ones(3)), Const(1))
    first, source_text, hint, details = str(caught.value).splitlines()
    line = line_of(chooses_a_constant, "chosen = x if")
    assert first.startswith("a pointer merges differentiable memory")
    assert f"in '{__name__}.chooses_a_constant', Python source {__file__}:{line}" in first
    assert "@" not in first and "block" not in first                # no IR names up front
    assert source_text.strip() == "chosen = x if flag > 0 else c"
    assert hint.startswith("  what to do:") and "Duplicated" in hint and ".copy()" in hint
    assert details.startswith("  details: function @_ZN") and "block '" in details


def test_an_unsupported_numpy_call_names_itself_and_its_line():
    with pytest.raises(DifferentiationError) as caught:
        differentiate(factors).value_and_grad(np.linspace(0.0, 1.0, 4))
    first = str(caught.value).splitlines()[0]
    assert first.startswith("call to np.linalg.qr")
    assert f"in '{__name__}.factors', Python source {__file__}:{line_of(factors, 'np.linalg.qr')}" in first


def test_a_message_without_ir_details_keeps_its_text():
    assert for_user("the kernel returns a set", "'m.k' (m.py:3)") == \
        "the kernel returns a set: in kernel 'm.k' (m.py:3)\n  details: none; kernel 'm.k' (m.py:3)"
