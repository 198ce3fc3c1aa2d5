"""The per-thread functions on an NVIDIA GPU: PTX from llvmlite's own NVPTX backend.

The per-thread function of a mode (cuda/compile.py: the primal, its tangent
function or its gradient, barriers and atomics included) is per-thread GPU code
already; what the CPU lowering does with barriers, the GPU does itself. So
`gpu_module` keeps it as it is and only puts it back on the GPU:

- the NVPTX triple and data layout; `enzpy.cuda.barrier` -> `llvm.nvvm.barrier0`;
  the thread-index intrinsics never left;
- the block's shared memory is the launch's dynamic shared memory: the primal's
  bytes (static arrays, then the dynamic array), then, in a derivative, as many
  for their shadow, zeroed by the block's threads before anything runs;
- a kernel entry `enzpy_kernel(arguments..., i64 shared bytes, i32 dynamic
  bytes)` calls the per-thread function; an Active scalar's adjoint goes through
  a slot of the thread into one atomic add per thread;
- malloc / realloc / free (the gradient's tape) become wrappers over the device
  heap's malloc and free that keep each block's size (the device has no
  realloc); each thread's tape is small and its own (ReverseSpec.thread_tapes);
- libm names and the LLVM math intrinsics NVPTX cannot select become libdevice
  calls (`__nv_sin`, ...), and libdevice is linked from the CUDA toolkit.

`ptx(kernel, *annotated, mode=...)` gives the PTX without a GPU (tests check it
with `ptxas`); `on_gpu` and `differentiate` launch through cuda.core.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np

from ..annotations import Active, Const, Duplicated
from ..errors import EnzpyError
from ..ir import write_module
from .capture import DYNAMIC_SHARED_BYTES, python_function
from .compile import AdjointSharing, ThreadFunction, define_atomic_adds, keep_only_reachable, thread_function
from .launch import grid_shape

NVPTX_TRIPLE = "nvptx64-nvidia-cuda"
ENTRY = "enzpy_kernel"
_NATIVE_MATH = {"sqrt", "fabs", "fma", "fmuladd", "minnum", "maxnum", "minimum", "maximum", "floor", "ceil",
                "trunc", "rint", "nearbyint", "round", "roundeven", "copysign", "canonicalize"}
_ALLOCATION_WRAPPERS = """
declare ptr @malloc(i64)
declare void @free(ptr)
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)

define internal ptr @enzpy.gpu.malloc(i64 %bytes) {
entry:
  %total = add i64 %bytes, 16
  %block = call ptr @malloc(i64 %total)
  %none = icmp eq ptr %block, null
  br i1 %none, label %failed, label %keep
failed:
  ret ptr null
keep:
  store i64 %bytes, ptr %block, align 8
  %data = getelementptr i8, ptr %block, i64 16
  ret ptr %data
}

define internal void @enzpy.gpu.free(ptr %data) {
entry:
  %none = icmp eq ptr %data, null
  br i1 %none, label %done, label %release
release:
  %block = getelementptr i8, ptr %data, i64 -16
  call void @free(ptr %block)
  br label %done
done:
  ret void
}

define internal ptr @enzpy.gpu.calloc(i64 %count, i64 %size) {
entry:
  %bytes = mul i64 %count, %size
  %data = call ptr @enzpy.gpu.malloc(i64 %bytes)
  %none = icmp eq ptr %data, null
  br i1 %none, label %done, label %zero
zero:
  call void @llvm.memset.p0.i64(ptr %data, i8 0, i64 %bytes, i1 false)
  br label %done
done:
  ret ptr %data
}

define internal ptr @enzpy.gpu.realloc(ptr %old, i64 %bytes) {
entry:
  %data = call ptr @enzpy.gpu.malloc(i64 %bytes)
  %fresh = icmp eq ptr %old, null
  %failed = icmp eq ptr %data, null
  %nothing.to.copy = or i1 %fresh, %failed
  br i1 %nothing.to.copy, label %done, label %copy
copy:
  %old.block = getelementptr i8, ptr %old, i64 -16
  %old.bytes = load i64, ptr %old.block, align 8
  %smaller = icmp ult i64 %old.bytes, %bytes
  %kept = select i1 %smaller, i64 %old.bytes, i64 %bytes
  call void @llvm.memcpy.p0.p0.i64(ptr %data, ptr %old, i64 %kept, i1 false)
  call void @enzpy.gpu.free(ptr %old)
  br label %done
done:
  ret ptr %data
}
"""


def target_machine(cc=(9, 0)) -> llvm.TargetMachine:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm.Target.from_triple(NVPTX_TRIPLE).create_target_machine(cpu=f"sm_{cc[0]}{cc[1]}", opt=3)


def libdevice_path() -> str:
    """libdevice.10.bc of the CUDA toolkit (numba-cuda's search, then CUDA_HOME, then /usr/local/cuda*)."""
    try:
        from numba.cuda.cudadrv.libs import get_libdevice
        path = get_libdevice()
        if path and os.path.exists(path):
            return path
    except Exception:
        pass
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), *sorted(glob.glob("/usr/local/cuda*"))]
    for root in roots:
        candidate = Path(root) / "nvvm" / "libdevice" / "libdevice.10.bc"
        if root and candidate.exists():
            return str(candidate)
    raise EnzpyError("the GPU path needs libdevice.10.bc from the CUDA toolkit (set CUDA_HOME), not found")


def _libdevice() -> llvm.ModuleRef:
    with open(libdevice_path(), "rb") as handle:
        return llvm.parse_bitcode(handle.read())


def gpu_module(built: ThreadFunction, cc=(9, 0)) -> llvm.ModuleRef:
    """The per-thread function with its kernel entry, as an optimized NVPTX module."""
    module = built.module
    keep_only_reachable(module, built.function)
    define_atomic_adds(module)
    built.function.linkage = "internal"
    machine = target_machine(cc)
    module.triple, module.data_layout = NVPTX_TRIPLE, str(machine.target_data)
    text = write_module(module)
    libdevice = _libdevice()
    text = _for_the_gpu(text, {f.name for f in libdevice.functions})
    text = _declared_once(text + _entry(built))
    parsed = llvm.parse_assembly(text)
    parsed.link_in(libdevice)
    parsed.triple, parsed.data_layout = NVPTX_TRIPLE, str(machine.target_data)
    # Only the entry is visible: the rest may be renamed (PTX names have no dots) and dropped when unused.
    for function in parsed.functions:
        if not function.is_declaration and function.name != ENTRY:
            function.linkage = llvm.Linkage.internal
    for variable in parsed.global_variables:
        if variable.name != "enzpy_shared_memory" and not variable.is_declaration:
            variable.linkage = llvm.Linkage.internal
    parsed.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    builder = llvm.create_pass_builder(machine, tuning)
    builder.getModulePassManager().run(parsed, builder)
    return parsed


def _for_the_gpu(text: str, libdevice: set[str]) -> str:
    # Line info is for the CPU path's error messages; on the GPU it only makes a debug target.
    text = re.sub(r",? !dbg !\d+", "", text)
    text = re.sub(r"^\s*(tail )?call void @llvm\.dbg\..*$", "", text, flags=re.M)
    text = re.sub(r"^!llvm\.dbg\.cu = .*$", "", text, flags=re.M)
    text = re.sub(r'^target triple = .*$', "", text, flags=re.M)
    text = re.sub(r'^target datalayout = .*$', "", text, flags=re.M)
    text = text.replace('call void @"enzpy.cuda.barrier"()', "call void @llvm.nvvm.barrier0()")
    text = text.replace('call void @enzpy.cuda.barrier()', "call void @llvm.nvvm.barrier0()")
    text = re.sub(r'^declare void @"?enzpy\.cuda\.barrier"?\(\)\s*$', "declare void @llvm.nvvm.barrier0()",
                  text, flags=re.M)
    text = re.sub(rf'^declare [^@]*@"?{re.escape(DYNAMIC_SHARED_BYTES)}"?\(.*$', "", text, flags=re.M)
    if DYNAMIC_SHARED_BYTES in text:
        text += (f'\n@enzpy.dynamic.bytes = internal addrspace(3) global i32 undef, align 4\n'
                 f'define internal i32 @"{DYNAMIC_SHARED_BYTES}"() {{\n'
                 f'  %bytes = load i32, ptr addrspace(3) @enzpy.dynamic.bytes, align 4\n  ret i32 %bytes\n}}\n')
    for name in ("malloc", "calloc", "realloc", "free"):
        text = re.sub(rf'@"?{name}"?\(', f"@enzpy.gpu.{name}(", text)
        text = re.sub(rf'^declare [^@]*@enzpy\.gpu\.{name}\(.*$', "", text, flags=re.M)
    text += _ALLOCATION_WRAPPERS

    def to_libdevice(match: re.Match) -> str:
        name = match.group(1)
        intrinsic = re.fullmatch(r"llvm\.([a-z0-9]+)\.(f32|f64)", name)
        if intrinsic is not None:
            operation, kind = intrinsic.groups()
            candidate = f"__nv_{operation}{'f' if kind == 'f32' else ''}"
            if operation not in _NATIVE_MATH and candidate in libdevice:
                return f"@{candidate}("
            return match.group(0)
        powi = re.fullmatch(r"llvm\.powi\.(f32|f64)\.i32", name)
        if powi is not None:
            return f"@__nv_powi{'f' if powi.group(1) == 'f32' else ''}("
        if f"__nv_{name}" in libdevice:
            return f"@__nv_{name}("
        return match.group(0)

    return re.sub(r'@"?([A-Za-z_][\w.]*)"?\(', to_libdevice, text)


def _entry(built: ThreadFunction) -> str:
    """LLVM text of `enzpy_kernel`: shared window, shadow zeroing, the call, Active adds."""
    function = built.function
    types = [str(t) for t in function.function_type.params]
    shared_positions = built.shared_parameters
    convention = built.kernel.captured.convention
    first_active = len(convention.parameter_types) + len(built.duplicated) + int(built.shadowed_shared)
    active_positions = range(first_active, first_active + len(built.active)) if built.mode == "reverse" else ()
    kept = [i for i in range(2, len(types)) if i not in shared_positions]
    parameters = ", ".join([f"{types[i]} %p{i}" for i in kept] + ["i64 %shared.bytes", "i32 %dynamic.bytes"])
    lines = [
        "@enzpy_shared_memory = external addrspace(3) global [0 x i8], align 16",
        f"define ptx_kernel void @{ENTRY}({parameters}) {{",
        "entry:",
        "  %retptr = alloca [16 x i8], align 16",
        "  %excinfo = alloca ptr, align 8",
        "  %shared = addrspacecast ptr addrspace(3) @enzpy_shared_memory to ptr",
        "  %shadow.shared = getelementptr i8, ptr %shared, i64 %shared.bytes",
    ]
    if DYNAMIC_SHARED_BYTES in built.module.functions:
        lines.append("  store i32 %dynamic.bytes, ptr addrspace(3) @enzpy.dynamic.bytes, align 4")
    if built.shadowed_shared:
        lines += [
            "  %tx = call i32 @llvm.nvvm.read.ptx.sreg.tid.x()",
            "  %ty = call i32 @llvm.nvvm.read.ptx.sreg.tid.y()",
            "  %tz = call i32 @llvm.nvvm.read.ptx.sreg.tid.z()",
            "  %nx = call i32 @llvm.nvvm.read.ptx.sreg.ntid.x()",
            "  %ny = call i32 @llvm.nvvm.read.ptx.sreg.ntid.y()",
            "  %nz = call i32 @llvm.nvvm.read.ptx.sreg.ntid.z()",
            "  %tzy = mul i32 %tz, %ny", "  %tzy.y = add i32 %tzy, %ty", "  %row = mul i32 %tzy.y, %nx",
            "  %linear = add i32 %row, %tx", "  %nxy = mul i32 %nx, %ny", "  %count = mul i32 %nxy, %nz",
            "  %first = zext i32 %linear to i64", "  %stride = zext i32 %count to i64",
            "  %words = lshr i64 %shared.bytes, 3",
            "  br label %zero.test",
            "zero.test:",
            "  %word = phi i64 [ %first, %entry ], [ %word.next, %zero ]",
            "  %more = icmp ult i64 %word, %words",
            "  br i1 %more, label %zero, label %zeroed",
            "zero:",
            "  %slot = getelementptr i64, ptr %shadow.shared, i64 %word",
            "  store i64 0, ptr %slot, align 8",
            "  %word.next = add i64 %word, %stride",
            "  br label %zero.test",
            "zeroed:",
        ]
    lines.append("  call void @llvm.nvvm.barrier0()")
    arguments = []
    for index, ty in enumerate(types):
        if index == 0:
            arguments.append("ptr %retptr")
        elif index == 1:
            arguments.append("ptr %excinfo")
        elif index == shared_positions[0]:
            arguments.append("ptr %shared")
        elif len(shared_positions) > 1 and index == shared_positions[1]:
            arguments.append("ptr %shadow.shared")
        elif index in active_positions:
            element = _active_type(built, index - first_active)
            lines += [f"  %active{index} = alloca {element}, align 8",
                      f"  store {element} 0.0, ptr %active{index}, align 8"]
            arguments.append(f"ptr %active{index}")
        else:
            arguments.append(f"{ty} %p{index}")
    lines.append(f"  %status = call i32 @\"{function.name}\"({', '.join(arguments)})")
    for index in active_positions:
        element = _active_type(built, index - first_active)
        lines += [f"  %total{index} = load {element}, ptr %active{index}, align 8",
                  f"  %old{index} = atomicrmw fadd ptr %p{index}, {element} %total{index} monotonic"]
    lines += ["  ret void", "}", "declare i32 @llvm.nvvm.read.ptx.sreg.tid.x()",
              "declare i32 @llvm.nvvm.read.ptx.sreg.tid.y()", "declare i32 @llvm.nvvm.read.ptx.sreg.tid.z()",
              "declare i32 @llvm.nvvm.read.ptx.sreg.ntid.x()", "declare i32 @llvm.nvvm.read.ptx.sreg.ntid.y()",
              "declare i32 @llvm.nvvm.read.ptx.sreg.ntid.z()"]
    return "\n" + "\n".join(lines) + "\n"


def _active_type(built: ThreadFunction, k: int) -> str:
    dtype = built.kernel.captured.convention.arguments[built.active[k]].dtype
    return "double" if dtype == np.float64 else "float"


def _declared_once(text: str) -> str:
    """Drop repeated identical declarations (the entry's thread-index intrinsics)."""
    seen, lines = set(), []
    for line in text.splitlines():
        if line.startswith("declare "):
            name = re.search(r'@"?([\w.$]+)"?\(', line).group(1)
            if name in seen:
                continue
            seen.add(name)
        lines.append(line)
    return "\n".join(lines) + "\n"


def ptx_of(built: ThreadFunction, cc=(9, 0)) -> str:
    return target_machine(cc).emit_assembly(gpu_module(built, cc))


def ptx(kernel, *annotated, mode: str = "primal", cc=(9, 0)) -> str:
    """The PTX of `kernel`'s per-thread function for these arguments (plain values, or annotated ones
    with mode "reverse" / "forward"); no GPU needed. `cc`: the compute capability it is for.

    Its entry is `enzpy_kernel`; libdevice comes from the CUDA toolkit (`libdevice_path`).

    It needs the toolkit's libdevice, so the example is not run with the others
    (tests/test_cuda.py assembles the PTX of its kernels with ptxas where the toolkit is):

    .. code-block:: python

        import numpy as np
        from numba import cuda
        from enzpy import Active, Const, Duplicated
        from enzpy.cuda import gpu

        @cuda.jit
        def saxpy(a, x, y, out):
            i = cuda.grid(1)
            if i < x.shape[0]:
                out[i] = a * x[i] + y[i]

        x, out = np.array([1.0, 2.0, 3.0]), np.zeros(3)
        text = gpu.ptx(saxpy, 2.0, x, np.ones(3), out)            # ".visible .entry enzpy_kernel(", sm_90
        gradient = gpu.ptx(saxpy, Active(2.0), Duplicated(x, np.zeros(3)), Const(np.ones(3)),
                           Duplicated(out, np.ones(3)), mode="reverse", cc=(8, 0))   # ".target sm_80"
    """
    values, kinds = _values_and_kinds(annotated)
    built = thread_function(python_function(kernel), mode, _types(values), kinds, True, AdjointSharing("gpu"))
    return ptx_of(built, cc)


def ptxas() -> str | None:
    """The CUDA toolkit's PTX assembler, if there is one."""
    found = shutil.which("ptxas")
    if found:
        return found
    for root in [os.environ.get("CUDA_HOME", ""), *sorted(glob.glob("/usr/local/cuda*"))]:
        candidate = Path(root) / "bin" / "ptxas"
        if root and candidate.exists():
            return str(candidate)
    return None


def assemble(ptx_text: str, cc=(9, 0)) -> bytes:
    """A cubin from PTX through `ptxas` (raises EnzpyError with its message when it refuses)."""
    assembler = ptxas()
    if assembler is None:
        raise EnzpyError("ptxas (CUDA toolkit) not found")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "kernel.ptx", Path(folder) / "kernel.cubin"
        source.write_text(ptx_text)
        result = subprocess.run([assembler, f"-arch=sm_{cc[0]}{cc[1]}", str(source), "-o", str(target)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EnzpyError(f"ptxas refused the PTX: {result.stderr.strip()}")
        return target.read_bytes()


def _values_and_kinds(annotated):
    annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in annotated]
    return [a.value for a in annotated], tuple(type(a) for a in annotated)


def _types(values) -> tuple:
    from numba import typeof

    return tuple(typeof(value) for value in values)        # numba-cuda types device arrays too


# -- launching (needs a GPU; untested where none is lent)

class _GpuConfigured:
    def __init__(self, runner, configuration):
        if not isinstance(configuration, tuple) or not 2 <= len(configuration) <= 4:
            raise ValueError(f"launch as kernel[griddim, blockdim], got {configuration!r}")
        self.runner = runner
        self.grid = grid_shape(configuration[0], "griddim")
        self.block = grid_shape(configuration[1], "blockdim")
        self.dynamic_shared = int(configuration[3]) if len(configuration) == 4 else 0

    def __call__(self, *args, mode: str = "primal"):
        return self.runner._launch(self.grid, self.block, self.dynamic_shared, args, mode)


class GpuKernel:
    """`on_gpu(kernel)[grid, block](*args)`: the kernel compiled by enzpy's NVPTX path."""

    default_mode = "primal"

    def __init__(self, kernel):
        self.function = python_function(kernel)
        self._compiled: dict = {}

    def __getitem__(self, configuration):
        return _GpuConfigured(self, configuration)

    def _launch(self, grid, block, dynamic_shared, args, mode):
        from cuda.core import Device, LaunchConfig, ObjectCode, launch

        mode = self.default_mode if mode == "primal" else mode
        values, kinds = _values_and_kinds(args)
        key = (mode, _types(values), tuple(k.__name__ for k in kinds), grid[1:] == (1, 1) and block[1:] == (1, 1))
        if key not in self._compiled:
            sharing = AdjointSharing("gpu", one_dimensional=grid[1:] == (1, 1) and block[1:] == (1, 1))
            built = thread_function(self.function, mode, key[1], kinds, True, sharing)
            device = Device()
            device.set_current()
            cc = device.compute_capability
            code = ObjectCode.from_ptx(ptx_of(built, (cc.major, cc.minor)))
            self._compiled[key] = (built, code.get_kernel(ENTRY), device)
        built, kernel, device = self._compiled[key]
        device.set_current()
        arguments, copies, outputs = _kernel_arguments(built, args)
        primal_bytes = -(-(built.kernel.static_shared_bytes + dynamic_shared) // 16) * 16
        window = primal_bytes * (2 if built.shadowed_shared else 1)
        arguments += [ctypes.c_int64(primal_bytes), ctypes.c_int32(dynamic_shared)]
        if mode == "reverse":
            _reserve_device_heap()
        stream = device.default_stream
        launch(stream, LaunchConfig(grid=grid, block=block, shmem_size=window), kernel, *arguments)
        stream.sync()
        for host, device_array in copies:
            device_array.copy_to_host(host)
        if mode == "reverse":
            return tuple(float(o.copy_to_host()[0]) for o in outputs)
        return None


_HEAP_BYTES = 1 << 30
"""Device heap for the gradients' tapes (CUDA's default is 8 MiB: a few thousand threads' tapes)."""


def _reserve_device_heap() -> None:
    from cuda.bindings import driver

    (error, current) = driver.cuCtxGetLimit(driver.CUlimit.CU_LIMIT_MALLOC_HEAP_SIZE)
    if current < _HEAP_BYTES:
        driver.cuCtxSetLimit(driver.CUlimit.CU_LIMIT_MALLOC_HEAP_SIZE, _HEAP_BYTES)


class DifferentiableGpuKernel(GpuKernel):
    """`differentiate(kernel)[grid, block](*annotated, mode="reverse" | "forward")` on the GPU."""

    default_mode = "reverse"


def on_gpu(kernel) -> GpuKernel:
    """The kernel compiled by enzpy's NVPTX path (`ptx`) and launched through cuda.core:
    `on_gpu(kernel)[griddim, blockdim](*args)`, as numba.cuda launches it. NumPy arrays are
    copied to the device and back; device arrays (`numba.cuda.to_device`) are used in place.
    Needs an NVIDIA GPU.

    .. code-block:: python

        import numpy as np
        from numba import cuda
        from enzpy.cuda import gpu

        @cuda.jit
        def saxpy(a, x, y, out):
            i = cuda.grid(1)
            if i < x.shape[0]:
                out[i] = a * x[i] + y[i]

        x, y, out = np.arange(1024.0), np.ones(1024), np.zeros(1024)
        gpu.on_gpu(saxpy)[8, 128](2.0, x, y, out)      # out = 2 x + y, copied back
    """
    return GpuKernel(kernel)


def differentiate(kernel) -> DifferentiableGpuKernel:
    """Derivatives of a kernel on the GPU, as `enzpy.cuda.differentiate` gives them on the CPU:
    `differentiate(kernel)[griddim, blockdim](*annotated, mode="reverse")` returns the Active
    scalars' derivatives (reverse mode) and adds each array's adjoint into its shadow;
    `mode="forward"` writes the tangents into the shadows. Needs an NVIDIA GPU.

    .. code-block:: python

        import numpy as np
        from numba import cuda
        from enzpy import Active, Const, Duplicated
        from enzpy.cuda import gpu

        @cuda.jit
        def saxpy(a, x, y, out):
            i = cuda.grid(1)
            if i < x.shape[0]:
                out[i] = a * x[i] + y[i]

        x, dx = np.arange(1024.0), np.zeros(1024)
        out, dout = np.zeros(1024), np.ones(1024)     # dout: the adjoint of out's final contents
        (da,) = gpu.differentiate(saxpy)[8, 128](Active(2.0), Duplicated(x, dx), Const(np.ones(1024)),
                                                 Duplicated(out, dout))
        # da == x.sum(), dx == 2.0 everywhere
    """
    return DifferentiableGpuKernel(kernel)


def _kernel_arguments(built: ThreadFunction, args):
    """cuda.core arguments: arrays exploded as numba passes them (device pointers), then shadows,
    then Active outputs (reverse) or tangents (forward). NumPy arrays are copied to the device and
    back."""
    from numba import cuda

    convention = built.kernel.captured.convention
    annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in args]
    copies, arguments = [], []

    def on_device(array):
        if cuda.is_cuda_array(array):
            return array
        device_array = cuda.to_device(np.ascontiguousarray(array))
        copies.append((array, device_array))
        return device_array

    def exploded(array):
        pointer = array.__cuda_array_interface__["data"][0]
        return [ctypes.c_void_p(0), ctypes.c_void_p(0), ctypes.c_int64(array.size),
                ctypes.c_int64(array.dtype.itemsize), ctypes.c_void_p(pointer),
                *[ctypes.c_int64(n) for n in array.shape], *[ctypes.c_int64(s) for s in array.strides]]

    for spec, annotation in zip(convention.arguments, annotated):
        if spec.is_array:
            arguments += exploded(on_device(annotation.value))
        elif spec.dtype.kind == "f":
            arguments.append(ctypes.c_double(annotation.value) if spec.dtype == np.float64
                             else ctypes.c_float(annotation.value))
        elif spec.dtype.kind == "b":
            arguments.append(ctypes.c_bool(annotation.value))
        else:
            arguments.append(ctypes.c_int64(annotation.value) if spec.dtype.itemsize == 8
                             else ctypes.c_int32(annotation.value))
    for position in built.duplicated:
        shadow = on_device(annotated[position].shadow)
        arguments.append(ctypes.c_void_p(shadow.__cuda_array_interface__["data"][0]))
    outputs = []
    for position in built.active:
        annotation, dtype = annotated[position], convention.arguments[position].dtype
        if built.mode == "reverse":
            output = cuda.to_device(np.zeros(1, dtype))
            outputs.append(output)
            arguments.append(ctypes.c_void_p(output.__cuda_array_interface__["data"][0]))
        else:
            tangent = float(annotation.shadow) if isinstance(annotation, Duplicated) else 1.0
            arguments.append(ctypes.c_double(tangent) if dtype == np.float64 else ctypes.c_float(tangent))
    return arguments, copies, outputs
