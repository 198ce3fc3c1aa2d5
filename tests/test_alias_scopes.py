"""Memory labels (analysis/alias_scopes.py) and the scoped-noalias metadata the writer makes of them."""

import llvmlite.binding as llvm
import numpy as np

from enzpy import Const, Duplicated, differentiate
from enzpy.analysis.alias_scopes import TAPE, label_memory
from enzpy.api import annotated_arrays, arrays_are_distinct
from enzpy.frontend.numba import capture
from enzpy.ir import core, parse_module, write_module

# Two numba MemInfo allocations (data pointer at byte 24), a pointer that may be
# either, a stack slot holding a data pointer, a stack slot whose address a call
# receives, and two array parameters.
KERNEL = """
declare ptr @NRT_MemInfo_alloc_aligned(i64, i32)
declare void @fill(ptr)

define i32 @kernel(ptr %retptr, ptr %excinfo, ptr %x, ptr %y, i64 %i, i1 %which) {
entry:
  %first = call ptr @NRT_MemInfo_alloc_aligned(i64 64, i32 32)
  %first.field = getelementptr i8, ptr %first, i64 24
  %first.data = load ptr, ptr %first.field, align 8
  %second = call ptr @NRT_MemInfo_alloc_aligned(i64 64, i32 32)
  %second.field = getelementptr i8, ptr %second, i64 24
  %second.data = load ptr, ptr %second.field, align 8
  %slot = alloca ptr, align 8
  store ptr %second.data, ptr %slot, align 8
  %x.element = getelementptr double, ptr %x, i64 %i
  %a = load double, ptr %x.element, align 8
  %first.element = getelementptr double, ptr %first.data, i64 %i
  store double %a, ptr %first.element, align 8
  %kept = load ptr, ptr %slot, align 8
  %kept.element = getelementptr double, ptr %kept, i64 1
  store double %a, ptr %kept.element, align 8
  %either = select i1 %which, ptr %first.data, ptr %second.data
  %b = load double, ptr %either, align 8
  store double %b, ptr %y, align 8
  store double %b, ptr %retptr, align 8
  %passed = alloca double, align 8
  call void @fill(ptr %passed)
  %filled = load double, ptr %passed, align 8
  store double %filled, ptr %y, align 8
  ret i32 0
}
"""


def labels(distinct: bool) -> dict[str, str | None]:
    """Each load / store of the kernel -> its label, keyed `load <pointer>` / `store <pointer>`."""
    module = parse_module(KERNEL)
    function = module.functions["kernel"]
    label_memory(function, distinct, frozenset(function.arguments[:2]))
    found = {}
    for instruction in function.instructions():
        if isinstance(instruction, core.Load):
            found[f"load {instruction.operands[0].name}"] = instruction.memory
        elif isinstance(instruction, core.Store):
            found[f"store {instruction.operands[1].name}"] = instruction.memory
    return found


def test_each_allocation_and_private_parameter_gets_its_own_label():
    found = labels(distinct=False)
    allocation_labels = {found["store first.element"], found["store kept.element"]}
    assert None not in allocation_labels and len(allocation_labels) == 2
    # The data pointer lives inside the MemInfo: the same object as the allocation.
    assert found["load first.field"] == found["store first.element"]
    # Through the slot the pointer stays the second allocation's.
    assert found["store kept.element"] == found["load second.field"]
    # The slot itself is used only by loads and stores: LLVM knows it overlaps nothing and
    # promotes it to a register, so a label would only lengthen every other access's !noalias.
    assert found["store slot"] is found["load slot"] is None
    # A slot whose address escapes into a call is an object LLVM cannot tell apart: labelled.
    assert found["load passed"] not in (None, found["store slot"], *allocation_labels)
    assert found["store retptr"] not in (None, found["load x.element"], found["store y"])


def test_parameters_share_one_label_unless_the_caller_checked_they_are_distinct():
    shared = labels(distinct=False)
    assert shared["load x.element"] == shared["store y"] is not None
    distinct = labels(distinct=True)
    assert distinct["load x.element"] != distinct["store y"]
    assert None not in (distinct["load x.element"], distinct["store y"])


def test_a_pointer_that_may_be_either_allocation_gets_no_label():
    assert labels(distinct=True)["load either"] is None


def test_labels_become_scoped_noalias_metadata_llvm_reads():
    module = parse_module(KERNEL)
    function = module.functions["kernel"]
    label_memory(function, True, frozenset(function.arguments[:2]))
    text = write_module(module)
    labelled = [i for i in function.instructions() if isinstance(i, (core.Load, core.Store)) and i.memory]
    assert text.count("!alias.scope") == len(labelled) == text.count("!noalias ")
    parsed = llvm.parse_assembly(text)
    parsed.verify()
    assert "!alias.scope" in str(parsed)


def test_the_tape_buffer_has_its_own_label():
    @differentiate
    def running_product(x):
        total = 1.0
        for i in range(x.shape[0]):
            total = total * x[i]         # each factor needs the running product: tape
        return total

    x = np.linspace(0.5, 1.5, 7)
    module, _, _ = running_product.gradient_module(capture(running_product.dispatcher, args=(x,)), (Duplicated,))
    tape_accesses = [i for f in module.functions.values() for i in f.instructions()
                     if isinstance(i, (core.Load, core.Store)) and i.memory == TAPE]
    assert tape_accesses
    shadow = np.zeros_like(x)
    running_product.autodiff(Duplicated(x, shadow))
    assert np.allclose(shadow, np.prod(x) / x, rtol=1e-13)


def test_shadows_count_when_deciding_whether_arrays_are_distinct():
    x, y = np.ones(4), np.ones(4)
    shadow = np.zeros(4)
    assert arrays_are_distinct(annotated_arrays([Duplicated(x, shadow), Const(y)]))
    # A shadow that is also an input: the gradient must not assume they never overlap.
    assert not arrays_are_distinct(annotated_arrays([Duplicated(x, y), Const(y)]))
    assert not arrays_are_distinct(annotated_arrays([Duplicated(x, shadow), Duplicated(y, shadow)]))
    assert not arrays_are_distinct([(x, x[1:])])          # arrays inside tuples too


def test_a_shadow_shared_by_two_arrays_gets_both_gradients():
    @differentiate
    def weighted(a, b):
        total = 0.0
        for i in range(a.shape[0]):
            total += a[i] * a[i] + 3.0 * b[i]
        return total

    a, b = np.arange(1.0, 5.0), np.ones(4)
    shared = np.zeros(4)
    weighted.autodiff(Duplicated(a, shared), Duplicated(b, shared))
    assert np.allclose(shared, 2 * a + 3.0)
