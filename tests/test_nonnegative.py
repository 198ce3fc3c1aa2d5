"""Sign tests of provably non-negative integers fold (analysis/nonnegative.py)."""

import numpy as np
import pytest

from enzpy.analysis.nonnegative import fold_sign_tests, nonnegative_values
from enzpy.driver import kernel_ir
from enzpy.ir import core, parse_module

EXTENT = "range(i64 0, 9223372036854775807)"

# for j in range(i + 1, n): y[j] (with numba's wrap-around select), as LLVM's O2 leaves it.
TRIANGLE = """
define void @triangle(ptr %y, i64 {extent} %n, i64 %i, i64 %m) {{
entry:
  %i.nonnegative = {i_definition}
  %start = add nsw i64 %i.nonnegative, 1
  %guard = icmp {guard} i64 %n, %start
  br i1 %guard, {targets}
preheader:
  br label %loop
loop:
  %j = phi i64 [ %start, %preheader ], [ %next, %loop ]
  %next = add nuw i64 %j, 1
  %negative = icmp slt i64 %j, 0
  %wrapped = select i1 %negative, i64 %n, i64 0
  %row = getelementptr double, ptr %y, i64 %j
  %element = getelementptr double, ptr %row, i64 %wrapped
  store double 1.0, ptr %element
  %nested.sum = add nsw i64 %j, %m
  %nested.negative = icmp slt i64 %nested.sum, 0
  %last = icmp eq i64 %next, %n
  br i1 %last, label %done, label %loop
done:
  ret void
}}
"""


def triangle(extent=EXTENT, guard="ugt", i_definition="and i64 %i, 255",
             targets="label %preheader, label %done") -> core.Function:
    text = TRIANGLE.format(extent=extent, guard=guard, i_definition=i_definition, targets=targets)
    return parse_module(text).functions["triangle"]


def names(values) -> set[str]:
    return {v.name for v in values}


def sign_tests(function: core.Function) -> list[str]:
    return [i.name for i in function.instructions() if isinstance(i, core.Compare) and i.predicate == "slt"]


@pytest.mark.parametrize("guard", ["ugt", "sgt"])
def test_a_counter_entered_below_a_non_negative_bound_is_non_negative(guard):
    function = triangle(guard=guard)
    assert {"i.nonnegative", "start", "j"} <= names(nonnegative_values(function))
    assert "next" not in names(nonnegative_values(function))      # add nuw: may pass 2**63
    assert fold_sign_tests(function) == 1
    assert sign_tests(function) == ["nested.negative"]             # %m may be negative
    assert not [i for i in function.instructions() if isinstance(i, core.Select)]
    store = next(i for i in function.instructions() if isinstance(i, core.Store))
    assert store.operands[1].operands[1].value == 0                 # the index the select chose


@pytest.mark.parametrize("change", [
    {"extent": ""},                      # the bound may be negative: j may wrap past 2**63
    {"guard": "eq"},                     # entered when start == n: j runs past n
    {"guard": "ule"},                    # entered when n <= start
    {"i_definition": "add i64 %i, 0"},   # the start may be negative
])
def test_without_each_fact_nothing_folds(change):
    function = triangle(**change)
    assert fold_sign_tests(function) == 0
    assert "negative" in sign_tests(function)


def test_a_guard_taken_on_its_false_edge_counts_too():
    # not (n <= start): entered only when start < n.
    assert fold_sign_tests(triangle(guard="ule", targets="label %done, label %preheader")) == 1


def test_an_unsigned_shift_right_is_non_negative():
    assert fold_sign_tests(triangle(i_definition="lshr i64 %i, 1")) == 1


def test_kernel_indices_of_a_triangle_loop_lose_their_wraparound():
    def pairs(x):
        total = 0.0
        for i in range(x.shape[0]):
            for j in range(i + 1, x.shape[0]):
                total += x[i] * x[j]
        return total

    module, captured = kernel_ir(pairs, args=(np.ones(5),))
    function = module.functions[captured.convention.entry]
    assert not sign_tests(function)
