"""The `enzpy` command.

    enzpy emit FILE.py:FUNC --sig "float64(float64[:], int64)" [--stage raw|optimized] [-o OUT.ll]
    enzpy emit FILE.py:FUNC --sig SIG --mode reverse|forward [--width K] [--no-preopt] [--activity dup,const,active]
    enzpy explain FILE.py:FUNC (--sig SIG | --args "np.ones(100), 0.5") [--activity ...] [--ir]
    enzpy opt IN.ll -o OUT.ll [--verbose]  C/C++ (clang's IR): replace __enzyme_autodiff / __enzyme_fwddiff calls
    enzpy grad IN.ll --function F [--activity dup,const,out] [--mode reverse|forward] [--name G] -o OUT.ll

Errors the user can fix (missing file or function, bad signature, a kernel
numba rejects, IR enzpy cannot carry) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from .errors import EnzpyError


class UsageError(Exception):
    """A problem with the command line's inputs; printed as one line, exit 2."""


def load_function(target: str):
    """`path/to/file.py:function` -> the function object (plain or numba dispatcher)."""
    path_text, separator, function_name = target.rpartition(":")
    if not separator or not path_text or not function_name:
        raise UsageError(f"expected FILE.py:FUNCTION, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"enzpy_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise UsageError(f"cannot import {path}: {type(error).__name__}: {error}") from None
    finally:
        sys.path.pop(0)
    function = getattr(module, function_name, None)
    if function is None or not callable(function):
        raise UsageError(f"{path} has no function {function_name!r}")
    return function


_ACTIVITY_KINDS = {"dup": "Duplicated", "const": "Const", "active": "Active", "out": "Active",
                   "dupnoneed": "DuplicatedNoNeed"}


def _emit(arguments) -> int:
    from .driver import kernel_ir
    from .ir import write_module

    function = load_function(arguments.target)
    dump_after = set(arguments.dump_after.split(",")) if arguments.dump_after else None
    if arguments.mode in ("reverse", "forward"):
        module = _gradient_module(function, arguments)
    else:
        stage = "raw" if arguments.no_preopt else arguments.stage
        module, _ = kernel_ir(function, signature=arguments.sig, stage=stage, dump_after=dump_after)
    text = write_module(module)
    if arguments.output:
        Path(arguments.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _gradient_module(function, arguments):
    from . import api
    from .frontend.numba import capture

    captured = capture(function, signature=arguments.sig)
    _check_declared_result(function, captured)
    kinds = _annotation_kinds(captured, arguments.activity)
    differentiable = api.Differentiable(function, optimize=not arguments.no_preopt)
    if arguments.width != 1 and arguments.mode != "forward":
        raise UsageError("--width is for --mode forward (vector forward mode)")
    if arguments.width < 1:
        raise UsageError(f"--width must be at least 1, got {arguments.width}")
    module, _, _ = differentiable.derivative_module(captured, kinds, mode=arguments.mode, width=arguments.width)
    return module


def _check_declared_result(function, captured) -> None:
    """An integer result in --sig for a kernel that computes a float would cast the derivative away."""
    import numba
    from numba.core import types

    declared = captured.signature.return_type
    if not isinstance(declared, (types.Integer, types.Boolean)):
        return
    python_function = getattr(function, "py_func", function)
    dispatcher = numba.njit(python_function)
    dispatcher.compile(captured.signature.args)
    inferred = dispatcher.overloads[tuple(captured.signature.args)].signature.return_type
    if isinstance(inferred, types.Float):
        raise UsageError(f"--sig declares the result {declared}, but {python_function.__name__} returns "
                         f"{inferred}: the cast would drop its derivative (declare {inferred})")


def _annotation_kinds(captured, activity: str | None) -> tuple[type, ...]:
    from . import api

    kinds = api.default_kinds(captured.convention)
    if activity:
        names = [n.strip() for n in activity.split(",")]
        if len(names) != len(kinds) or any(n not in _ACTIVITY_KINDS for n in names):
            raise UsageError(f"--activity needs one of {', '.join(_ACTIVITY_KINDS)} per argument "
                             f"({len(kinds)}), got {activity!r}")
        kinds = tuple(getattr(api, _ACTIVITY_KINDS[n]) for n in names)
    return kinds


def _explain(arguments) -> int:
    from . import api
    from .explain import explain, explain_compiled
    from .frontend.numba import capture

    function = load_function(arguments.target)
    differentiable = api.Differentiable(function, optimize=not arguments.no_preopt)
    if arguments.args is not None:
        import numpy
        try:
            # The user's own expression; a trailing comma ("np.ones(3),") is a tuple already.
            text = arguments.args.strip().rstrip(",")
            values = eval(f"({text},)", {"np": numpy, "numpy": numpy})
        except Exception as error:
            raise UsageError(f"cannot evaluate --args {arguments.args!r}: {type(error).__name__}: {error}") from None
        captured = capture(function, args=values)
        kinds = _annotation_kinds(captured, arguments.activity)
        report = explain(differentiable, *(kind(v) if kind is not api.Duplicated else api.Duplicated(
            v, api.shadow_like(v)) for kind, v in zip(kinds, values)))
    elif arguments.sig is not None:
        captured = capture(function, signature=arguments.sig)
        report = explain_compiled(differentiable, captured, _annotation_kinds(captured, arguments.activity),
                                  distinct=False)
    else:
        raise UsageError("explain needs --sig SIG or --args VALUES")
    print(report)
    if arguments.ir:
        print()
        print(report.annotated_ir, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enzpy", description="Differentiate numba kernels on LLVM IR.")
    commands = parser.add_subparsers(dest="command", required=True)
    emit = commands.add_parser("emit", help="write a kernel's LLVM IR")
    emit.add_argument("target", help="FILE.py:FUNCTION")
    emit.add_argument("--sig", required=True, help='numba signature, e.g. "float64(float64[:], int64)"')
    emit.add_argument("--stage", choices=("raw", "optimized"), default="optimized",
                      help="raw: as numba lowered it; optimized: after the pre-AD pipeline")
    emit.add_argument("--mode", choices=("primal", "reverse", "forward"), default="primal",
                      help="primal: the kernel itself; reverse / forward: the module with its gradient / "
                           "tangent function added")
    emit.add_argument("--no-preopt", action="store_true",
                      help="skip the pre-AD pipeline (the same as --stage raw for the primal)")
    emit.add_argument("--width", type=int, default=1,
                      help="forward mode: tangents per sweep (vector mode); each derivative parameter repeats")
    emit.add_argument("--activity", help="reverse / forward mode: one of dup,const,active per argument "
                                         "(default: float arrays dup, float scalars active, the rest const)")
    emit.add_argument("-o", "--output", help="output .ll file (default: stdout)")
    emit.add_argument("--dump-after", help="comma-separated pipeline stages to dump IR after (stderr)")
    emit.set_defaults(handler=_emit)
    explain = commands.add_parser("explain", help="what reverse mode does: activity, recompute / cache, tape")
    explain.add_argument("target", help="FILE.py:FUNCTION")
    explain.add_argument("--sig", help="numba signature (a report without running the gradient)")
    explain.add_argument("--args", help='argument values as Python, e.g. "np.linspace(0, 1, 100), 0.5": '
                                        "the report then measures the tape")
    explain.add_argument("--activity", help="one of dup,const,active per argument (default as for emit)")
    explain.add_argument("--no-preopt", action="store_true", help="explain AD of the unoptimized IR")
    explain.add_argument("--ir", action="store_true", help="also print the annotated IR")
    explain.set_defaults(handler=_explain)
    _add_foreign_commands(commands)
    return parser


def _read_ir(path_text: str) -> str:
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    return path.read_text()


def _write_ir(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _progress(arguments):
    """Stage names and timings on stderr under --verbose (silent otherwise)."""
    from .frontend.progress import SILENT, Progress

    return Progress(lambda line: print(line, file=sys.stderr, flush=True)) if arguments.verbose else SILENT


def _opt(arguments) -> int:
    from .frontend.clang import differentiate_enzyme_calls

    progress = _progress(arguments)
    with progress.stage("enzpy opt"):
        _write_ir(differentiate_enzyme_calls(_read_ir(arguments.input), optimize=not arguments.no_postopt,
                                             progress=progress), arguments.output)
    return 0


def _grad(arguments) -> int:
    from .frontend.clang import add_derivative

    activities = tuple(n.strip() for n in arguments.activity.split(",")) if arguments.activity else None
    if activities == ("",):
        activities = ()
    progress = _progress(arguments)
    with progress.stage("enzpy grad"):
        _write_ir(add_derivative(_read_ir(arguments.input), arguments.function, activities, arguments.mode,
                                 arguments.name, optimize=not arguments.no_postopt, progress=progress),
                  arguments.output)
    return 0


def _add_foreign_commands(commands) -> None:
    """`opt` and `grad`: LLVM IR from clang (C, C++), Enzyme's calling convention."""
    opt = commands.add_parser(
        "opt", help="differentiate every __enzyme_autodiff / __enzyme_fwddiff call in clang's LLVM IR",
        description="Read LLVM IR from clang (-S -emit-llvm, -O0 to -O3), replace each call to "
                    "__enzyme_autodiff / __enzyme_fwddiff (Enzyme's markers enzyme_dup, enzyme_const, "
                    "enzyme_out, enzyme_dupnoneed) by a call to the generated derivative, and write IR that "
                    "clang compiles and links.")
    opt.add_argument("input", help="IN.ll")
    opt.add_argument("-o", "--output", help="output .ll file (default: stdout)")
    opt.add_argument("--no-postopt", action="store_true", help="leave the generated code unoptimized")
    opt.add_argument("--verbose", action="store_true", help="print each stage and its time on stderr")
    opt.set_defaults(handler=_opt)
    grad = commands.add_parser(
        "grad", help="add the derivative of one function of clang's LLVM IR",
        description="Add `NAME` (default FUNCTION_reverse / FUNCTION_forward), an externally visible "
                    "derivative of FUNCTION. Its parameters are FUNCTION's, in order, each `dup` one "
                    "followed by its shadow (a pointer; in forward mode a float scalar's tangent value) and "
                    "each `out` one by a pointer its derivative is added into. Reverse mode then takes the "
                    "seed of a float result and returns void; forward mode returns the tangent of a float "
                    "result (void otherwise). Example: double f(double *x, int n, double s) with "
                    "dup,const,out -> void f_reverse(double *x, double *dx, int n, double s, double *ds, "
                    "double seed). A struct FUNCTION takes by value through a `byval` pointer is a pointer "
                    "to the struct, and its shadow a pointer to a shadow struct.")
    grad.add_argument("input", help="IN.ll")
    grad.add_argument("--function", required=True, help="the function to differentiate")
    grad.add_argument("--activity", help="one of dup,dupnoneed,const,out per parameter (default: pointers dup, "
                                         "integers const, floats out in reverse and dup in forward mode)")
    grad.add_argument("--mode", choices=("reverse", "forward"), default="reverse")
    grad.add_argument("--name", help="name of the generated function")
    grad.add_argument("-o", "--output", help="output .ll file (default: stdout)")
    grad.add_argument("--no-postopt", action="store_true", help="leave the generated code unoptimized")
    grad.add_argument("--verbose", action="store_true", help="print each stage and its time on stderr")
    grad.set_defaults(handler=_grad)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.handler(arguments)
    except (UsageError, EnzpyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"enzpy: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
