"""The pipeline as plain functions: capture -> enzpy IR -> pre-AD passes -> LLVM -> JIT.

The CLI, the tests and `differentiate` all go through these, so each stage
exists once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import llvmlite.binding as llvm

from .analysis.nonnegative import fold_sign_tests
from .custom_rules import keep_rule_calls, rule_for
from .frontend.llvm_text import split_top_level
from .frontend.numba import EXTENT_RANGE, CapturedKernel, capture, extent_parameters, mark_array_extents
from .frontend.vectors import scalarize_where_possible
from .ir import Module, core, parse_module, read_module, write_module
from .ir.reader import reachable_symbols
from .ir.types import VOID
from .jit import CompiledModule, NumbaEntryPoint
from .mpi import mentions_mpi_routine, name_mpi_calls
from .parallel import run_loops_in_place
from .parallel.launches import PARALLEL_FOR
from .passes import load_pipeline

STAGES = ("raw", "optimized")


def to_ir(captured: CapturedKernel, tidy: bool = False) -> Module:
    """The captured module as enzpy IR, its entry's shapes marked non-negative.

    Only what the entry reaches is read: numba links whole libraries (every
    unicode helper of a formatted error message), and a function nobody calls
    must not refuse the kernel. Each prange launch becomes a call of a loop
    function (parallel/launches.py) the AD differentiates across. Vector code
    (numba's own optimized IR, for a callee compiled before enzpy was
    imported) is scalarized where it can be.

    `tidy` (when the pre-AD pipeline follows) first runs `passes/pre_read.pipeline`
    on the raw module: function passes that shrink it (stack slots to registers,
    folded casts, merged blocks) so that there is less to read. `captured.module`
    is changed in place; it was linked for this capture alone.
    """
    module_ref = captured.module
    if tidy:
        module_ref = load_pipeline("pre_read").run(module_ref)
    module = read_module(module_ref, roots=[captured.convention.entry])
    keep_rule_calls(module)
    scalarize_where_possible(module)
    call_functions_directly(module)
    name_mpi_calls(module)
    run_loops_in_place(module)
    mark_array_extents(module.functions[captured.convention.entry], captured.convention)
    return module


def call_functions_directly(module: Module) -> None:
    """Calls through a constant that holds a function call the function (numba's recursive calls:
    the frontend turned `.numba.unresolved$f` into such a constant), without the pre-AD pipeline."""
    for function in module.functions.values():
        for instruction in function.instructions():
            callee = instruction.callee if isinstance(instruction, core.Call) else None
            while isinstance(callee, core.Cast) and callee.type.is_pointer:
                callee = callee.operands[0]
            if isinstance(callee, core.Load):
                source = callee.operands[0]
                if isinstance(source, core.GlobalVariable) and source.constant \
                        and isinstance(source.initializer, core.Function):
                    instruction.callee = source.initializer


def split_repeated_edges(function: core.Function) -> None:
    """Give each repeated case of a switch its own block (numba's `switch %status [-2, %ok; 0, %ok]`
    after a call that stays a call): the AD's own phis have one entry per predecessor."""
    for block in list(function.blocks):
        terminator = block.terminator
        if not isinstance(terminator, core.Switch):
            continue
        seen = {terminator.default}
        for index, (value, target) in enumerate(terminator.cases):
            if target not in seen:
                seen.add(target)
                continue
            middle = core.Block(f"{block.name}.case{index}", function)
            function.blocks.insert(function.blocks.index(target), middle)
            middle.append(core.Branch(type=VOID, opcode="br", targets=[target]))
            terminator.cases[index] = (value, middle)
            for phi in target.phis():
                position = max(i for i, b in enumerate(phi.incoming_blocks) if b is block)
                phi.incoming_blocks[position] = middle


def optimize(module: Module | str, pipeline: str = "pre_ad", dump_after: set[str] | None = None) -> Module:
    """Run a named pipeline over `module` (written to LLVM and read back)."""
    text = module if isinstance(module, str) else write_module(module)
    module_ref = llvm.parse_assembly(text)
    module_ref.verify()
    module_ref = load_pipeline(pipeline, dump_after).run(module_ref)
    return _read_optimized(module_ref, pipeline)


def optimized_ir(captured: CapturedKernel, dump_after: set[str] | None = None) -> Module:
    """`optimize(to_ir(captured, tidy=True), "pre_ad")`, reading numba's module once where it can.

    `to_ir` reads the raw module into enzpy's IR for its rewrites, and `optimize`
    writes it back to LLVM for the pre-AD pipeline: for most kernels no rewrite
    applies (no custom rule, vector code, MPI call, prange, recursion) and the
    round trip only marks the entry's array extents, which the entry's text can
    say as well. Then the pipelines run on numba's module itself (the functions
    the entry does not reach made internal, so O2 drops them before anyone
    inlines them) and only their result is read: a third of the pre-AD stage's
    time on GMM, the same IR up to value names.
    """
    text = _with_array_extents(str(captured.module), captured)
    if text is None:
        return optimize(to_ir(captured, tidy=True), "pre_ad", dump_after)
    module_ref = llvm.parse_assembly(text)
    module_ref.verify()
    reached = reachable_symbols(text, [captured.convention.entry])
    for function in module_ref.functions:
        if not function.is_declaration and function.name not in reached:
            function.linkage = llvm.Linkage.internal
    module_ref = load_pipeline("pre_read").run(module_ref)
    module_ref = load_pipeline("pre_ad", dump_after).run(module_ref)
    return _read_optimized(module_ref, "pre_ad", roots=[captured.convention.entry])


_VECTOR_TYPE = re.compile(r"<(?:vscale x )?\d+ x ")
_NEEDS_ENZPY_IR = (PARALLEL_FOR,          # a prange launch (run_loops_in_place)
                   ".numba.unresolved$")  # recursion (call_functions_directly)
_METADATA_ATTACHMENT = re.compile(r", !(?!dbg\b)[-a-zA-Z$._0-9]+ !\d+")
_DEFINE_LINE = r'^define [^\n]*?@"?{name}"?\((?P<parameters>[^\n]*)\)[^\n]*\{{$'


def _with_array_extents(text: str, captured: CapturedKernel) -> str | None:
    """The raw module's text with the entry's extent parameters marked as `mark_array_extents`
    marks them; None where one of `to_ir`'s other rewrites may apply, or the line reads oddly."""
    if _VECTOR_TYPE.search(text) or any(marker in text for marker in _NEEDS_ENZPY_IR) \
            or mentions_mpi_routine(text):
        return None
    if any(rule_for(function.name) is not None for function in captured.module.functions
           if not function.is_declaration):
        return None
    convention = captured.convention
    line = re.search(_DEFINE_LINE.format(name=re.escape(convention.entry)), text, re.MULTILINE)
    parameters = split_top_level(line.group("parameters")) if line is not None else []
    if len(parameters) != len(convention.parameter_types):
        return None
    for index in extent_parameters(convention):
        type_name, _, rest = parameters[index].partition(" ")
        if type_name != "i64":
            return None
        parameters[index] = f"{type_name} {EXTENT_RANGE} {rest}"
    text = text[:line.start("parameters")] + ", ".join(parameters) + text[line.end("parameters"):]
    # The reader keeps no metadata but locations; numba's branch weights left on would make O2
    # keep as branches what it makes selects of without them.
    return _METADATA_ATTACHMENT.sub("", text)


def _read_optimized(module_ref: llvm.ModuleRef, pipeline: str, roots=None) -> Module:
    module_ref.verify()
    result = read_module(module_ref, roots=roots)
    for function in result.functions.values():
        split_repeated_edges(function)
    if pipeline == "pre_ad":
        # What LLVM cannot prove about numba's index arithmetic (see analysis/nonnegative.py).
        for function in result.functions.values():
            fold_sign_tests(function)
    return result


def kernel_ir(function, args=None, signature: str | None = None, stage: str = "optimized",
              dump_after: set[str] | None = None) -> tuple[Module, CapturedKernel]:
    """The kernel's enzpy IR after capture (`raw`) or after the pre-AD pipeline (`optimized`)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    captured = capture(function, args=args, signature=signature)
    module = optimized_ir(captured, dump_after) if stage == "optimized" else to_ir(captured)
    return module, captured


@dataclass
class JittedKernel:
    """A kernel that went through enzpy's IR and back, callable like the numba function."""

    module: Module
    """The enzpy IR that was compiled."""
    captured: CapturedKernel
    """What the frontend captured (calling convention, dispatcher)."""
    entry: NumbaEntryPoint
    """The JIT-compiled entry point."""

    def __call__(self, *args):
        return self.entry(*args)


def jit_kernel(function, args=None, signature: str | None = None, stage: str = "optimized") -> JittedKernel:
    """Capture, read into enzpy IR, optimize (for `optimized`), write, re-parse, JIT."""
    module, captured = kernel_ir(function, args, signature, stage)
    text = write_module(module)
    parse_module(text)                          # the written text must read back
    compiled = CompiledModule(text, pipeline="post_ad")
    return JittedKernel(module, captured, NumbaEntryPoint(compiled, captured.convention))
