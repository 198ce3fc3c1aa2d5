"""Compile a kernel with numba and capture its LLVM module before numba optimizes it.

numba hands each freshly lowered module to `CPUCodeLibrary.add_ir_module`, then
optimizes and links it. `install_capture_hook` wraps that method to keep the
raw text on the library. `capture` links the kernel's raw module with the raw
modules of every library it links against (called njit functions, `np.empty`'s
implementation, the NRT), so the result is one self-contained, unoptimized
module, plus a `CallingConvention` describing the entry point.
"""

from __future__ import annotations

import re
import warnings
import weakref
from dataclasses import dataclass
from functools import cached_property

import llvmlite.binding as llvm
import numpy as np

from ..errors import FrontendError

_RAW_ATTRIBUTE = "_enzpy_raw_modules"
_WRAPPER_PREFIXES = ("_ZN7cpython", "cfunc.")
_DEFINED = re.compile(r'^define [^@]*@("[^"]+"|[-a-zA-Z$._0-9]+)\(', re.M)
_UNRESOLVED_PREFIX = ".numba.unresolved$"
_UNRESOLVED = re.compile(r'^@"?\.numba\.unresolved\$([-a-zA-Z$._0-9]+)"? = external global ptr\s*$', re.M)
_LIBRARY_DEFINING: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
"""Every function numba lowered since the hook was installed -> the library holding it: a
recursive call reaches its callee through a symbol numba resolves at run time
(`.numba.unresolved$name`), not through the libraries the caller links."""


def install_capture_hook() -> None:
    """Record the raw text of every module numba lowers from now on (idempotent)."""
    from numba.core.codegen import CPUCodeLibrary

    if getattr(CPUCodeLibrary.add_ir_module, "_enzpy_hook", False):
        return
    original = CPUCodeLibrary.add_ir_module

    def add_ir_module(self, ir_module):
        text = str(ir_module)
        self.__dict__.setdefault(_RAW_ATTRIBUTE, []).append(text)
        for name in _DEFINED.findall(text):
            _LIBRARY_DEFINING[name.strip('"')] = self
        return original(self, ir_module)

    add_ir_module._enzpy_hook = True
    CPUCodeLibrary.add_ir_module = add_ir_module


@dataclass(frozen=True)
class ArgumentSpec:
    """How one Python argument maps onto the entry point's LLVM parameters."""

    position: int
    """Index among the Python arguments."""
    name: str
    """Python parameter name."""
    numba_type: object
    """The numba type the kernel was compiled for."""
    first_parameter: int
    """Index of its first LLVM parameter (after retptr and excinfo)."""
    parameter_count: int
    """Number of LLVM parameters: 1 for scalars, 5 + 2*ndim for arrays."""

    @cached_property
    def is_array(self) -> bool:
        from numba.core import types
        return isinstance(self.numba_type, types.Array)

    @cached_property
    def dtype(self) -> np.dtype:
        from numba.core import types
        inner = self.numba_type.dtype if self.is_array else self.numba_type
        if isinstance(inner, types.Boolean):
            return np.dtype(np.bool_)
        return np.dtype(str(inner))

    @cached_property
    def ndim(self) -> int:
        return self.numba_type.ndim if self.is_array else 0

    @cached_property
    def layout(self) -> str:
        """'C', 'F' or 'A' (any strides) for arrays; '' for scalars."""
        return self.numba_type.layout if self.is_array else ""

    @cached_property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    def data_parameter(self) -> int:
        """LLVM parameter index of the array's data pointer."""
        return self.first_parameter + 4

    def shape_parameters(self) -> range:
        start = self.first_parameter + 5
        return range(start, start + self.ndim)

    def stride_parameters(self) -> range:
        start = self.first_parameter + 5 + self.ndim
        return range(start, start + self.ndim)


EXTENT_RANGE = "range(i64 0, 9223372036854775807)"
"""An array's element count and shape lie in [0, 2**63 - 1]."""


def mark_array_extents(entry, convention: "CallingConvention") -> None:
    """Give the entry's element-count and shape parameters a non-negative `range` attribute.

    numba's index arithmetic has no `nsw`, so without this LLVM cannot tell that
    `j` in `range(i + 1, n)` is never negative: the wrap-around select of every
    `a[j]` stays, the address is not affine, and loops do not vectorize.
    """
    for index in extent_parameters(convention):
        parameter = entry.arguments[index]
        if parameter.type.is_integer and EXTENT_RANGE not in parameter.attributes:
            parameter.attributes = (*parameter.attributes, EXTENT_RANGE)


def extent_parameters(convention: "CallingConvention") -> list[int]:
    """Indices of the entry's parameters that hold an array's element count or a shape."""
    return [index for argument in convention.arguments if argument.is_array
            for index in (argument.first_parameter + 2, *argument.shape_parameters())]


@dataclass(frozen=True)
class CallingConvention:
    """numba's convention: `i32 entry(retptr, excinfo, exploded args...)`.

    The i32 is a status: 0 ok, -2 returned None, -1 / -3 / >= 1 an exception
    whose description numba stored through `excinfo`.
    """

    entry: str
    """Mangled name of the kernel's LLVM function."""
    arguments: tuple[ArgumentSpec, ...]
    """One spec per Python argument, in order."""
    return_type: object
    """numba type of the return value (`types.none` for no value)."""
    parameter_types: tuple[str, ...]
    """LLVM spelling of every entry-point parameter, retptr and excinfo included."""

    @property
    def returns_value(self) -> bool:
        from numba.core import types
        return self.return_type != types.none


@dataclass
class CapturedKernel:
    """A kernel's raw (pre-optimization) module and how to call it."""

    module: llvm.ModuleRef
    """Linked, verified, unoptimized module: the kernel, its callees and NRT helpers."""
    convention: CallingConvention
    """Entry point and argument layout."""
    dispatcher: object
    """The numba dispatcher that compiled it (calls it at numba speed)."""
    signature: object
    """numba Signature compiled for."""
    source: str
    """Where the raw modules came from: 'raw', or 'numba-optimized' for callees compiled before capture."""

    @property
    def text(self) -> str:
        return str(self.module)


def as_dispatcher(function):
    """A numba dispatcher for `function` (a plain function gets `njit`)."""
    import numba
    from numba.core.dispatcher import Dispatcher

    if isinstance(function, Dispatcher):
        return function
    if not callable(function):
        raise FrontendError(f"expected a Python function or numba dispatcher, got {function!r}")
    # One dispatcher per function: a fresh differentiate(f) reuses what numba (and enzpy,
    # whose compiled derivatives are cached per dispatcher) compiled for f before.
    dispatcher = getattr(function, "__enzpy_dispatcher__", None)
    if dispatcher is None:
        dispatcher = numba.njit(function)
        try:
            function.__enzpy_dispatcher__ = dispatcher
        except (AttributeError, TypeError):          # a callable that takes no attributes
            pass
    return dispatcher


def parse_signature(signature: str):
    """`"float64(float64[:], int64)"` -> (argument types, return type or None)."""
    from numba.core import sigutils

    try:
        parsed = sigutils.normalize_signature(signature)
    except Exception as error:   # numba raises several kinds for bad strings
        raise FrontendError(f"bad signature {signature!r}: {error}") from None
    return parsed


def argument_types(dispatcher, args) -> tuple:
    """numba types of concrete Python arguments, as the dispatcher would infer them."""
    try:
        return tuple(dispatcher.typeof_pyval(a) for a in args)
    except Exception as error:
        raise FrontendError(f"cannot type the arguments for numba: {error}") from None


def capture(function, args=None, signature: str | None = None, types=None) -> CapturedKernel:
    """Compile `function` for `args` (values), `signature` or `types` (numba types) and capture its
    raw module."""
    install_capture_hook()
    dispatcher = as_dispatcher(function)
    if types is not None:
        types, return_type = tuple(types), None
    elif signature is not None:
        types, return_type = parse_signature(signature)
    elif args is not None:
        types, return_type = argument_types(dispatcher, args), None
    else:
        raise FrontendError("capture needs argument values or a signature")
    result = _compile(dispatcher, types, return_type)
    if _raw_modules(result.library) is None:
        # The kernel was compiled before the hook existed: compile a fresh copy.
        dispatcher = as_dispatcher(dispatcher.py_func) if hasattr(dispatcher, "py_func") else dispatcher
        dispatcher = _fresh_copy(dispatcher)
        result = _compile(dispatcher, types, return_type)
    if return_type is not None and result.signature.return_type != return_type:
        # Only when the dispatcher already held an overload for these argument types.
        raise FrontendError(f"signature says the kernel returns {return_type}, "
                            f"but the dispatcher's existing overload returns {result.signature.return_type}")
    module, source = _link_library(result.library)
    convention = _calling_convention(result, module)
    return CapturedKernel(module, convention, dispatcher, result.signature, source)


def compiled_or_lowered(dispatcher, types) -> object:
    """The dispatcher's compile result for `types`, or a lowered-only one (`lowered`) where the
    dispatcher has none; numba's own error (a TypingError) as the dispatcher's call raises it."""
    types = tuple(types)
    if types in dispatcher.overloads:
        return dispatcher.overloads[types]
    if _lowers_only(dispatcher):
        return lowered(dispatcher, types)
    dispatcher.compile(types)
    return dispatcher.overloads[types]


def _compile(dispatcher, types, return_type=None):
    from numba.core.typing import signature

    types = tuple(types)
    try:
        if return_type is None:
            return compiled_or_lowered(dispatcher, types)
        if types not in dispatcher.overloads:
            # With a return type numba casts the result to it, as `njit("int32(int32)")` does.
            dispatcher.compile(signature(return_type, *types))
    except Exception as error:
        raise FrontendError(f"numba cannot compile {getattr(dispatcher, '__name__', dispatcher)} "
                            f"for {types}: {error}") from None
    return dispatcher.overloads[types]


_LOWERED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
"""Dispatcher -> {argument types: numba's compile result, lowered only}."""


def _lowers_only(dispatcher) -> bool:
    """Whether `lowered` may stand in for the dispatcher's own compile: a plain njit function
    without numba's on-disk cache (which would load machine code faster than anything)."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import _FunctionCompiler
    from numba.core.registry import CPUDispatcher

    # (a generated function's compiler, a subclass, picks its implementation per call)
    return type(dispatcher) is CPUDispatcher and isinstance(getattr(dispatcher, "_cache", None), NullCache) \
        and type(getattr(dispatcher, "_compiler", None)) is _FunctionCompiler


def lowered(dispatcher, types: tuple):
    """numba's compile of `dispatcher` for `types` up to its LLVM module, without numba's
    optimization and machine code (its `no_compile` flags, as numba's own `compile_subroutine`
    uses for helpers), for a kernel the dispatcher has not compiled.

    enzpy needs only the raw module (the capture hook keeps it) and the signature: on a fresh
    dispatcher, numba's O3 and code generation were a fifth of a GMM gradient's first call.
    The dispatcher itself stays uncompiled for these types; calling the kernel compiles it as
    it would have. Called functions are compiled as numba compiles them. Kept per dispatcher,
    so that numba's Environment (held weakly by name) lives as long as the kernel.
    """
    from numba.core import compiler
    from numba.core.compiler_lock import global_compiler_lock

    cache = _LOWERED.setdefault(dispatcher, {})
    if types in cache:
        return cache[types]
    function_compiler = dispatcher._compiler
    with global_compiler_lock:
        flags = compiler.Flags()
        function_compiler.targetdescr.options.parse_as_flags(flags, function_compiler.targetoptions)
        flags = function_compiler._customize_flags(flags)
        flags.no_compile = flags.no_cpython_wrapper = flags.no_cfunc_wrapper = True
        result = compiler.compile_extra(
            function_compiler.targetdescr.typing_context, function_compiler.targetdescr.target_context,
            function_compiler._get_implementation(types, {}), args=types, return_type=None, flags=flags,
            locals=function_compiler.locals, pipeline_class=function_compiler.pipeline_class)
    if result.typing_error is not None:
        raise result.typing_error
    cache[types] = result
    return result


def _fresh_copy(dispatcher, **options):
    import numba
    # njit warns about `nopython`, which the dispatcher's options always hold.
    kept = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    return numba.njit(**{**kept, **options})(dispatcher.py_func)


def _with_debuggable_callees(function):
    """`function` with the njit functions it calls by global name compiled with debug info and
    inlined by numba itself, so that their instructions keep their own source lines.

    An output form (results.py) calls the user's kernel: without this, every
    instruction of the kernel would carry the generated form's call line.
    (Debug info alone would make numba mark the callee `noinline`.)
    """
    import types

    import numba
    from numba.core.registry import CPUDispatcher

    if not getattr(function, "enzpy_calls_the_kernel", False):
        return function                      # other kernels' callees: as numba compiles them
    replaced = {name: function.__globals__[name] for name in function.__code__.co_names
                if isinstance(function.__globals__.get(name), CPUDispatcher)}
    if not replaced:
        return function
    namespace = dict(function.__globals__)
    for name, callee in replaced.items():
        kept = {k: v for k, v in callee.targetoptions.items() if k not in ("nopython", "inline")}
        namespace[name] = numba.njit(**kept, debug=True, inline="always")(callee.py_func)
    return types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              function.__closure__)


def recapture_with_debug_info(captured: CapturedKernel) -> CapturedKernel:
    """The same kernel compiled again with debug info, so instructions carry source lines.

    Used only to locate an error: debug info makes numba mark the kernel
    `noinline` and costs compile time, so the normal path goes without.
    """
    dispatcher = captured.dispatcher
    if not hasattr(dispatcher, "py_func"):
        return captured
    # debug=True would also switch bounds checking on unless the kernel chose.
    boundscheck = dispatcher.targetoptions.get("boundscheck", False)
    kept = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    import numba
    fresh = numba.njit(**{**kept, "debug": True, "boundscheck": boundscheck})(
        _with_debuggable_callees(dispatcher.py_func))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # numba warns about array expressions without source
        result = _compile(fresh, captured.signature.args, captured.signature.return_type)
    module, source = _link_library(result.library)
    return CapturedKernel(module, _calling_convention(result, module), fresh, result.signature, source)


def _raw_modules(library) -> list[str] | None:
    modules = library.__dict__.get(_RAW_ATTRIBUTE)
    if modules is None:
        return None
    kept = []
    for text in modules:
        defined = [name.strip('"') for name in _DEFINED.findall(text)]
        if defined and all(name.startswith(_WRAPPER_PREFIXES) for name in defined):
            continue             # the CPython / cfunc wrappers need the Python C API
        kept.append(text)
    return kept


def _libraries_in_link_order(library) -> list:
    """The kernel's library first, and every library before the libraries it links against.

    LLVM links a `linkonce_odr` definition only if the module linked so far
    refers to it. numba's runtime library (NRT_MemInfo_data_fast, ...) is linked
    by every library; linked before the unicode library that calls
    NRT_MemInfo_data_fast, its definition was dropped, and the JIT, finding
    one symbol unresolved, resolved none (`free` at address 0). A reverse
    post-order puts each library after everything that can refer to it.
    """
    post_order, seen = [], {id(library)}
    stack = [(library, iter(library._linking_libraries))]
    while stack:
        current, dependencies = stack[-1]
        dependency = next(dependencies, None)
        if dependency is None:
            post_order.append(current)
            stack.pop()
        elif id(dependency) not in seen:
            seen.add(id(dependency))
            stack.append((dependency, iter(dependency._linking_libraries)))
    return post_order[::-1]


def _link_library(library) -> tuple[llvm.ModuleRef, str]:
    """Link the kernel's raw modules with those of every library it depends on.

    A recursive call goes through `.numba.unresolved$name`, a pointer numba fills
    in at run time: the library defining `name` is linked too and the pointer
    becomes a constant holding the function, so that the call reads as a direct
    one (the pre-AD pipeline folds the load; `driver.to_ir` does without it).
    """
    linked, source = _link_libraries(_libraries_in_link_order(library))
    seen = {id(library)}
    while True:
        text = str(linked)
        defined = {name.strip('"') for name in _DEFINED.findall(text)}
        missing = [name for name in _UNRESOLVED.findall(text) if name not in defined]
        found = [_LIBRARY_DEFINING.get(name) for name in missing]
        found = [lib for lib in found if lib is not None and id(lib) not in seen]
        if not found:
            break
        for other in found:
            seen.add(id(other))
            more, more_source = _link_libraries(_libraries_in_link_order(other), keep_external=set(missing))
            linked.link_in(more)
            source = more_source if more_source != "raw" else source
    resolved = _UNRESOLVED.sub(lambda m: f'@"{_UNRESOLVED_PREFIX}{m.group(1)}" = internal constant ptr @{m.group(1)}'
                               if m.group(1) in defined else m.group(0), text)
    if resolved != text:
        linked = llvm.parse_assembly(resolved)
        linked.verify()
    return linked, source


def _link_libraries(libraries, keep_external: set[str] | None = None) -> tuple[llvm.ModuleRef, str]:
    """Link `libraries` in order; all but the first are mergeable, and with `keep_external`
    (the names a recursive call needs) the first too, except those names."""
    source = "raw"
    linked = None
    for index, current in enumerate(libraries):
        texts = _raw_modules(current)
        if texts is None:
            source = "numba-optimized"
            modules = [current._get_module_for_linking().clone()]
        else:
            modules = [llvm.parse_assembly(text) for text in texts]
        for module in modules:
            if index > 0 or keep_external is not None:
                _make_mergeable(module, keep_external or ())
            if linked is None:
                linked = module
            else:
                linked.link_in(module)
    linked.verify()
    return linked, source


def _make_mergeable(module: llvm.ModuleRef, keep_external=()) -> None:
    """Dependencies may be linked in twice (through two paths): let LLVM merge them."""
    for function in module.functions:
        if not function.is_declaration and function.linkage == llvm.Linkage.external \
                and function.name not in keep_external:
            function.linkage = llvm.Linkage.linkonce_odr


def argument_specs(result, what: str = "") -> tuple[ArgumentSpec, ...]:
    """Where each argument of numba's compile `result` sits among the entry's parameters (after
    retptr and excinfo): an array takes 5 + 2 * ndim, a scalar one."""
    from numba.core import types

    specs, position = [], 2
    names = list(result.fndesc.args)
    for index, numba_type in enumerate(result.signature.args):
        if isinstance(numba_type, types.Array):
            count = 5 + 2 * numba_type.ndim
        elif isinstance(numba_type, (types.Float, types.Integer, types.Boolean)):
            count = 1
        else:
            raise FrontendError(f"{what}argument {names[index]!r} has type {numba_type}: enzpy takes "
                                "numpy arrays and int / float / bool scalars")
        specs.append(ArgumentSpec(index, names[index], numba_type, position, count))
        position += count
    return tuple(specs)


def _calling_convention(result, module: llvm.ModuleRef) -> CallingConvention:
    from numba.core import types

    entry_name = result.fndesc.mangled_name
    entry = module.get_function(entry_name)
    parameter_types = tuple(str(a.type) for a in entry.arguments)
    specs = argument_specs(result)
    position = specs[-1].first_parameter + specs[-1].parameter_count if specs else 2
    if position != len(parameter_types):
        raise FrontendError(f"unexpected entry-point layout for {entry_name}: "
                            f"{len(parameter_types)} LLVM parameters, expected {position}")
    return_type = result.signature.return_type
    if not (return_type == types.none or isinstance(return_type, (types.Float, types.Integer, types.Boolean))):
        raise FrontendError(f"kernel returns {return_type}: this derivative needs a scalar result or none; "
                            "for array and tuple results use vjp, jvp, jacobian, or autodiff with seed= an "
                            "array (or a tuple) of the result's structure")
    return CallingConvention(entry_name, tuple(specs), return_type, parameter_types)


# numba's NRT MemInfo: {i64 refcount, ptr destructor, ptr destructor_info, ptr data, i64 size}.
MEMINFO_DATA_OFFSET = 24
# NRT entry points that allocate a MemInfo with a fresh data buffer; argument 0 is the byte size.
NRT_ALLOCATORS = ("NRT_MemInfo_alloc_aligned", "NRT_MemInfo_alloc_safe_aligned",
                  "NRT_MemInfo_alloc", "NRT_MemInfo_alloc_safe")
