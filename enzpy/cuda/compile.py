"""From a numba.cuda kernel to the per-thread function that runs: the primal, its tangent
function or its gradient, in enzpy IR, before the CPU or GPU lowering.

capture (cuda/capture.py) -> enzpy IR -> the checks and atomics of cuda/threads.py -> the
pre-AD pipeline -> the AD of the per-thread function. Reverse mode adds adjoints of memory
atomically (ReverseSpec.atomic_adjoints): blocks run in parallel, and several threads read one
element. Its tapes are a thread's (ReverseSpec.thread_tapes: small, no shared spare buffer).
The block's shared memory is one pointer parameter; a derivative shadows it when it holds floats
(the shadow parameter comes after the arrays' shadows).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ad.forward import ForwardSpec, build_forward
from ..ad.reverse import ReverseSpec, build_reverse
from ..analysis.memory_types import pointer_root
from ..analysis.writes import written_parameters
from ..annotations import Active, Duplicated
from ..arguments import float_type
from ..driver import optimize, to_ir
from ..errors import DifferentiationError
from ..ir import core
from ..ir.reader import parse_module
from ..ir.types import DOUBLE, FLOAT
from ..rules.cuda import ATOMIC_ADD
from .capture import CapturedCudaKernel, capture
from .threads import atomic_adds_as_calls, check_primitives_inlined, refuse_unsupported

_ATOMIC_ADD_BODY = """
define internal void @"{name}"(ptr %target, ptr %value) alwaysinline {{
entry:
  %v = load {ty}, ptr %value
  %old = atomicrmw fadd ptr %target, {ty} %v monotonic
  ret void
}}
"""


@dataclass(frozen=True)
class AdjointSharing:
    """Who else adds into the memory a thread adds adjoints into, at the same time (reverse mode)."""

    target: str = "cpu"
    """'cpu': a block's threads run one after another on one CPU thread; 'gpu': all at once."""
    one_dimensional: bool = False
    """One-dimensional grid and blocks: `cuda.grid(1)` is different for every thread."""
    serial: bool = False
    """One CPU thread runs every block: nobody else at all."""
    privatized: bool = False
    """Each CPU worker adds into its own copy of the shadows of the arrays the kernel only reads."""


@dataclass
class ThreadFunction:
    """The per-thread function of one mode, in its module, and its parameter layout."""

    module: core.Module
    function: core.Function
    """`i32 f(retptr, excinfo, args..., shared[, shadows..., shared shadow][, Active...])`."""
    kernel: CapturedCudaKernel
    mode: str
    """'primal', 'reverse' or 'forward'."""
    duplicated: tuple[int, ...] = ()
    """Argument positions with shadows, in the order of their shadow parameters."""
    active: tuple[int, ...] = ()
    """Argument positions of Active scalars (reverse: adjoint outputs; forward: tangents)."""
    shadowed_shared: bool = False
    """Whether the shared memory has a shadow parameter."""
    privatized: tuple[int, ...] = ()
    """Argument positions whose shadows are per CPU worker (AdjointSharing.privatized)."""

    @property
    def shared_parameters(self) -> tuple[int, ...]:
        """Positions of the shared-memory parameter and of its shadow."""
        shared = self.kernel.shared_parameter
        if not self.shadowed_shared:
            return (shared,)
        return (shared, len(self.kernel.captured.convention.parameter_types) + len(self.duplicated))


def thread_function(function, mode: str, types, kinds, distinct: bool,
                    sharing: AdjointSharing = AdjointSharing()) -> ThreadFunction:
    """Compile `function` (a kernel's Python function) for numba `types` and annotation `kinds`;
    reverse mode adds adjoints plainly where `sharing` says no other thread adds at once."""
    kernel = capture(function, types)
    convention = kernel.captured.convention
    module = to_ir(kernel.captured)
    refuse_unsupported(module, kernel.name)
    atomic_adds_as_calls(module, kernel.name)
    module = optimize(module, "pre_ad")
    check_primitives_inlined(module, convention.entry, kernel.name)
    primal = module.functions[convention.entry]
    if mode == "primal":
        return ThreadFunction(module, primal, kernel, mode)
    duplicated, active = (), ()
    for position, (spec, kind) in enumerate(zip(convention.arguments, kinds)):
        if issubclass(kind, Duplicated) and spec.is_array and spec.is_float:
            duplicated += (position,)
        elif issubclass(kind, (Active, Duplicated)) and not spec.is_array and spec.is_float:
            active += (position,)
        elif issubclass(kind, (Active, Duplicated)):
            raise DifferentiationError(f"argument {position} ({spec.name!r}) of {kernel.name!r} is "
                                       f"{spec.numba_type}: only float arrays and scalars have derivatives")
    shadowed_shared = kernel.has_float_shared_memory
    pointers = tuple(convention.arguments[p].data_parameter() for p in duplicated)
    pointer_types = tuple(float_type(convention.arguments[p].dtype) for p in duplicated)
    if shadowed_shared:
        element = next(a.element for a in kernel.shared_arrays if a.element in ("double", "float"))
        pointers += (kernel.shared_parameter,)
        pointer_types += (DOUBLE if element == "double" else FLOAT,)
    scalars = tuple(convention.arguments[p].first_parameter for p in active)
    written = written_parameters(primal)
    privatized = tuple(p for p in duplicated if convention.arguments[p].data_parameter() not in written) \
        if sharing.privatized and mode == "reverse" else ()
    try:
        if mode == "reverse":
            spec = ReverseSpec(duplicated=pointers, active=scalars, return_type=None,
                               duplicated_types=pointer_types, distinct_arguments=distinct, atomic_adjoints=True,
                               plain_adjoint_parameters=_added_alone(primal, kernel, sharing, privatized),
                               thread_tapes=True)
            derivative = build_reverse(module, primal, spec, "enzpy.cuda.reverse." + convention.entry)
        else:
            spec = ForwardSpec(duplicated=pointers, active=scalars, return_type=None,
                               duplicated_types=pointer_types)
            derivative = build_forward(module, primal, spec, "enzpy.cuda.forward." + convention.entry)
    except DifferentiationError as error:
        raise DifferentiationError(f"CUDA kernel {kernel.name!r}: {error}") from None
    return ThreadFunction(module, derivative, kernel, mode, duplicated, active, shadowed_shared, privatized)


def _added_alone(primal: core.Function, kernel: CapturedCudaKernel, sharing: AdjointSharing,
                 privatized: tuple[int, ...]) -> frozenset[int]:
    """The pointer parameters whose shadows no two threads add into at once (ReverseSpec)."""
    if sharing.serial:
        return frozenset(range(len(primal.arguments)))
    alone = {kernel.shared_parameter} if sharing.target == "cpu" else set()
    if sharing.one_dimensional:
        alone |= _read_at_global_index(primal)
    convention = kernel.captured.convention
    return frozenset(alone | {convention.arguments[p].data_parameter() for p in privatized})


def _read_at_global_index(function: core.Function) -> set[int]:
    """Pointer parameters every float load reads at `blockIdx.x * blockDim.x + threadIdx.x` (in a
    one-dimensional launch, a different element for every thread of the grid)."""
    roots: dict[int, bool] = {}
    for instruction in function.instructions():
        if not (isinstance(instruction, core.Load) and instruction.type.is_float):
            continue
        root = pointer_root(instruction.operands[0])
        if not isinstance(root, core.Argument):
            continue
        index = function.arguments.index(root)
        pointer = instruction.operands[0]
        private = isinstance(pointer, core.GetElementPtr) and pointer.operands[0] is root \
            and len(pointer.operands) == 2 and pointer.source_type == instruction.type \
            and _is_global_index(pointer.operands[1])
        roots[index] = roots.get(index, True) and private
    return {index for index, private in roots.items() if private}


def _is_global_index(value: core.Value) -> bool:
    """`ctaid.x * ntid.x + tid.x`, through the integer extensions numba and LLVM put around them."""
    value = _without_extensions(value)
    if not (isinstance(value, core.BinaryOperator) and value.opcode == "add"):
        return False
    for product, thread in (value.operands, value.operands[::-1]):
        product = _without_extensions(product)
        if _register(thread) == "tid.x" and isinstance(product, core.BinaryOperator) and product.opcode == "mul" \
                and sorted(_register(o) or "" for o in product.operands) == ["ctaid.x", "ntid.x"]:
            return True
    return False


def _without_extensions(value: core.Value) -> core.Value:
    while isinstance(value, core.Cast) and value.opcode in ("zext", "sext"):
        value = value.operands[0]
    return value


def _register(value: core.Value) -> str | None:
    value = _without_extensions(value)
    if isinstance(value, core.Call) and isinstance(value.callee, core.Function) \
            and value.callee.name.startswith("llvm.nvvm.read.ptx.sreg."):
        return value.callee.name[len("llvm.nvvm.read.ptx.sreg."):]
    return None


def keep_only_reachable(module: core.Module, root: core.Function) -> None:
    """Drop the definitions `root` does not reach (the primal, once its derivative exists)."""
    seen, stack = {root.name}, [root]
    while stack:
        current = stack.pop()
        for instruction in current.instructions():
            for value in [getattr(instruction, "callee", None), *instruction.operands]:
                if isinstance(value, core.Function) and value.name not in seen:
                    seen.add(value.name)
                    stack.append(value)
    for name in list(module.functions):
        if name not in seen and not module.functions[name].is_declaration:
            del module.functions[name]


def define_atomic_adds(module: core.Module) -> None:
    """The atomic-add calls get their bodies (after the AD, which needed them opaque)."""
    for float_type_, name in ATOMIC_ADD.items():
        declared = module.functions.get(name)
        if declared is not None and declared.is_declaration:
            body = parse_module(_ATOMIC_ADD_BODY.format(name=name, ty=str(float_type_))).functions[name]
            module.functions[name] = body
            for function in module.functions.values():
                for instruction in function.instructions():
                    if getattr(instruction, "callee", None) is declared:
                        instruction.callee = body
