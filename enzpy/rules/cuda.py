"""Derivatives of the two CUDA primitives with effects on other threads (enzpy/cuda/).

    primitive                        tangent                         adjoint (reverse sweep)
    barrier (cuda.syncthreads)       none (the primal barrier)       the barrier, mirrored: what other
                                                                     threads add before it is complete after
    atomic_add(target, value slot)   atomic_add(dtarget, dvalue)     dvalue += dtarget (dtarget unchanged:
                                                                     d new / d old = 1)

A barrier also `synchronizes`: other threads may write any memory there, so
nothing read before it is re-loaded after it (analysis/overwrites.py caches it).
The float atomic add is a call with its value in a stack slot (cuda/threads.py
makes it so before the AD; cuda/barriers.py gives the call its `atomicrmw`
body after): a memory-call rule then states its derivative like any routine's.
"""

from __future__ import annotations

from ..ir.builder import constant_int
from ..ir.types import DOUBLE, FLOAT, I64, VOID
from .calls import ArrayOperand, MemoryCallRule, register_memory_call_rule

BARRIER = "enzpy.cuda.barrier"
ATOMIC_ADD = {DOUBLE: "enzpy.cuda.atomic_add.f64", FLOAT: "enzpy.cuda.atomic_add.f32"}


class Barrier(MemoryCallRule):
    names = (BARRIER,)
    communicates = True              # every thread of the block must reach the mirrored barrier
    synchronizes = True

    def arrays(self, call):
        return []

    def contents_needed(self, call, active):
        return set()

    def forward(self, context):
        pass

    def reverse(self, context):
        barrier = context.builder.declare(BARRIER, VOID, [])
        context.builder.call(barrier, [])


class AtomicAdd(MemoryCallRule):
    """`atomic_add(ptr target, ptr value)`: *target += *value, atomically; the old value unused."""

    def __init__(self, float_type):
        self.float_type = float_type
        self.names = (ATOMIC_ADD[float_type],)

    def arrays(self, call):
        one = constant_int(I64, 1)
        return [ArrayOperand(0, one, one, one, self.float_type, reads=True, writes=True),
                ArrayOperand(1, one, one, one, self.float_type, reads=True)]

    def contents_needed(self, call, active):
        return set()

    def forward(self, context):
        target, value = context.shadow(0), context.shadow(1)
        if target is None or value is None:
            return
        builder = context.builder
        builder.call(builder.declare(self.names[0], VOID, [target.type, value.type]), [target, value])

    def reverse(self, context):
        target, value = context.shadow(0), context.shadow(1)
        if target is None or value is None:
            return
        builder = context.builder
        total = builder.fadd(builder.load(self.float_type, value), builder.load(self.float_type, target))
        builder.store(total, value)


for _rule in (Barrier(), AtomicAdd(DOUBLE), AtomicAdd(FLOAT)):
    register_memory_call_rule(_rule)
