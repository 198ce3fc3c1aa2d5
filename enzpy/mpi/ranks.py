"""The contract of a gradient on every rank, for kernels that call MPI.

Every rank calls the gradient with its local arrays. The adjoint rules
(rules/mpi.py) are exact, so with a seed s_r on each rank the gradient is
that of sum_r s_r f_r (f_r: the value rank r returns). Two things make that
what a user means:

- A value the kernel returns identically on every rank (it comes out of an
  MPI_Allreduce or MPI_Bcast) is one value, seeded once: each rank's seed is
  divided by the number of ranks. `replicated_result` decides it from the IR:
  the stored result must be computed from constants, float arguments (which
  every rank passes alike) and loads of collective results only. A result
  computed from local data too keeps its seed on every rank: the gradient is
  then that of the sum of the ranks' results.
- An Active scalar (a float argument every rank passes alike, e.g. a
  viscosity) gets its full derivative on every rank: the ranks' partial
  adjoints are summed (MPI_Allreduce) after the sweep.

`on_every_rank` wraps the gradient function in a function of the same
signature that does both; each rank's local arrays get their own gradients,
which gathered equal the serial program's.
"""

from __future__ import annotations

from ..analysis.memory_types import merged_roots, pointer_root
from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I32, I64, PTR
from ..rules.calls import allocation_rule, is_inactive_call
from ..rules.registry import scalar_rule
from .recognition import handles, mpi_routines_in

_COLLECTIVE_RESULTS = {"MPI_Allreduce": 1, "MPI_Bcast": 0}
"""Routines whose buffer at that position ends up the same on every rank."""


def replicated_result(function: core.Function) -> bool:
    """Whether the float `function` returns through retptr is the same on every rank."""
    retptr = function.arguments[0]
    stored = [i.operands[0] for i in function.instructions()
              if isinstance(i, core.Store) and i.operands[1] is retptr and i.operands[0].type.is_float]
    replication = _Replication(function)
    return bool(stored) and all(replication.holds(v) for v in stored)


class _Replication:
    """Which values and memory of one function are the same on every rank.

    A greatest fixpoint: everything is assumed alike, and a value that reads
    anything not alike (a local array, an unknown call) is dropped, with what
    uses it, until nothing changes; so a loop's phi stays alike when all that
    flows into it is."""

    def __init__(self, function: core.Function):
        instructions = list(function.instructions())
        self.collective = {pointer_root(i.operands[_COLLECTIVE_RESULTS[i.callee.name]]) for i in instructions
                           if isinstance(i, core.Call) and getattr(i.callee, "name", "") in _COLLECTIVE_RESULTS}
        self.stores: dict[core.Value, list[core.Value]] = {}
        self.written_otherwise: set[core.Value] = set()
        for instruction in instructions:
            if isinstance(instruction, core.Store):
                for root in merged_roots(instruction.operands[1]):
                    self.stores.setdefault(root, []).append(instruction.operands[0])
            elif isinstance(instruction, core.Call) and not is_inactive_call(instruction) \
                    and getattr(instruction.callee, "name", "") not in _COLLECTIVE_RESULTS:
                for operand in instruction.operands:
                    if operand.type.is_pointer:
                        self.written_otherwise |= merged_roots(operand)
        self.different: set[core.Value] = set()
        changed = True
        while changed:
            changed = False
            for instruction in instructions:
                if instruction not in self.different and not self._alike(instruction):
                    self.different.add(instruction)
                    changed = True

    def holds(self, value: core.Value) -> bool:
        """Whether `value` is the same on every rank."""
        return value not in self.different

    def _memory(self, root: core.Value) -> bool:
        """Memory every rank holds alike: a collective's result, or a buffer of the function's own
        that only stores of such values fill (numba's temporaries: np.sum(result * result))."""
        if root in self.collective:
            return True
        own = isinstance(root, core.Load) or (isinstance(root, core.Call) and allocation_rule(root) is not None)
        return own and root not in self.written_otherwise and root in self.stores \
            and all(self.holds(v) for v in self.stores[root])

    def _alike(self, value: core.Instruction) -> bool:
        if isinstance(value, core.Load):
            return all(self._memory(root) for root in merged_roots(value.operands[0]))
        if isinstance(value, core.Cast) and value.opcode in ("sitofp", "uitofp"):
            return True                        # counts and sizes: the same everywhere in SPMD code
        if isinstance(value, core.Select):
            return all(self.holds(v) for v in value.operands[1:])
        if isinstance(value, (core.BinaryOperator, core.UnaryOperator, core.Cast, core.Phi)) \
                or (isinstance(value, core.Call) and scalar_rule(value) is not None):
            return all(self.holds(v) for v in value.operands)
        return False


def on_every_rank(module: core.Module, gradient: core.Function, primal: core.Function, spec,
                  replicated: bool) -> core.Function:
    """The gradient, wrapped for the contract above when the module calls MPI; else itself.
    `replicated`: `replicated_result` of the kernel before the AD."""
    if not mpi_routines_in(module) or not handles():
        return gradient
    seeded = spec.return_type is not None
    replicated = seeded and replicated
    active = len(spec.active)
    if not replicated and not active:
        return gradient
    inner_name = gradient.name + ".local"
    wrapper = core.Function(gradient.name, gradient.function_type, [a.name for a in gradient.arguments])
    gradient.name, gradient.linkage = inner_name, "internal"
    module.functions[inner_name] = gradient
    module.functions[wrapper.name] = wrapper
    builder = Builder(module).at_end(wrapper.append_block("entry"))
    world = constant_int(I32, handles()["MPI_COMM_WORLD"])
    arguments = list(wrapper.arguments)
    if replicated:
        size_slot = builder.alloca(I32, "ranks")
        builder.call(builder.declare("MPI_Comm_size", I32, [I32, PTR]), [world, size_slot])
        ranks = builder.cast("sitofp", builder.load(I32, size_slot), arguments[-1].type)
        arguments[-1] = builder.binary("fdiv", arguments[-1], ranks, "seed.once")
    status = builder.call(gradient, arguments, "status")
    outputs = wrapper.arguments[len(wrapper.arguments) - seeded - active:len(wrapper.arguments) - seeded]
    allreduce = builder.declare("MPI_Allreduce", I32, [PTR, PTR, I32, I32, I32, I32])
    in_place = core.ConstantExpression(PTR, "inttoptr", [constant_int(I64, -1)])     # MPICH's MPI_IN_PLACE
    for output, position in zip(outputs, spec.active):
        kind = "MPI_DOUBLE" if primal.arguments[position].type.kind == "double" else "MPI_FLOAT"
        builder.call(allreduce, [in_place, output, constant_int(I32, 1), constant_int(I32, handles()[kind]),
                                 constant_int(I32, handles()["MPI_SUM"]), world])
    builder.ret(status)
    return wrapper
