"""A numba.cuda kernel's per-thread code as a CPU module, without a GPU.

numba-cuda lowers a kernel body as a device function in numba's CUDA
convention, `i32 f(ptr retptr, exploded args...)`, into NVVM IR: thread and
block indices are `llvm.nvvm.read.ptx.sreg.*` calls, `cuda.shared.array`s are
`addrspace(3)` globals reached through an `addrspacecast` instruction,
`cuda.syncthreads()` is `llvm.nvvm.barrier0`, math calls libdevice's
`__nv_<libm name>`, and `cuda.atomic.add` on floats an `atomicrmw fadd` once
llvmlite has parsed it. `compile_cuda` needs no device, NVVM or NVRTC; only
device functions ask the current device for its compute capability, which
`_device_free_compilation` answers while no GPU is present.

`capture` turns that into a module for the host: the host triple and data
layout; the kernel takes numba's CPU convention (an `excinfo` parameter after
retptr) plus one pointer to the block's shared memory, into which every shared
array becomes an offset; the barrier becomes a call of `enzpy.cuda.barrier`
(rules/cuda.py gives its derivative, cuda/barriers.py lowers it);
libdevice calls become libm calls. The thread indices stay intrinsic calls
until the lowering (cuda/barriers.py) reads them from the thread's context.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import llvmlite.binding as llvm

from ..errors import FrontendError
from ..frontend.numba import CallingConvention, CapturedKernel, argument_specs
from ..passes import target_machine

BARRIER = "enzpy.cuda.barrier"
"""`cuda.syncthreads()` between capture and the lowering (an opaque call LLVM keeps in place)."""
DYNAMIC_SHARED_BYTES = "enzpy.cuda.dynamic_shared_bytes"
"""The bytes of dynamic shared memory of the launch (PTX reads `%dynamic_smem_size` by inline asm)."""
SHARED_PARAMETER = "enzpy.shared"
SHARED_ALIGNMENT = 16

_SHARED_GLOBAL = re.compile(
    r'^@"?(_cudapy_smem[_0-9a-zA-Z.]*)"? = (?:(internal|external|common|private) )?addrspace\(3\) global '
    r'\[(\d+) x (double|float|i64|i32|i16|i8|i1)\][^\n]*$', re.M)
_SHARED_CAST = re.compile(
    r'(%"?[-\w.$]+"?) = addrspacecast ptr addrspace\(3\) @"?(_cudapy_smem[_0-9a-zA-Z.]*)"? to ptr')
_BARRIER_CALL = re.compile(r'call void @"?llvm\.nvvm\.(barrier0|barrier\.cta\.sync\.aligned\.all)"?\((i32 0)?\)')
_LIBDEVICE = re.compile(r'@"?__nv_([a-z0-9_]+)"?\(')
_ELEMENT_BYTES = {"double": 8, "float": 4, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "i1": 1}


@dataclass(frozen=True)
class SharedArray:
    """One `cuda.shared.array` of the kernel, placed in the block's shared buffer."""

    name: str
    """The global numba-cuda made for it."""
    offset: int
    """Byte offset in the buffer."""
    size: int
    """Bytes (0 for the dynamic array, sized at launch)."""
    element: str
    """LLVM element type (`double`, `float`, `i32`, ...)."""


@dataclass
class CapturedCudaKernel:
    """A kernel's per-thread function for the CPU and how to call it."""

    captured: CapturedKernel
    """Module (host triple) and convention: `i32 f(retptr, excinfo, args..., shared)`."""
    shared_arrays: tuple[SharedArray, ...]
    """The shared arrays, in buffer order; a dynamic one (`shared.array(0, ...)`) comes last."""
    static_shared_bytes: int
    """Bytes of the fixed-size shared arrays (the dynamic array starts here)."""
    name: str
    """The kernel's Python name."""

    @property
    def shared_parameter(self) -> int:
        return len(self.captured.convention.parameter_types) - 1

    @property
    def has_float_shared_memory(self) -> bool:
        return any(a.element in ("double", "float") for a in self.shared_arrays)


@contextlib.contextmanager
def _device_free_compilation(cc):
    """Let numba-cuda compile device functions with no GPU: it asks the current device for its
    compute capability there, and there is none. With a GPU, nothing changes."""
    from numba import cuda
    from numba.cuda import dispatcher

    if cuda.is_available():
        yield
        return

    class _Device:
        compute_capability = cc

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Device()
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def python_function(kernel):
    """The Python function behind a `@cuda.jit` kernel (or the function itself)."""
    function = getattr(kernel, "py_func", kernel)
    if not callable(function) or not hasattr(function, "__code__"):
        raise FrontendError(f"expected a numba.cuda kernel or a Python function, got {type(kernel).__name__}")
    return function


def capture(kernel, argument_types: tuple, cc=(9, 0)) -> CapturedCudaKernel:
    """Compile `kernel` for `argument_types` (numba types) and capture its per-thread code."""
    from numba.cuda.compiler import compile_cuda

    function = python_function(kernel)
    try:
        with _device_free_compilation(cc):
            result = compile_cuda(function, None, argument_types, cc=cc, lineinfo=True)
    except Exception as error:
        raise FrontendError(f"numba-cuda cannot compile {function.__name__} for {argument_types}: "
                            f"{error}") from None
    from numba.core import types
    if result.signature.return_type != types.none:
        raise FrontendError(f"CUDA kernel {function.__name__!r} returns {result.signature.return_type}: "
                            "kernels return nothing")
    text = str(_linked_module(result.library))
    entry = result.fndesc.mangled_name
    text, shared_arrays, static_bytes = _place_shared_arrays(text, entry, function.__name__)
    text = _for_the_host(text)
    text = _with_cpu_convention(text, entry)
    module = llvm.parse_assembly(text)
    module.verify()
    convention = _convention(result, module, entry, function.__name__)
    captured = CapturedKernel(module, convention, None, result.signature, "raw")
    return CapturedCudaKernel(captured, shared_arrays, static_bytes, function.__name__)


def _linked_module(library) -> llvm.ModuleRef:
    """The kernel's module linked with those of the device functions it calls."""
    seen, order = set(), []

    def visit(current):
        if id(current) in seen:
            return
        seen.add(id(current))
        order.append(current)
        for other in getattr(current, "_linking_libraries", ()):
            visit(other)

    visit(library)
    linked = None
    for index, current in enumerate(order):
        for text in current.llvm_strs:
            module = llvm.parse_assembly(text)
            if index > 0:
                for f in module.functions:      # a device function may come through two paths
                    if not f.is_declaration and f.linkage == llvm.Linkage.external:
                        f.linkage = llvm.Linkage.linkonce_odr
            if linked is None:
                linked = module
            else:
                linked.link_in(module)
    linked.verify()
    return linked


def _functions(text: str) -> list[tuple[str | None, str]]:
    """The module text cut into (defined function name or None, text) pieces."""
    pieces, current, name = [], [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("define "):
            if current:
                pieces.append((None, "".join(current)))
            current, name = [line], _defined_name(line)
        elif line.startswith("}") and name is not None:
            current.append(line)
            pieces.append((name, "".join(current)))
            current, name = [], None
        else:
            current.append(line)
    if current:
        pieces.append((name, "".join(current)))
    return pieces


def _defined_name(line: str) -> str:
    match = re.search(r'@("([^"]+)"|[-\w.$]+)\(', line)
    return match.group(2) or match.group(1)


def _place_shared_arrays(text: str, entry: str, kernel_name: str):
    """Shared arrays as offsets into the kernel's shared-memory parameter."""
    arrays, offset, dynamic = [], 0, None
    for match in _SHARED_GLOBAL.finditer(text):
        name, linkage, count, element = match.group(1), match.group(2), int(match.group(3)), match.group(4)
        if linkage == "external" or count == 0:
            dynamic = SharedArray(name, -1, 0, element)
            continue
        offset = -(-offset // SHARED_ALIGNMENT) * SHARED_ALIGNMENT
        arrays.append(SharedArray(name, offset, count * _ELEMENT_BYTES[element], element))
        offset += count * _ELEMENT_BYTES[element]
    static_bytes = -(-offset // SHARED_ALIGNMENT) * SHARED_ALIGNMENT
    if dynamic is not None:
        arrays.append(SharedArray(dynamic.name, static_bytes, 0, dynamic.element))
    placed = {a.name: a for a in arrays}
    pieces = []
    for function, piece in _functions(_SHARED_GLOBAL.sub("", text)):
        if function == entry:
            piece = _SHARED_CAST.sub(lambda m: f'{m.group(1)} = getelementptr i8, ptr %"{SHARED_PARAMETER}", '
                                               f'i64 {placed[m.group(2)].offset}', piece)
        pieces.append(piece)
    text = "".join(pieces)
    for array in arrays:
        if re.search(rf'@"?{re.escape(array.name)}"?\b', text):
            raise FrontendError(f"CUDA kernel {kernel_name!r}: a shared array is declared in a device "
                                "function; enzpy places shared arrays declared in the kernel itself "
                                "(declare it there and pass it to the device function)")
    return text, tuple(arrays), static_bytes


def _for_the_host(text: str) -> str:
    """Host triple and data layout; the barrier as enzpy's call; libdevice as libm."""
    machine = target_machine()
    text = re.sub(r'^target triple = .*$', f'target triple = "{llvm.get_process_triple()}"', text, flags=re.M)
    text = re.sub(r'^target datalayout = .*$', f'target datalayout = "{machine.target_data}"', text, flags=re.M)
    text = _BARRIER_CALL.sub(f'call void @"{BARRIER}"()', text)
    text = re.sub(r'^declare void @"?llvm\.nvvm\.(barrier0|barrier\.cta\.sync\.aligned\.all)"?\(.*$', "",
                  text, flags=re.M)
    if f'@"{BARRIER}"()' in text:
        text += f'\ndeclare void @"{BARRIER}"()\n'
    dynamic_size = re.compile(r'call i32 asm sideeffect "mov\.u32 \$0, %dynamic_smem_size;", "=r"\(\)')
    if dynamic_size.search(text):
        text = dynamic_size.sub(f'call i32 @"{DYNAMIC_SHARED_BYTES}"()', text)
        text += f'\ndeclare i32 @"{DYNAMIC_SHARED_BYTES}"()\n'
    text = _LIBDEVICE.sub(lambda m: f'@"{m.group(1)}"(', text)
    # nvvm metadata means nothing on the host.
    return re.sub(r'^!nvvm[^\n]*$', "", text, flags=re.M)


def _with_cpu_convention(text: str, entry: str) -> str:
    """`i32 f(retptr, args...)` -> `i32 f(retptr, excinfo, args..., shared)`."""
    pieces = []
    for function, piece in _functions(text):
        if function == entry:
            header, _, body = piece.partition("\n")
            open_at = header.index("(", header.index("@"))
            depth, close_at = 0, open_at
            for close_at in range(open_at, len(header)):
                depth += {"(": 1, ")": -1}.get(header[close_at], 0)
                if depth == 0:
                    break
            parameters = header[open_at + 1:close_at]
            first, comma, rest = parameters.partition(",")
            parameters = f'{first}, ptr %"enzpy.excinfo"{comma}{rest}, ptr %"{SHARED_PARAMETER}"'
            piece = header[:open_at + 1] + parameters + header[close_at:] + "\n" + body
        pieces.append(piece)
    return "".join(pieces)


def _convention(result, module: llvm.ModuleRef, entry_name: str, kernel_name: str) -> CallingConvention:
    from numba.core import types

    entry = module.get_function(entry_name)
    parameter_types = tuple(str(a.type) for a in entry.arguments)
    specs = argument_specs(result, f"CUDA kernel {kernel_name!r}: ")
    position = specs[-1].first_parameter + specs[-1].parameter_count if specs else 2
    if position + 1 != len(parameter_types):
        raise FrontendError(f"unexpected CUDA kernel layout for {kernel_name!r}: {len(parameter_types)} "
                            f"parameters, expected {position + 1}")
    return CallingConvention(entry_name, specs, types.none, parameter_types)
