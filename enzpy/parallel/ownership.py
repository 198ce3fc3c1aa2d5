"""Adjoint adds of a prange loop's reverse function: plain where one share owns the element.

Several threads run a loop function's reverse function at once (derivatives.py),
and a load's adjoint is added into the shadow element it read: two shares that
read the same element (a stencil's neighbours, a shared weight, a gather) would
race. Atomics are correct everywhere but cost about 2.5x on a stencil. numba's
IR hides the affine index (its wraparound selects), so ownership is decided at
run time instead:

- forward sweep (A, once per share): after each *site*, an active float load
  from memory that is not A's own stack, the range [min, max] of the shadow
  addresses it touched in this share is kept (the `data` parameter of the loop
  function points at the share's area: K sites x (min, max), then K x (lo, hi));
- between the sweeps (derivatives.py): each share's *private* interval per
  site is its [min, max] shrunk until it meets no other share's range of any
  site; an address in it is read by this share alone (shares never write what
  another reads: that would be a race in the primal);
- reverse sweep (R): an address inside the private interval takes a plain
  load-add-store, any other an `atomicrmw fadd`.

Called without an area (`data` null: the loop runs serially on one thread),
every add is plain. A share's area is 32 bytes per site: AREA_BYTES_PER_SITE.
"""

from __future__ import annotations

import weakref

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I32, I64, PTR, FunctionType

AREA_BYTES_PER_SITE = 32
"""(min, max) from the forward sweep and (lo, hi) for the reverse sweep, one i64 each."""

_SITES: "weakref.WeakKeyDictionary[core.Function, int]" = weakref.WeakKeyDictionary()


def site_count(function: core.Function) -> int:
    """How many sites the combined gradient `function` (of a loop function) has."""
    return _SITES.get(function, 0)


class OwnedAdds:
    """The sites of one loop function's combined gradient, and the code for them (see above)."""

    def __init__(self, module: core.Module, function: core.Function, data: core.Argument,
                 entry_block: core.Block):
        self.module, self.function, self.data, self.entry_block = module, function, data, entry_block
        self.sites: dict[core.Load, int] = {}
        """Each site and its index in the share's area."""
        entry = Builder(module).before_instruction(entry_block.terminator)
        # Serial calls pass no area: the sites then write to a scratch one on A's stack.
        self.scratch = entry.alloca(I64, "owned.scratch", align=8, count=constant_int(I32, 4))
        self.serial = entry.icmp("eq", data, core.ConstantNull(PTR), "owned.serial")
        self.area = entry.select(self.serial, self.scratch, data, "owned.area")

    def record(self, builder: Builder, load: core.Load, shadow: core.Value) -> None:
        """Forward sweep, right after `load`: widen its site's [min, max] by `shadow`."""
        site = self.sites.setdefault(load, len(self.sites))
        address = builder.cast("ptrtoint", shadow, I64, "owned.address")
        for offset, intrinsic in ((0, "llvm.umin.i64"), (1, "llvm.umax.i64")):
            field = builder.gep(I64, self.area, [constant_int(I64, 2 * site + offset)])
            bound = builder.call(self._intrinsic(intrinsic), [builder.load(I64, field, align=8), address])
            builder.store(bound, field, 8)

    def add(self, builder: Builder, load: core.Load, shadow: core.Value, adjoint: core.Value) -> None:
        """Reverse sweep: add `adjoint` into `shadow`, plainly if this share owns it; `builder`
        ends up in the block after both ways."""
        site, count = self.sites[load], len(self.sites)
        address = builder.cast("ptrtoint", shadow, I64, "owned.address")
        low = builder.load(I64, builder.gep(I64, self.area, [constant_int(I64, 2 * count + 2 * site)]), align=8)
        high = builder.load(I64, builder.gep(I64, self.area, [constant_int(I64, 2 * count + 2 * site + 1)]),
                            align=8)
        inside = builder.binary("and", builder.icmp("uge", address, low), builder.icmp("ule", address, high))
        owned = builder.binary("or", inside, self.serial, "owned")
        plain, atomic = self.function.append_block("owned.plain"), self.function.append_block("owned.atomic")
        after = self.function.append_block("owned.after")
        builder.cond_br(owned, plain, atomic)
        builder.at_end(plain)
        old = builder.load(load.type, shadow, align=load.align)
        builder.store(builder.fadd(old, adjoint), shadow, load.align)
        builder.br(after)
        builder.at_end(atomic)
        builder.insert(core.AtomicRMW(type=load.type, opcode="atomicrmw", operation="fadd",
                                      operands=[shadow, adjoint], ordering="monotonic", align=load.align))
        builder.br(after)
        builder.at_end(after)

    def finish(self) -> None:
        """Size the scratch area and start every site's range empty (min all ones, max 0)."""
        count = len(self.sites)
        self.scratch.operands[0] = constant_int(I32, max(4, 4 * count))
        entry = Builder(self.module).before_instruction(self.entry_block.terminator)
        for site in range(count):
            entry.store(constant_int(I64, -1), entry.gep(I64, self.area, [constant_int(I64, 2 * site)]), 8)
            entry.store(constant_int(I64, 0), entry.gep(I64, self.area, [constant_int(I64, 2 * site + 1)]), 8)
        _SITES[self.function] = count

    def _intrinsic(self, name: str) -> core.Function:
        return self.module.get_or_declare(name, FunctionType(I64, (I64, I64)))


def is_site(load: core.Instruction, activity, shadow_of) -> bool:
    """An active float load from shadowed memory that is not a stack slot of the function."""
    from ..analysis.memory_types import pointer_root

    return isinstance(load, core.Load) and load.type.is_float and activity.is_active(load) \
        and load.operands[0] in shadow_of and not isinstance(pointer_root(load.operands[0]), core.Alloca)

