"""numba's prange launches, recognized in the IR.

numba lowers `for i in prange(n)` in three functions (names carry addresses,
so they are recognized by shape, not by name):

- the *launcher* `.kernel.<id>___gufunc__...(args, dims, steps, data)` takes
  the GIL state, then calls `numba_parallel_for(gufunc, args, dims, steps,
  data, inner_ndim, array_count, num_threads)` from the threading layer;
- the *gufunc* `__gufunc__...(args, dims, steps, data)` loops over the
  schedule entries it is given (dims[0] of them, each a [start, stop] pair of
  the schedule array) and calls the body once per entry;
- the *body* `__numba_parfor_gufunc_...` runs one entry's iterations; a
  reduction variable becomes an array indexed by `get_thread_id()`, which the
  kernel reduces after the launch.

The threading layer splits dims[0] among threads and offsets each array
pointer in `args` by its step. So calling the gufunc directly with the
launcher's own arguments runs every schedule entry in order on the calling
thread (thread id 0: every partial reduction lands in entry 0, the others keep
the reduction's identity), which is the loop's serial meaning. That is how the
AD sees a prange loop: `run_loops_in_place` makes each launch such a call, and
the body becomes ordinary code of the kernel (the pre-AD pipeline inlines it).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import I32, PTR, FunctionType

PARALLEL_FOR = "numba_parallel_for"
"""The threading layer's entry point that runs a gufunc over threads."""


@dataclass
class ParallelLoop:
    """One prange launch of a kernel."""

    launcher: core.Function
    """The function that releases the GIL and calls `numba_parallel_for`."""
    gufunc: core.Function
    """The function each thread runs on its share of the schedule."""
    body: core.Function | None
    """The loop body over one schedule entry (None if numba's layout changed)."""
    array_count: int
    """How many arrays `args` holds: the schedule first, then the loop's arrays and reduction arrays."""
    inner_ndim: int
    """How many entries of `dims` after the first the threading layer passes on to each call."""
    launch_sites: list[core.Call]
    """The calls to the launcher in the kernel."""

    @property
    def source_line(self) -> core.SourceLocation | None:
        """Where the prange loop is in the user's source, when the IR says so."""
        for site in self.launch_sites:
            if site.location is not None:
                return site.location
        return None


def find_parallel_loops(module: core.Module) -> list[ParallelLoop]:
    """Every prange launch in `module`, with the calls that start it."""
    loops = []
    for function in module.functions.values():
        launch = _parallel_for_call(function)
        if launch is None:
            continue
        gufunc = _function_operand(launch.operands[0])
        if gufunc is None:
            continue
        inner_ndim, count = launch.operands[5:7]
        if not isinstance(count, core.ConstantInt) or not isinstance(inner_ndim, core.ConstantInt):
            continue
        loops.append(ParallelLoop(
            launcher=function, gufunc=gufunc, body=_body_of(gufunc),
            array_count=count.value, inner_ndim=inner_ndim.value, launch_sites=[]))
    by_launcher = {loop.launcher: loop for loop in loops}
    for function in module.functions.values():
        for instruction in function.instructions():
            if isinstance(instruction, core.Call) and instruction.callee in by_launcher:
                by_launcher[instruction.callee].launch_sites.append(instruction)
    return loops


LOOP_PREFIX = "enzpy.parallel_loop."
"""Name prefix of the functions `run_loops_in_place` makes: one per prange loop."""


def run_loops_in_place(module: core.Module) -> list[ParallelLoop]:
    """Make every prange launch a call of a *loop function* that runs the gufunc on the calling thread.

    The loop function `enzpy.parallel_loop.<gufunc>(retptr, excinfo, args, dims, steps, data)`
    has numba's calling convention and stays a call (noinline): it is enzpy's parallel-loop
    construct. The pre-AD pipeline inlines the gufunc and the body into it; the AD drivers
    differentiate across the call (ad/calls.py: a tangent function, an augmented forward and
    a reverse function of the loop), and `parallel/derivatives.py` then runs those on
    numba's threading layer, one schedule chunk per thread.

    Returns the loops, so that `explain` and the parallel drivers can find them.
    """
    loops = find_parallel_loops(module)
    for loop in loops:
        function = _loop_function(module, loop)
        for number, site in enumerate(loop.launch_sites):
            # The launch returned nothing; the loop function's status (always 0) is not read.
            call = Builder(module).before_instruction(site).call(
                function, [core.ConstantNull(PTR), core.ConstantNull(PTR), *site.operands],
                f"parallel_loop.status.{number}")
            call.location = site.location
            site.parent.instructions.remove(site)
        loop.launch_sites = [i for f in module.functions.values() for i in f.instructions()
                             if isinstance(i, core.Call) and i.callee is function]
    return loops


def is_loop_function(function: core.Value) -> bool:
    """Whether `function` is one of the functions `run_loops_in_place` made."""
    return isinstance(function, core.Function) and function.name.startswith(LOOP_PREFIX)


def loop_shape(name: str) -> tuple[int, int] | None:
    """(array_count, inner_ndim) of the launch, from a name that contains a loop function's name.

    They are part of the name (`enzpy.parallel_loop.<arrays>.<inner_ndim>.<gufunc>`) because the
    module is printed and read again between to_ir and the parallel drivers."""
    start = name.find(LOOP_PREFIX)
    if start < 0:
        return None
    fields = name[start + len(LOOP_PREFIX):].split(".", 2)
    return (int(fields[0]), int(fields[1])) if len(fields) == 3 and all(f.isdigit() for f in fields[:2]) else None


def _loop_function(module: core.Module, loop: ParallelLoop) -> core.Function:
    name = f"{LOOP_PREFIX}{loop.array_count}.{loop.inner_ndim}.{loop.gufunc.name}"
    if name in module.functions:
        return module.functions[name]
    function = core.Function(name, FunctionType(I32, (PTR,) * 6),
                             ["retptr", "excinfo", "args", "dims", "steps", "data"])
    # External linkage: LLVM's interprocedural passes must not drop retptr and excinfo, which
    # are how ad/calls.py recognizes a function it differentiates across.
    function.attributes = ("noinline",)
    module.add_function(function)
    builder = Builder(module).at_end(function.append_block("entry"))
    builder.call(loop.gufunc, function.arguments[2:])
    builder.ret(constant_int(I32, 0))
    return function


def _parallel_for_call(function: core.Function) -> core.Call | None:
    if function.is_declaration:
        return None
    for instruction in function.instructions():
        if isinstance(instruction, core.Call) and isinstance(instruction.callee, core.Function) \
                and instruction.callee.name == PARALLEL_FOR and len(instruction.operands) == 8:
            return instruction
    return None


def _function_operand(value: core.Value) -> core.Function | None:
    while isinstance(value, (core.Cast, core.ConstantExpression)) and value.operands:
        value = value.operands[0]
    return value if isinstance(value, core.Function) and not value.is_declaration else None


def _body_of(gufunc: core.Function) -> core.Function | None:
    """The defined function the gufunc calls per schedule entry (numba's convention: i32 status)."""
    for instruction in gufunc.instructions():
        callee = instruction.callee if isinstance(instruction, core.Call) else None
        if isinstance(callee, core.Function) and not callee.is_declaration \
                and str(callee.function_type.return_type) == "i32":
            return callee
    return None


_SERIAL: "weakref.WeakKeyDictionary[core.Module, dict[str, str]]" = weakref.WeakKeyDictionary()


def keep_serial(module: core.Module, reverse_name: str, reason: str) -> None:
    """Record that the reverse function `reverse_name` of a loop function adds into shared shadow
    memory without atomics (`reason`): its loop's reverse sweep must run on one thread."""
    _SERIAL.setdefault(module, {})[reverse_name] = reason


def serial_reason(module: core.Module, reverse_name: str) -> str | None:
    """Why the reverse function `reverse_name` must run on one thread (None: it may run on several)."""
    return _SERIAL.get(module, {}).get(reverse_name)


_OWNED_SITES: "weakref.WeakKeyDictionary[core.Module, dict[str, int]]" = weakref.WeakKeyDictionary()


def record_owned_sites(module: core.Module, reverse_name: str, count: int) -> None:
    """The reverse function `reverse_name` of a loop function decides `count` adds by ownership
    (parallel/ownership.py): each share's area holds that many sites."""
    _OWNED_SITES.setdefault(module, {})[reverse_name] = count


def owned_sites(module: core.Module, reverse_name: str) -> int:
    return _OWNED_SITES.get(module, {}).get(reverse_name, 0)
