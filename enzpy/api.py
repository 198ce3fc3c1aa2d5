"""The public API: `differentiate`, `Const`, `Active`, `Duplicated`, `DuplicatedNoNeed`.

    d = differentiate(kernel)
    value, grads = d.value_and_grad(x, y, n)
    d.autodiff(Duplicated(x, dx), Const(y), Active(alpha), seed=1.0)

A gradient is compiled once per (argument types, activities) and cached,
like numba's dispatch. Arguments are never copied: arrays the kernel mutates
are mutated exactly as a plain call would mutate them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .ad.reverse import ReverseSpec, build_reverse
from .driver import optimize, to_ir
from .errors import DifferentiationError
from .frontend.numba import as_dispatcher, capture, recapture_with_debug_info
from .ir import write_module
from .ir.types import FloatType
from .jit import CompiledModule, NumbaEntryPoint, array_parameters, check_array, scalar_parameter


@dataclass(frozen=True)
class Const:
    """An argument without derivative."""

    value: object
    """The argument."""


@dataclass(frozen=True)
class Active:
    """A float scalar whose derivative `autodiff` returns."""

    value: float
    """The argument."""


@dataclass(frozen=True)
class Duplicated:
    """An array with a shadow: derivatives are accumulated (+=) into `shadow`.

    For an array the kernel writes, `shadow` holds on entry the adjoint of its
    final contents and is consumed, as in Enzyme.
    """

    value: np.ndarray
    """The argument."""
    shadow: np.ndarray
    """Same shape and dtype as `value`."""


@dataclass(frozen=True)
class DuplicatedNoNeed(Duplicated):
    """Like Duplicated; the primal result may be skipped."""


@dataclass
class _Gradient:
    """One compiled gradient and the parameter layout it expects."""

    entry: NumbaEntryPoint
    duplicated: tuple[int, ...]
    active: tuple[int, ...]
    seeded: bool
    module_text: str


class Differentiable:
    """A kernel with derivatives; calling it runs the primal through numba."""

    def __init__(self, function, optimize: bool = True):
        self.dispatcher = as_dispatcher(function)
        self.optimize = optimize
        self._gradients: dict[tuple, _Gradient] = {}
        self.__name__ = getattr(self.dispatcher, "__name__", "kernel")
        self.__doc__ = getattr(self.dispatcher, "__doc__", None)

    def __call__(self, *args):
        return self.dispatcher(*args)

    # -- user-facing derivatives

    def value_and_grad(self, *args):
        """(value, grads): grads[i] is d value / d args[i] on entry (None for non-floats)."""
        annotated = [self._default_annotation(a) for a in args]
        value, active = self._reverse(annotated, seed=1.0)
        grads, active_iter = [], iter(active)
        for annotation in annotated:
            if isinstance(annotation, Duplicated):
                grads.append(annotation.shadow)
            elif isinstance(annotation, Active):
                grads.append(next(active_iter))
            else:
                grads.append(None)
        return value, tuple(grads)

    def grad(self, *args):
        return self.value_and_grad(*args)[1]

    def autodiff(self, *annotated_args, mode: str = "reverse", seed: float = 1.0):
        """Enzyme-style call; returns the derivatives of the Active arguments, in order."""
        if mode != "reverse":
            raise NotImplementedError(f"mode {mode!r} is not implemented yet (only 'reverse')")
        annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in annotated_args]
        _, active = self._reverse(annotated, seed=seed)
        return tuple(active)

    # -- machinery

    @staticmethod
    def _default_annotation(value):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            return Duplicated(value, shadow_like(value))
        if isinstance(value, (float, np.floating)):
            return Active(value)
        return Const(value)

    def _reverse(self, annotated, seed):
        primal_args = tuple(a.value for a in annotated)
        types = tuple(self.dispatcher.typeof_pyval(a) for a in primal_args)
        kinds = tuple(type(a).__name__ for a in annotated)
        key = (types, kinds)
        gradient = self._gradients.get(key)
        if gradient is None:
            gradient = self._compile(primal_args, annotated)
            self._gradients[key] = gradient
        convention = gradient.entry.convention
        parameters, active_outputs = [], []
        for spec, annotation in zip(convention.arguments, annotated):
            if spec.is_array:
                parameters.extend(array_parameters(spec, annotation.value))
            else:
                parameters.append(scalar_parameter(spec, annotation.value))
        copied_back = []
        for index, annotation in enumerate(annotated):
            if isinstance(annotation, Duplicated):
                spec = convention.arguments[index]
                shadow = annotation.shadow
                if not isinstance(shadow, np.ndarray) or shadow.shape != annotation.value.shape \
                        or shadow.dtype != annotation.value.dtype:
                    raise ValueError(f"shadow of argument {index} ({spec.name!r}) must be a "
                                     f"{annotation.value.dtype} array of shape {annotation.value.shape}, got "
                                     f"{getattr(shadow, 'dtype', type(shadow).__name__)} "
                                     f"{getattr(shadow, 'shape', '')}")
                if shadow.strides != annotation.value.strides:
                    # The kernel walks the shadow with the argument's strides: use a
                    # same-strided copy and write the result back after the call.
                    laid_out = shadow_like(annotation.value)
                    laid_out[...] = shadow
                    copied_back.append((shadow, laid_out))
                    shadow = laid_out
                check_array(spec, shadow, role="shadow of argument")
                parameters.append(shadow.ctypes.data)
        for index, annotation in enumerate(annotated):
            if isinstance(annotation, Active):
                output = np.zeros(1, dtype=convention.arguments[index].dtype)
                active_outputs.append(output)
                parameters.append(output.ctypes.data)
        if gradient.seeded:
            parameters.append(float(seed))
        value = gradient.entry.call_raw(parameters)
        for shadow, laid_out in copied_back:
            shadow[...] = laid_out
        return value, [output[0].item() for output in active_outputs]

    def _compile(self, primal_args, annotated) -> _Gradient:
        captured = capture(self.dispatcher, args=primal_args)
        kinds = tuple(type(a) for a in annotated)
        try:
            module, gradient_function, spec = self.gradient_module(captured, kinds)
        except DifferentiationError as error:
            raise DifferentiationError(f"{error}; in kernel {self._where()}") from None
        text = write_module(module)
        compiled = CompiledModule(text, pipeline="post_ad")
        parameter_types = tuple(str(t) for t in gradient_function.function_type.params)
        gradient_convention = dataclasses.replace(captured.convention, entry=gradient_function.name,
                                                  parameter_types=parameter_types)
        duplicated = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, Duplicated))
        active = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, Active))
        return _Gradient(NumbaEntryPoint(compiled, gradient_convention), duplicated, active,
                         spec.return_type is not None, text)

    def _where(self) -> str:
        """`module.function (file.py:line of def)`: the IR names only the mangled symbol."""
        function = getattr(self.dispatcher, "py_func", None)
        code = getattr(function, "__code__", None)
        if code is None:
            return repr(self.__name__)
        return f"'{function.__module__}.{function.__qualname__}' ({code.co_filename}:{code.co_firstlineno})"

    def gradient_module(self, captured, kinds: tuple[type, ...]):
        """(module with the gradient added, the gradient function, its ReverseSpec) for annotation kinds.

        A DifferentiationError is raised again from a copy of the kernel
        compiled with debug info, so that it names the Python source line.
        """
        try:
            return self._gradient_module(captured, kinds)
        except DifferentiationError as error:
            raise with_source_location(error, lambda: self._gradient_module(
                recapture_with_debug_info(captured), kinds)) from None

    def _gradient_module(self, captured, kinds: tuple[type, ...]):
        convention = captured.convention
        for argument, kind in zip(convention.arguments, kinds):
            if issubclass(kind, Duplicated) and not (argument.is_array and argument.is_float):
                raise DifferentiationError(f"argument {argument.position} ({argument.name!r}): Duplicated needs "
                                           f"a float array, got {argument.numba_type}")
            if issubclass(kind, Active) and (argument.is_array or not argument.is_float):
                raise DifferentiationError(f"argument {argument.position} ({argument.name!r}): Active needs a "
                                           f"float scalar, got {argument.numba_type}")
        module = optimize(to_ir(captured), "pre_ad" if self.optimize else "none")
        duplicated = [convention.arguments[i] for i, kind in enumerate(kinds) if issubclass(kind, Duplicated)]
        active = [convention.arguments[i] for i, kind in enumerate(kinds) if issubclass(kind, Active)]
        return_type = None
        if convention.returns_value and np.dtype(str(convention.return_type)).kind == "f":
            return_type = FloatType("float" if str(convention.return_type) == "float32" else "double")
        spec = ReverseSpec(
            duplicated=tuple(a.data_parameter() for a in duplicated),
            active=tuple(a.first_parameter for a in active),
            return_type=return_type,
            duplicated_types=tuple(FloatType("float" if a.dtype == np.float32 else "double") for a in duplicated))
        gradient = build_reverse(module, module.functions[convention.entry], spec,
                                 "enzpy.reverse." + convention.entry)
        return module, gradient, spec


def with_source_location(error: DifferentiationError, build_with_debug_info) -> DifferentiationError:
    """`error`, or the same error from `build_with_debug_info()` if that one names a source line."""
    if "Python source" in str(error):
        return error
    try:
        build_with_debug_info()
    except DifferentiationError as located:
        if "Python source" in str(located):
            return located
    except Exception:            # debug info is a nicety: never let it hide the real error
        pass
    return error


def default_kinds(convention) -> tuple[type, ...]:
    """What `value_and_grad` differentiates: float arrays Duplicated, float scalars Active."""
    return tuple((Duplicated if a.is_array else Active) if a.is_float else Const for a in convention.arguments)


def shadow_like(array: np.ndarray) -> np.ndarray:
    """A zeroed array with the shape, dtype *and strides* of `array` (views included)."""
    if array.size == 0:
        return np.zeros_like(array)
    extents = [(n - 1) * s for n, s in zip(array.shape, array.strides)]
    low = sum(e for e in extents if e < 0)
    high = sum(e for e in extents if e > 0) + array.itemsize
    buffer = np.zeros(high - low, dtype=np.uint8)
    return np.ndarray(array.shape, array.dtype, buffer=buffer, offset=-low, strides=array.strides)


def differentiate(function=None, *, optimize: bool = True):
    """`differentiate(f)`, `@differentiate` or `@differentiate(optimize=False)`."""
    if function is None:
        return lambda f: Differentiable(f, optimize=optimize)
    return Differentiable(function, optimize=optimize)
