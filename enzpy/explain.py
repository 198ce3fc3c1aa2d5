"""`explain`: what reverse mode does with a kernel, for a user tuning it.

    report = explain(differentiate(kernel), x, Const(y), Active(a))
    print(report)            # counts, the cached values, tape bytes
    print(report.annotated_ir)

The report lists the optimized kernel's instructions as active (they get
derivative code) or inactive, says for every forward value the reverse sweep
needs whether it is recomputed, re-loaded, kept in a stack slot or cached on
the tape, and measures `cache_bytes`, the tape the forward sweep fills for
these very arguments (the gradient is run once, on copies).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

from .ad.reverse import reverse_report, tape_slots_global_name
from .aliasing import arrays_are_distinct
from .annotations import Active, Const, Duplicated
from .arguments import annotated_arrays, default_annotation
from .ad.tape import SLOT_BYTES
from .frontend.numba import capture
from .checkpointing.outline import checkpointed_loops
from .checkpointing.plan import LAST_RUNS
from .parallel import is_loop_function
from .parallel.launches import serial_reason
from .ir.writer import annotated_function, instruction_texts


@dataclass
class ExplainReport:
    """What reverse mode decided for one kernel and one set of argument activities.

    `Differentiable.explain` (or `explain`) makes it; `print(report)` gives the counts, the tape
    bytes and the cached values, `report.annotated_ir` the kernel with each instruction's decision.

    >>> import numpy as np
    >>> from enzpy import Active, Const, differentiate
    >>> @differentiate
    ... def f(x, a):
    ...     return a * np.sum(x * x)
    >>> report = f.explain(Const(np.array([1.0, 2.0])), Active(3.0))
    >>> report.kernel, report.activities
    ('f', ('Const', 'Active'))
    >>> str(report).splitlines()[0]
    'reverse mode for f(Const, Active)'
    >>> report.cache_bytes                       # nothing taped for these arguments
    0
    >>> "; active" in report.annotated_ir, report.parallel_loops, report.checkpointed_loops
    (True, [], [])
    """

    kernel: str
    """The kernel's name."""
    activities: tuple[str, ...]
    """Annotation of each argument (Const, Active, Duplicated, ...)."""
    active_instructions: list[str] = field(default_factory=list)
    """Instructions of the optimized kernel that get derivative code."""
    inactive_instructions: list[str] = field(default_factory=list)
    """Instructions that get none (integers, Const inputs, side computations)."""
    shadow_instructions: list[str] = field(default_factory=list)
    """Pointer computations that also compute a shadow pointer."""
    cached_values: list[str] = field(default_factory=list)
    """Values pushed onto the tape (once per execution of the block that needs them)."""
    recomputed: list[str] = field(default_factory=list)
    """Values the reverse sweep computes again from their operands."""
    reloaded: list[str] = field(default_factory=list)
    """Values the reverse sweep loads again from memory nothing overwrote."""
    stored: list[str] = field(default_factory=list)
    """Values computed at most once, kept in a stack slot."""
    cache_bytes: int | None = None
    """Bytes the forward sweep pushed onto the tape for the given arguments (None: not run)."""
    annotated_ir: str = ""
    """The optimized kernel with `; active`, `; reverse: recompute`, ... after each instruction."""
    parallel_loops: list[str] = field(default_factory=list)
    """The kernel's prange loops (source line), and whether their derivatives run on numba's threads."""
    checkpointed_loops: list[str] = field(default_factory=list)
    """The kernel's `checkpoint_range` loops: schedule and, once run, steps recomputed and snapshot bytes."""
    checkpoint_runs: list = field(default_factory=list)
    """`checkpointing.driver.LoopReport` of each checkpointed loop's run while measuring the tape."""
    checkpointed_names: list[str] = field(default_factory=list)
    """The loop function of each checkpointed loop (what its run reports are filed under)."""

    def __str__(self) -> str:
        lines = [f"reverse mode for {self.kernel}({', '.join(self.activities)})",
                 f"  instructions: {len(self.active_instructions)} active, "
                 f"{len(self.inactive_instructions)} inactive, {len(self.shadow_instructions)} with shadows",
                 f"  reverse sweep needs: {len(self.recomputed)} recomputed, {len(self.reloaded)} re-loaded, "
                 f"{len(self.stored)} in stack slots, {len(self.cached_values)} cached on the tape",
                 f"  tape for these arguments: {self.cache_bytes} bytes" if self.cache_bytes is not None
                 else "  tape: give argument values to measure it"]
        if self.parallel_loops:
            lines.append("  prange loops:")
            lines.extend(f"    {text}" for text in self.parallel_loops)
        if self.checkpointed_loops:
            lines.append("  checkpointed loops:")
            lines.extend(f"    {line}" for text in self.checkpointed_loops for line in text.splitlines())
        if self.cached_values:
            lines.append("  cached:")
            lines.extend(f"    {text}" for text in self.cached_values)
        return "\n".join(lines)


def explain(differentiable, *args) -> ExplainReport:
    """The report for `differentiable` called with `args` (plain values or Const/Active/Duplicated)."""
    annotated = [a if isinstance(a, (Const, Active, Duplicated)) else default_annotation(a)
                 for a in args]
    # Whether the user's arrays overlap decides what may be re-loaded; the copies would not.
    distinct = arrays_are_distinct(annotated_arrays(annotated))
    annotated = [_copied(a) for a in annotated]
    kinds = tuple(type(a) for a in annotated)
    captured = capture(differentiable.dispatcher, args=tuple(a.value for a in annotated))
    report = explain_compiled(differentiable, captured, kinds, distinct)
    for name in report.checkpointed_names:
        LAST_RUNS.pop(name, None)
    report.cache_bytes = _measured_tape_bytes(differentiable, annotated, distinct)
    report.checkpoint_runs = [LAST_RUNS[name] for name in report.checkpointed_names if name in LAST_RUNS]
    report.checkpointed_loops = [f"{text}\n{run}" if run is not None else text for text, run in zip(
        report.checkpointed_loops, (LAST_RUNS.get(name) for name in report.checkpointed_names))]
    return report


def explain_compiled(differentiable, captured, kinds: tuple[type, ...], distinct: bool) -> ExplainReport:
    """The report without running anything (`cache_bytes` stays None): from a captured kernel."""
    module, gradient, _ = differentiable.gradient_module(captured, kinds, distinct)
    decided = reverse_report(gradient)
    texts = instruction_texts(decided.primal)
    report = ExplainReport(differentiable.__name__, tuple(k.__name__ for k in kinds))
    for instruction, label in decided.activity.items():
        {"active": report.active_instructions, "shadow": report.shadow_instructions,
         "inactive": report.inactive_instructions}[label].append(texts[instruction])
    by_source = {"cache": report.cached_values, "recompute": report.recomputed, "reload": report.reloaded,
                 "stored": report.stored}
    for instruction, sources in decided.sources.items():
        for source in sources:
            kind = source.removeprefix("shadow ")
            if kind in by_source:
                prefix = "shadow of " if source.startswith("shadow ") else ""
                by_source[kind].append(prefix + texts[instruction])
    report.annotated_ir = annotated_function(decided.primal, decided.annotation)
    report.parallel_loops = _parallel_loops(module, decided.primal)
    loops = checkpointed_loops(module)
    report.checkpointed_names = [loop.loop_function.name for loop in loops]
    report.checkpointed_loops = [
        f"checkpoint_range loop {index + 1}" + (f" at {loop.location}" if loop.location else "")
        + f": {loop.schedule!r}" for index, loop in enumerate(loops)]
    return report


def _parallel_loops(module, primal) -> list[str]:
    launched = {name for name in module.functions if name.startswith("enzpy.parallel.augmented.")}
    loops = []
    for instruction in primal.instructions():
        callee = getattr(instruction, "callee", None)
        if not is_loop_function(callee):
            continue
        where = str(instruction.location) if instruction.location is not None else "line unknown"
        reasons = [serial_reason(module, name) for name in module.functions
                   if name.startswith("enzpy.reverse.call." + callee.name)]
        reason = next((r for r in reasons if r is not None), None)
        if any(callee.name in name for name in launched):
            how = "forward and reverse sweeps run in parallel (per-thread tapes, atomic adjoints)"
        elif reason is not None:
            how = f"runs on one thread: its reverse sweep adds into shared adjoints without atomics ({reason})"
        else:
            how = "runs on one thread: it carries no derivative"
        loops.append(f"prange loop at {where}: {how}")
    return loops


def _copied(annotation):
    """The same annotation on copies, so that explaining runs nothing on the user's arrays."""
    import dataclasses

    def copy(value):
        return value.copy() if isinstance(value, np.ndarray) else value

    return dataclasses.replace(annotation, **{f.name: copy(getattr(annotation, f.name))
                                              for f in dataclasses.fields(annotation)})


def _measured_tape_bytes(differentiable, annotated, distinct: bool) -> int:
    """Run the gradient once (on copies) and read what its forward sweep pushed."""
    differentiable._reverse(annotated, seed=1.0, distinct=distinct)
    entry = differentiable._gradient_for(annotated, distinct).entry
    address = entry.compiled.global_address(tape_slots_global_name(entry.convention.entry))
    return ctypes.c_int64.from_address(address).value * SLOT_BYTES
