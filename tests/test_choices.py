"""Operations that return one of their operands: select, min / max in every spelling.

The derivative of `choose(g(x), c)` is g'(x) where g(x) is chosen and 0 where
the constant is. Written as partials 1 and 0, the second case is 0 * g'(x),
which is NaN when g'(x) is infinite (sqrt at 0) or NaN (x log x at 0). Every
choice rule is checked here at such points, in both modes, on both frontends:
hand-written IR through `enzpy grad` (each intrinsic and libm name, double
and float), numba kernels, and clang-compiled C (tests/test_c_frontend.py and
examples/c/choices.c). Ties follow the branch the program took.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from numba import njit

from enzpy import Duplicated, differentiate
from enzpy.frontend.clang import add_derivative
from enzpy.jit import CompiledModule
from enzpy.rules import registered_rules

CHOICE_KEYS = sorted(key for key, rule in registered_rules().items() if rule.chooses)
# The maximum-like operations pick the larger operand, the minimum-like ones the smaller.
MAXIMUM_LIKE = {"llvm.maxnum", "llvm.maximum", "llvm.maximumnum", "fmax", "fmaxf"}
# maximum / minimum return NaN for a NaN operand: no constant is chosen over it.
NAN_PROPAGATING = {"llvm.maximum", "llvm.minimum"}
SUFFIX = {"double": "f64", "float": "f32"}
C_TYPES = {"double": ctypes.c_double, "float": ctypes.c_float}

# The operand not chosen, at x = 0: its derivative is infinite (sqrt) or NaN (x log x).
INNER = {
    "sqrt": ("%inner = call {t} @llvm.sqrt.{s}({t} %x)", "declare {t} @llvm.sqrt.{s}({t})"),
    "xlogx": ("%logarithm = call {t} @llvm.log.{s}({t} %x)\n  %inner = fmul {t} %x, %logarithm",
              "declare {t} @llvm.log.{s}({t})"),
}


def test_the_registry_marks_every_choice():
    assert set(CHOICE_KEYS) == {"select", "llvm.minnum", "llvm.maxnum", "llvm.minimum", "llvm.maximum",
                                "llvm.minimumnum", "llvm.maximumnum", "fmin", "fminf", "fmax", "fmaxf"}


def _float_types(key: str) -> list[str]:
    if key.startswith("llvm.") or key == "select":
        return ["double", "float"]
    return ["float"] if key.endswith("f") else ["double"]


def _module(key: str, float_type: str, inner: str, constant: str) -> str:
    """f(x) = 2 x + choose(inner(x), c), c = +-0.5 given as LLVM's hex."""
    t, s = float_type, SUFFIX[float_type]
    body, declarations = (part.format(t=t, s=s) for part in INNER[inner])
    if key == "select":
        choice = (f"%large = fcmp ogt {t} %x, 0x3FE0000000000000\n"
                  f"  %chosen = select i1 %large, {t} %inner, {t} {constant}")
    else:
        name = f"{key}.{s}" if key.startswith("llvm.") else key
        choice = f"%chosen = call {t} @{name}({t} %inner, {t} {constant})"
        declarations += f"\ndeclare {t} @{name}({t}, {t})"
    return f"""
define {t} @f({t} %x) {{
  {body}
  {choice}
  %twice = fmul {t} %x, 0x4000000000000000
  %result = fadd {t} %twice, %chosen
  ret {t} %result
}}
{declarations}
"""


PLUS_HALF, MINUS_HALF = "0x3FE0000000000000", "0xBFE0000000000000"


def _derivatives(key: str, float_type: str, inner: str, x: float, constant: str) -> tuple[float, float]:
    """(forward tangent for dx = 1, reverse adjoint for seed 1) of f at x."""
    text = _module(key, float_type, inner, constant)
    text = add_derivative(text, "f", ("dup",), "forward", name="f_forward")
    text = add_derivative(text, "f", ("out",), "reverse", name="f_reverse")
    compiled = CompiledModule(text)
    c_type = C_TYPES[float_type]
    forward = ctypes.CFUNCTYPE(c_type, c_type, c_type)(compiled.address("f_forward"))
    reverse = ctypes.CFUNCTYPE(None, c_type, ctypes.POINTER(c_type), c_type)(compiled.address("f_reverse"))
    adjoint = c_type(0.0)
    reverse(x, ctypes.byref(adjoint), 1.0)
    return forward(x, 1.0), adjoint.value


CASES = [(key, float_type, inner) for key in CHOICE_KEYS for float_type in _float_types(key)
         for inner in INNER if not (inner == "xlogx" and key in NAN_PROPAGATING)]


@pytest.mark.parametrize("key, float_type, inner", CASES, ids=lambda v: str(v))
def test_an_operand_not_chosen_contributes_nothing(key, float_type, inner):
    """At x = 0 the constant is chosen (max(inner, 0.5), min(inner, -0.5)): the derivative is 2,
    whatever inner'(0) is."""
    constant = MINUS_HALF if key.startswith(("llvm.min", "fmin")) else PLUS_HALF
    tangent, adjoint = _derivatives(key, float_type, inner, 0.0, constant)
    assert tangent == 2.0 and adjoint == 2.0, (key, float_type, inner, tangent, adjoint)


@pytest.mark.parametrize("key, float_type", [(k, t) for k in CHOICE_KEYS for t in _float_types(k)],
                         ids=lambda v: str(v))
def test_the_chosen_operand_gets_the_whole_derivative(key, float_type):
    """Where inner(x) = sqrt(x) is chosen, the derivative is 2 + 1 / (2 sqrt x), also by finite differences."""
    x = 4.0 if key in MAXIMUM_LIKE or key == "select" else 0.0625       # sqrt(x) wins against 0.5
    tangent, adjoint = _derivatives(key, float_type, "sqrt", x, PLUS_HALF)
    expected = 2.0 + 0.5 / math.sqrt(x)
    h = 1e-3 * x
    f = lambda y: 2 * y + math.sqrt(y)                                    # noqa: E731
    finite_difference = (f(x - 2 * h) - 8 * f(x - h) + 8 * f(x + h) - f(x + 2 * h)) / (12 * h)
    tolerance = 1e-12 if float_type == "double" else 1e-6
    assert tangent == pytest.approx(expected, rel=tolerance) and adjoint == pytest.approx(expected, rel=tolerance)
    assert finite_difference == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- numba kernels

def floor_normalized(v):
    length = math.sqrt(v[0] * v[0] + v[1] * v[1])
    return v[0] / max(length, 1e-12)


def floor_normalized_fmax(v):
    length = np.sqrt(v[0] * v[0] + v[1] * v[1])
    return v[0] / np.fmax(length, 1e-12)


def largest(v):
    result = v[0]
    for i in range(1, v.shape[0]):
        result = result if result > v[i] else v[i]
    return result


@pytest.mark.parametrize("fastmath", [False, True], ids=["plain", "fastmath"])
@pytest.mark.parametrize("kernel", [floor_normalized, floor_normalized_fmax], ids=lambda k: k.__name__)
def test_numba_floor_at_zero_has_the_finite_derivative(kernel, fastmath):
    f = differentiate(njit(fastmath=fastmath)(kernel))
    v = np.zeros(2)
    gradient = np.zeros(2)
    f.autodiff(Duplicated(v, gradient))
    _, tangent = f.jvp((v,), (np.array([1.0, 0.0]),))
    assert gradient[0] == 1e12 and gradient[1] == 0.0 and tangent == 1e12, (gradient, tangent)


@pytest.mark.parametrize("fastmath", [False, True], ids=["plain", "fastmath"])
def test_numba_tie_follows_the_branch_taken(fastmath):
    """`r if r > v[i] else v[i]` returns v[i] at a tie: the second 2 wins, in both modes."""
    f = differentiate(njit(fastmath=fastmath)(largest))
    v = np.array([-1.0, 2.0, -0.2, 2.0, 1.0])
    gradient = np.zeros(5)
    f.autodiff(Duplicated(v, gradient))
    assert gradient.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    tangents = [f.jvp((v,), (np.eye(5)[i],))[1] for i in range(5)]
    assert tangents == [0.0, 0.0, 0.0, 1.0, 0.0]
