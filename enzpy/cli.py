"""The `enzpy` command.

    enzpy emit FILE.py:FUNC --sig "float64(float64[:], int64)" [--stage raw|optimized] [-o OUT.ll]
    enzpy emit FILE.py:FUNC --sig SIG --mode reverse [--no-preopt] [--activity dup,const,active]

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
    if arguments.mode == "reverse":
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
    kinds = api.default_kinds(captured.convention)
    if arguments.activity:
        names = [n.strip() for n in arguments.activity.split(",")]
        if len(names) != len(kinds) or any(n not in _ACTIVITY_KINDS for n in names):
            raise UsageError(f"--activity needs one of {', '.join(_ACTIVITY_KINDS)} per argument "
                             f"({len(kinds)}), got {arguments.activity!r}")
        kinds = tuple(getattr(api, _ACTIVITY_KINDS[n]) for n in names)
    differentiable = api.Differentiable(function, optimize=not arguments.no_preopt)
    module, _, _ = differentiable.gradient_module(captured, kinds)
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enzpy", description="Differentiate numba kernels on LLVM IR.")
    commands = parser.add_subparsers(dest="command", required=True)
    emit = commands.add_parser("emit", help="write a kernel's LLVM IR")
    emit.add_argument("target", help="FILE.py:FUNCTION")
    emit.add_argument("--sig", required=True, help='numba signature, e.g. "float64(float64[:], int64)"')
    emit.add_argument("--stage", choices=("raw", "optimized"), default="optimized",
                      help="raw: as numba lowered it; optimized: after the pre-AD pipeline")
    emit.add_argument("--mode", choices=("primal", "reverse"), default="primal",
                      help="primal: the kernel itself; reverse: the module with its gradient added")
    emit.add_argument("--no-preopt", action="store_true",
                      help="skip the pre-AD pipeline (the same as --stage raw for the primal)")
    emit.add_argument("--activity", help="reverse mode: one of dup,const,active per argument "
                                         "(default: float arrays dup, float scalars active, the rest const)")
    emit.add_argument("-o", "--output", help="output .ll file (default: stdout)")
    emit.add_argument("--dump-after", help="comma-separated pipeline stages to dump IR after (stderr)")
    emit.set_defaults(handler=_emit)
    return parser


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
