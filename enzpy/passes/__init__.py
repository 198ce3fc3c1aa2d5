"""Passes and pass pipelines over LLVM modules (llvmlite's new pass manager).

A pass is a frozen dataclass with a `name` and a `run(module, target)` method.
Named pipelines are plain text files in the repository's top-level `passes/`
folder (see `passes/pre_ad.pipeline` for the format); `load_pipeline` turns one
into a PassManager. Set `ENZPY_DUMP_AFTER=name[,name...]` (or `all`) to print
the module after those stages to stderr, or to files under `ENZPY_DUMP_DIR`.
"""

from __future__ import annotations

import functools

import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite.binding as llvm

from ..errors import EnzpyError
from .inlining import InlineCallees, KeepCalls

PIPELINE_DIRECTORY = Path(__file__).resolve().parents[2] / "passes"
_TUNING_OPTIONS = ("loop_vectorization", "slp_vectorization", "loop_unrolling", "loop_interleaving")


class Pass:
    """Interface: `name: str` and `run(module: llvm.ModuleRef, target)`.

    `run` changes the module in place and returns None, or returns a new
    module that replaces it (passes that rewrite the text).
    """

    name: str

    def run(self, module: llvm.ModuleRef, target: llvm.TargetMachine) -> llvm.ModuleRef | None:
        raise NotImplementedError


@dataclass(frozen=True)
class LLVMPass(Pass):
    """One LLVM pass, by its llvmlite name (`sroa` -> `add_sroa_pass`)."""

    name: str
    """llvmlite pass name without the `add_` / `_pass` affixes."""

    def run(self, module, target):
        manager = llvm.create_new_module_pass_manager()
        getattr(manager, f"add_{self.name}_pass")()
        manager.run(module, llvm.create_pass_builder(target, llvm.create_pipeline_tuning_options()))


@dataclass(frozen=True)
class DefaultPipeline(Pass):
    """LLVM's default `O1`..`O3` module pipeline with tuning options."""

    name: str
    """`O1`, `O2` or `O3`."""
    options: tuple[tuple[str, bool], ...] = ()
    """PipelineTuningOptions to set, e.g. (("loop_vectorization", False),)."""

    def run(self, module, target):
        tuning = llvm.create_pipeline_tuning_options(speed_level=int(self.name[1]))
        for option, value in self.options:
            setattr(tuning, option, value)
        builder = llvm.create_pass_builder(target, tuning)
        builder.getModulePassManager().run(module, builder)


_BRANCH = re.compile(r"^(\s+br (?:i1 |label ).*?)$", re.MULTILINE)
_METADATA_NUMBER = re.compile(r"!(\d+)\b")


@dataclass(frozen=True)
class NoRuntimeUnrolling(Pass):
    """Mark every loop `llvm.loop.unroll.runtime.disable` (full unrolling stays allowed).

    LLVM's unroller unrolls loops with unknown trip counts by the target's
    factor (8 on x86) and adds a remainder loop. Before AD that multiplies the
    code and, worse, the values the reverse sweep keeps: a load repeated in
    each unrolled copy is cached once per copy. llvmlite's loop-unroll pass
    takes no options and the `-unroll-runtime` switch is process-wide
    (numba's own compiles would see it), so loops say it themselves. The mark
    goes on every branch without loop metadata; only loop latches read it.
    """

    name: str = "no_runtime_unrolling"
    """Stage name."""

    def run(self, module, target):
        text = str(module)
        numbers = [int(n) for n in _METADATA_NUMBER.findall(text)]
        next_number = max(numbers, default=-1) + 1
        disable = next_number
        nodes = [f'!{disable} = !{{!"llvm.loop.unroll.runtime.disable"}}']

        def mark(match: re.Match) -> str:
            nonlocal next_number
            line = match.group(1)
            if "!llvm.loop" in line:
                return line
            next_number += 1
            nodes.append(f"!{next_number} = distinct !{{!{next_number}, !{disable}}}")
            return f"{line}, !llvm.loop !{next_number}"

        marked = _BRANCH.sub(mark, text)
        if len(nodes) == 1:
            return None
        # In the module's own context, so that struct type names read back as written.
        replacement = llvm.parse_assembly(marked + "\n" + "\n".join(nodes) + "\n", context=module._context)
        replacement.verify()
        return replacement


_SELECT_FLAGS = re.compile(r"(= (?:select|phi))((?: (?:fast|nnan|ninf|nsz|arcp|contract|afn|reassoc))+)(?= )")


@dataclass(frozen=True)
class KeepSelectChoices(Pass):
    """Drop fast-math flags from selects and phis, so the optimizer keeps them selects.

    With `nnan nsz` on a select, instcombine turns `x > y ? x : y` into
    `llvm.maxnum(x, y)` (fast-math C and numba's fastmath=True produce such
    selects; a phi's flags pass to the select simplifycfg makes of it). maxnum does not say which operand wins a tie, and the program
    did: `ret > v ? ret : v` returns v at a tie, and its derivative must go to
    v. A select's flags enable little else; arithmetic keeps its own.
    """

    name: str = "keep_select_choices"
    """Stage name."""

    def run(self, module, target):
        text = str(module)
        stripped = _SELECT_FLAGS.sub(r"\1", text)
        if stripped == text:
            return None
        replacement = llvm.parse_assembly(stripped, context=module._context)
        replacement.verify()
        return replacement


PYTHON_PASSES = {"inline_callees": InlineCallees, "no_runtime_unrolling": NoRuntimeUnrolling,
                 "keep_select_choices": KeepSelectChoices, "keep_calls": KeepCalls}


@dataclass
class PassManager:
    """Runs stages in order, dumping the module after the requested ones.

    `run` returns the module: a stage may have replaced it with a new one.
    """

    passes: list[Pass]
    """Stages, in order."""
    dump_after: set[str] = field(default_factory=set)
    """Stage names after which to dump the module (`all` for every stage)."""

    def run(self, module: llvm.ModuleRef, target: llvm.TargetMachine | None = None,
            report: Callable[[str, float], None] | None = None) -> llvm.ModuleRef:
        """`report(stage name, seconds)` is called after each stage (`enzpy opt --verbose`)."""
        target = target or target_machine()
        for stage in self.passes:
            start = time.perf_counter()
            module = stage.run(module, target) or module
            if report is not None:
                report(stage.name, time.perf_counter() - start)
            if stage.name in self.dump_after or "all" in self.dump_after:
                _dump(stage.name, module)
        return module


def _dump(stage: str, module: llvm.ModuleRef) -> None:
    directory = os.environ.get("ENZPY_DUMP_DIR")
    text = str(module)
    if directory:
        path = Path(directory) / f"{module.name or 'module'}.after-{stage}.ll"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        print(f"; ---- enzpy: IR after {stage} ----\n{text}", file=sys.stderr)


def parse_pipeline(text: str, origin: str = "<pipeline>") -> list[Pass]:
    """Pipeline file text -> stages (see passes/pre_ad.pipeline for the format)."""
    stages: list[Pass] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, *settings = line.split()
        if name in ("O1", "O2", "O3"):
            options = []
            for setting in settings:
                key, _, value = setting.partition("=")
                if key not in _TUNING_OPTIONS or value not in ("true", "false"):
                    raise EnzpyError(f"{origin}:{number}: bad option {setting!r} "
                                     f"(use {', '.join(_TUNING_OPTIONS)} = true|false)")
                options.append((key, value == "true"))
            stages.append(DefaultPipeline(name, tuple(options)))
        elif settings:
            raise EnzpyError(f"{origin}:{number}: only O1/O2/O3 take options")
        elif name in PYTHON_PASSES:
            stages.append(PYTHON_PASSES[name]())
        elif hasattr(llvm.ModulePassManager, f"add_{name}_pass"):
            stages.append(LLVMPass(name))
        else:
            raise EnzpyError(f"{origin}:{number}: unknown pass {name!r}")
    return stages


def load_pipeline(name_or_path: str, dump_after: set[str] | None = None) -> PassManager:
    """A named pipeline from `passes/NAME.pipeline`, or a pipeline file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PIPELINE_DIRECTORY / f"{name_or_path}.pipeline"
    if not path.is_file():
        known = sorted(p.stem for p in PIPELINE_DIRECTORY.glob("*.pipeline"))
        raise EnzpyError(f"no pipeline {name_or_path!r} (known: {', '.join(known)})")
    if dump_after is None:
        dump_after = {s for s in os.environ.get("ENZPY_DUMP_AFTER", "").split(",") if s}
    return PassManager(parse_pipeline(path.read_text(), str(path)), dump_after)


_SHARED_TARGET_MACHINE = None


@functools.cache
def host_cpu() -> tuple[str, str]:
    """(CPU name, feature string) as numba's codegen chose them, NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES included: enzpy's code runs beside numba's, so it targets the same CPU.
    numba has asked LLVM once per process already (the question costs ~0.3 ms)."""
    from numba.core.registry import cpu_target

    _, name, features = cpu_target.target_context.codegen().magic_tuple()
    return name, features


def target_machine(shared: bool = True) -> llvm.TargetMachine:
    """A host target machine configured as numba configures its own.

    An MCJIT engine takes ownership of (and frees) the target machine it is
    given, so each engine must get its own: pass `shared=False` for that.
    """
    global _SHARED_TARGET_MACHINE
    if shared and _SHARED_TARGET_MACHINE is not None:
        return _SHARED_TARGET_MACHINE
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    name, features = host_cpu()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=name, features=features, opt=3, reloc="default", codemodel="jitdefault", jit=True)
    if shared:
        _SHARED_TARGET_MACHINE = machine
    return machine
