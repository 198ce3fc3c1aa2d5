"""Compiled derivatives kept on disk: `differentiate(f, cache=True)`, as numba's `cache=True`.

A second process that differentiates the same kernel for the same argument types
and annotations loads the derivative's machine code instead of running numba's
capture, enzpy's passes, the AD and LLVM again.

What an entry is keyed by (`derivative_key`):

- the kernel's *identity* (`kernel_identity`): its code object (bytecode,
  constants, names, line table, file, defaults) and, recursively, everything its
  code names that numba compiles into it: njit callees, global and closure
  constants (numba freezes them: an array's bytes count), modules by name. A
  global it cannot vouch for (an object of a user class, a ctypes function)
  makes the kernel uncacheable: it is compiled as without `cache=True`.
- the derivative asked for: mode, numba's argument types, the annotations, the
  width, whether the arrays are distinct, the `differentiate` options;
- enzpy's, numba's, llvmlite's and LLVM's versions, Python's, and the host CPU
  (the code is compiled for it).

An entry is refused when it was compiled against a symbol this process does not
define (a custom rule or a numba-compiled matrix-calculus helper registered at
compile time, `llvm.add_symbol`): the derivative is compiled again. Code that
holds a process address as a constant is never stored (numba's rule too).

Entries live in `$ENZPY_CACHE_DIR`, else `$XDG_CACHE_HOME/enzpy`, else
`~/.cache/enzpy`; one pickle file per entry, written to a temporary name and
renamed, so concurrent processes never read half a file; numba's result type of
the kernel for the argument types sits beside them (`.value`), so that a loaded
derivative needs no primal compile either. `clear()` empties it.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import pickle
import re
import sys
import tempfile
import types as python_types
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
import numba
import numpy as np

from .passes import host_cpu

_FORMAT = 1
"""Bumped when the stored payload changes shape."""

_ADDRESS_CONSTANT = re.compile(r"inttoptr \(i64 (\d{6,})")
"""A pointer made from a large integer constant: an address of this process (not cached)."""


def directory() -> Path:
    """Where entries are kept (created on first store)."""
    named = os.environ.get("ENZPY_CACHE_DIR")
    if named:
        return Path(named)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "enzpy"


def clear() -> int:
    """Remove every stored derivative; returns how many files were removed."""
    removed = 0
    folder = directory()
    if folder.is_dir():
        for path in [*folder.glob("*.derivative"), *folder.glob("*.value")]:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# -- the kernel's identity

class Uncacheable(Exception):
    """The kernel names something whose effect on the compiled code cannot be keyed."""


def kernel_identity(function) -> str | None:
    """A digest of everything numba compiles into `function` (a dispatcher or a Python function),
    or None (with a warning) when something it names cannot be vouched for."""
    python_function = getattr(function, "py_func", function)
    digest = hashlib.sha256()
    try:
        _add_function(digest, python_function, seen=set())
    except Uncacheable as reason:
        name = getattr(python_function, "__qualname__", repr(python_function))
        warnings.warn(f"enzpy: {name!r} is not cached on disk ({reason}); it is compiled as "
                      "without cache=True", stacklevel=4)
        return None
    return digest.hexdigest()


def _add_function(digest, function, seen: set) -> None:
    if id(function) in seen:
        digest.update(b"<seen>")           # recursion: the function is already in the digest
        return
    seen.add(id(function))
    code = getattr(function, "__code__", None)
    if code is None:
        raise Uncacheable(f"{function!r} has no Python code")
    digest.update(f"function {function.__module__}.{function.__qualname__}".encode())
    _add_code(digest, code)
    _add_value(digest, "defaults", function.__defaults__, seen)
    names = _names_in(code)
    namespace = function.__globals__
    for name in sorted(names):
        if name in namespace:
            _add_value(digest, name, namespace[name], seen)
        elif hasattr(builtins, name):
            digest.update(f"builtin {name}".encode())
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        try:
            contents = cell.cell_contents
        except ValueError:                 # an empty cell (a name assigned later)
            contents = None
        _add_value(digest, f"closure {name}", contents, seen)


def _add_code(digest, code) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_filename, code.co_firstlineno, code.co_argcount, code.co_kwonlyargcount,
                        code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                        code.co_flags)).encode())
    digest.update(getattr(code, "co_linetable", b"") or b"")
    for constant in code.co_consts:
        if isinstance(constant, python_types.CodeType):
            _add_code(digest, constant)
        else:
            digest.update(repr((type(constant).__name__, constant)).encode())


def _names_in(code) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, python_types.CodeType):
            names |= _names_in(constant)
    return names


def _add_value(digest, name: str, value, seen: set) -> None:
    """Fold one global, closure cell or default into the digest, as numba would see it."""
    digest.update(f"|{name}=".encode())
    dispatcher = getattr(value, "dispatcher", None)        # an enzpy Differentiable
    if dispatcher is not None and hasattr(dispatcher, "py_func"):
        value = dispatcher
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        digest.update(repr((type(value).__name__, value)).encode())
    elif isinstance(value, tuple):
        digest.update(f"tuple{len(value)}".encode())
        for index, item in enumerate(value):
            _add_value(digest, f"{name}[{index}]", item, seen)
    elif isinstance(value, np.ndarray):
        digest.update(repr((value.dtype.str, value.shape)).encode())
        digest.update(hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest())
    elif isinstance(value, (np.generic, np.dtype)):
        digest.update(repr(value).encode())
    elif isinstance(value, python_types.ModuleType):
        digest.update(f"module {value.__name__}".encode())
    elif hasattr(value, "py_func") and hasattr(value, "targetoptions"):      # a numba dispatcher
        digest.update(repr(sorted((k, repr(v)) for k, v in value.targetoptions.items())).encode())
        _add_function(digest, value.py_func, seen)
    elif isinstance(value, python_types.FunctionType):
        # A plain Python function named by the kernel: numba compiles it only if it is
        # registered (an overload) or fails; its code is folded in either way.
        _add_function(digest, value, seen)
    elif isinstance(value, (python_types.BuiltinFunctionType, np.ufunc, type)) or \
            getattr(value, "__module__", "").split(".")[0] in ("numpy", "math", "cmath", "numba", "builtins"):
        # numpy / math functions, numba's own objects (prange, types), classes: fixed by the
        # library versions in the key.
        digest.update(f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}".encode())
    else:
        raise Uncacheable(f"it names {name!r}, a {type(value).__name__}")


# -- the entry's key

def derivative_key(identity: str, *parts) -> str:
    """The file name of one derivative: the kernel's identity, what was asked, and the toolchain."""
    from . import __version__

    toolchain = (_FORMAT, __version__, numba.__version__, llvmlite.__version__, llvm.llvm_version_info,
                 sys.version, llvm.get_process_triple(), host_cpu())
    return hashlib.sha256(repr((identity, parts, toolchain)).encode()).hexdigest()


def type_names(dispatcher, args=None, numba_argument_types=None) -> tuple[str, ...]:
    """numba's types of the arguments, spelled out (with alignment, which `str` leaves out)."""
    argument_types = numba_argument_types if numba_argument_types is not None else \
        [dispatcher.typeof_pyval(a) for a in args]
    return tuple(f"{t}|{getattr(t, 'aligned', '')}" for t in argument_types)


# -- entries

@dataclass(frozen=True)
class StoredDerivative:
    """What a second process needs to call a derivative without compiling it."""

    object_code: bytes
    """The machine code MCJIT produced (relocations resolved again on load)."""
    convention: object
    """The derivative's `CallingConvention` (entry, argument specs, numba return type)."""
    layout: tuple
    """The compiled derivative's own layout fields (`_Gradient`'s or `_Tangent`'s, less entry and text)."""
    externals: tuple[str, ...]
    """Symbols the code calls that the process must define (checked before loading)."""
    environments: tuple[str, ...]
    """numba Environment globals to point at this process's environments."""
    module_text: bytes
    """The derivative module's text, zlib-compressed (what `_Gradient.module_text` holds)."""


def load(key: str) -> tuple | None:
    """(entry point, layout, module text) of a stored derivative, or None for a miss (absent,
    unreadable, or calling a symbol this process lacks)."""
    from .jit import CompiledModule, NumbaEntryPoint

    stored = _read(key)
    if not isinstance(stored, StoredDerivative):
        return None
    if any(llvm.address_of_symbol(name) is None for name in stored.externals):
        return None
    compiled = CompiledModule.from_object_code(stored.object_code, stored.environments)
    entry = NumbaEntryPoint(compiled, stored.convention)
    return entry, stored.layout, zlib.decompress(stored.module_text).decode()


def load_value(key: str):
    """A small value kept with `store_value` (numba's result type of a kernel), or None."""
    stored = _read(key, ".value")
    return stored[1] if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == "value" else None


def store_value(key: str, value) -> None:
    try:
        _write(key, ("value", value), ".value")
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass                              # only a later process pays: it asks numba again


def _read(key: str, suffix: str = ".derivative"):
    path = directory() / f"{key}{suffix}"
    try:
        with open(path, "rb") as file:
            return pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception:                     # a file from a crashed writer or another format: drop it
        path.unlink(missing_ok=True)
        return None


def _write(key: str, payload, suffix: str = ".derivative") -> None:
    folder = directory()
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as file:
            pickle.dump(payload, file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, folder / f"{key}{suffix}")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def store(key: str, entry, layout: tuple, module_text: str) -> bool:
    """Write one derivative; False (nothing written) when its code cannot move between processes."""
    compiled = entry.compiled
    object_code = getattr(compiled, "object_code", None)
    if object_code is None:
        return False
    optimized_text = str(compiled.module)
    if _ADDRESS_CONSTANT.search(optimized_text) or "llvm.global_ctors" in optimized_text:
        return False
    externals = tuple(sorted(
        {f.name for f in compiled.module.functions if f.is_declaration and not f.name.startswith("llvm.")} |
        {g.name for g in compiled.module.global_variables if g.is_declaration}))
    environments = tuple(g.name for g in compiled.module.global_variables if g.name.startswith("_ZN08NumbaEnv"))
    stored = StoredDerivative(object_code, entry.convention, layout, externals, environments,
                              zlib.compress(module_text.encode(), 1))
    _write(key, stored)
    return True
