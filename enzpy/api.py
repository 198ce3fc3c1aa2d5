"""The public API: `differentiate`, `Const`, `Active`, `Duplicated`, `DuplicatedNoNeed`.

    d = differentiate(kernel)
    value, grads = d.value_and_grad(x, y, n)                    # reverse mode
    value, pullback = d.vjp(x, y, n)                            # any result: arrays, tuples
    grads = pullback(cotangent)
    d.autodiff(Duplicated(x, dx), Const(y), Active(alpha), seed=1.0)
    value, tangent = d.jvp((x, y, n), (tx, None, None))         # forward mode
    value, tangents = d.jvp((x, y, n), (tx8, None, None), width=8)
    d.autodiff(Duplicated(x, tx), Const(y), mode="forward")    # tangent of the result
    J = d.jacobian(x, y, n)

A derivative is compiled once per (mode, argument types, activities, width)
and cached, like numba's dispatch. Arguments are never copied: arrays the
kernel mutates are mutated exactly as a plain call would mutate them
(`jacobian` excepted: it works on copies).
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import re
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
from numba.core import types as numba_types

from . import disk_cache, fast_calls, results
from .annotations import Active, Const, Duplicated, DuplicatedNoNeed  # noqa: F401 (re-exported)
from .aliasing import arrays_are_distinct, overlap_alike, shadow_like, shadows_like
from .arguments import (annotated_arrays, copy_back, default_annotation, default_annotations,  # noqa: F401
                        default_kinds, float_return_type, float_type, gradients_of, primal_parameters,
                        lane_shadows, shadow_address)
from .messages import for_user
from .selection import differentiated_positions, selected
from .ad.forward import ForwardSpec, build_forward
from .ad.reverse import ReverseSpec, build_reverse
from .mpi import mpi_routines_in
from .mpi.ranks import on_every_rank, replicated_result
from .parallel import run_derivatives_in_parallel
from .checkpointing.outline import outline_checkpointed_loops, remove_markers
from .checkpointing.generated import run_checkpointed_loops
from .collector import scanning_new_objects_only
from .driver import optimize, optimized_ir, to_ir
from .errors import DifferentiationError
from .explain import explain as explain_call
from .higher_order import hessian as hessian_of, hvp as hvp_of
from .jacobian import jacobian as jacobian_of
from .frontend.numba import as_dispatcher, capture, compiled_or_lowered, recapture_with_debug_info
from .ir import write_module
from .analysis.writes import written_parameters
from .jit import CompiledModule, NumbaEntryPoint, post_ad_pipeline


@dataclass
class _Gradient:
    """One compiled gradient and the parameter layout it expects."""

    entry: NumbaEntryPoint
    duplicated: tuple[int, ...]
    active: tuple[int, ...]
    seeded: bool
    module_text: str


@dataclass
class _Tangent:
    """One compiled tangent function (forward mode, `width` directions) and its layout."""

    entry: NumbaEntryPoint
    width: int
    returns_tangent: bool
    module_text: str


_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""dispatcher -> options -> the compiled-derivative caches of `Differentiable` (kept while the dispatcher lives)."""


class Differentiable:
    """A kernel with derivatives; calling it runs the primal through numba.

    Made by `differentiate`. Its methods give the derivatives JAX-style (`value_and_grad`,
    `grad`, `vjp`, `jvp`, `jacobian`, `hvp`, `hessian`) or Enzyme-style (`autodiff`, on
    annotated arguments); `explain` says what reverse mode does.

    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, differentiate
    >>> from enzpy.api import Differentiable
    >>> @differentiate
    ... def weighted(x, w):
    ...     return w * np.sum(x * x)
    >>> isinstance(weighted, Differentiable)
    True
    >>> x = np.array([1.0, 2.0])
    >>> weighted(x, 0.5)                     # the primal, through numba
    2.5
    >>> weighted.grad(x, 0.5)                # JAX-style
    (array([1., 2.]), 5.0)
    >>> dx = np.zeros(2)
    >>> weighted.autodiff(Duplicated(x, dx), Active(0.5)), dx      # Enzyme-style
    ((5.0,), array([1., 2.]))
    """

    def __init__(self, function, optimize: bool = True, cache_minimization: bool = True,
                 loose_types: bool = False, cache: bool = False):
        self.dispatcher = as_dispatcher(function)
        self.optimize = optimize
        self.cache_minimization = cache_minimization
        self.loose_types = loose_types
        self.cache = cache
        """Keep compiled derivatives on disk (`disk_cache`), for later processes."""
        self._identity: str | None | bool = False      # the kernel's disk-cache identity, once computed
        # Compiled derivatives are shared by every Differentiable of this dispatcher with
        # these options: a fresh `differentiate(f)` of the same f compiles nothing again.
        caches = _compiled.setdefault(self.dispatcher, {}).setdefault(
            (optimize, cache_minimization, loose_types), ({}, {}, {}, {}, {}, {}))
        self._gradients: dict[tuple, _Gradient] = caches[0]
        self._tangents: dict[tuple, _Tangent] = caches[1]
        self._written: dict[tuple, frozenset[int]] = caches[2]
        self._result_types: dict[tuple, object] = caches[3]
        self._output_forms: dict[tuple, Differentiable] = caches[4]
        self._fast_gradients: dict[tuple, object] = caches[5]
        """`fast_calls.call_key` -> its trampoline, or how many calls went the general way so far."""
        self.__name__ = getattr(self.dispatcher, "__name__", "kernel")
        self.__doc__ = getattr(self.dispatcher, "__doc__", None)

    def __call__(self, *args):
        return self.dispatcher(*args)

    # -- user-facing derivatives

    def value_and_grad(self, *args, wrt=None):
        """(value, grads): grads[i] is d value / d args[i] on entry (None for arguments without
        derivatives: integers are constants). `wrt=i` or `wrt=(i, j)`: only those (`selection`).

        The kernel must return a float. Float arrays get an array gradient of their shape,
        float scalars a float; the kernel runs once, mutating its arguments as a plain call does.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def energy(x, alpha, n):
        ...     s = 0.0
        ...     for i in range(n):
        ...         s += alpha * x[i] * x[i]
        ...     return s
        >>> x = np.array([1.0, 2.0])
        >>> value, (dx, dalpha, dn) = energy.value_and_grad(x, 0.5, 2)
        >>> value, dx, dalpha, dn
        (2.5, array([1., 2.]), 5.0, None)
        >>> energy.value_and_grad(x, 0.5, 2, wrt=1)
        (2.5, 5.0)
        """
        fast_key = fast_calls.call_key(args, wrt)
        if fast_key is not None:
            fast = self._fast_gradients.get(fast_key)
            if type(fast) is fast_calls.FastGradient:
                result = fast_calls.value_and_grad(fast, args)
                if result is not None:
                    return result if wrt is None else (result[0], selected(result[1], wrt))
        return_type = self._result_type(args)
        if isinstance(return_type, (numba_types.NoneType, numba_types.Integer, numba_types.Boolean)):
            # Zeros would be a meaningless answer: an integer or no result has no gradient.
            returns = "nothing" if isinstance(return_type, numba_types.NoneType) else f"{return_type}"
            raise DifferentiationError(
                f"value_and_grad needs a kernel that returns a float; {self.__name__!r} returns {returns}. "
                "For what it writes into its arrays use autodiff with Duplicated shadows (the shadow "
                "holds the adjoint of the written values), or jvp / jacobian")
        annotated = default_annotations(args, differentiated_positions(self, args, wrt))
        value, active = self._reverse(annotated, seed=1.0)
        if fast_key is not None and isinstance(return_type, numba_types.Float):
            self._count_general_call(fast_key, args, wrt)
        return value, selected(gradients_of(annotated, active), wrt)

    def _count_general_call(self, fast_key, args, wrt) -> None:
        """From the third general call with these argument types on, calls take the compiled
        trampoline (`fast_calls`): its numba compile (~0.1 s) pays off only for repeated calls."""
        calls = self._fast_gradients.get(fast_key, 0)
        if not isinstance(calls, int):
            return                        # None: the fast path does not apply to this kernel
        if calls < 2:
            self._fast_gradients[fast_key] = calls + 1
            return
        try:
            self._fast_gradients[fast_key] = fast_calls.build(self, args, wrt)
        except Exception:                 # the general path stays correct; only slower
            self._fast_gradients[fast_key] = None

    def grad(self, *args, wrt=None):
        """The gradients of `value_and_grad` without the value.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def energy(x, alpha, n):
        ...     s = 0.0
        ...     for i in range(n):
        ...         s += alpha * x[i] * x[i]
        ...     return s
        >>> energy.grad(np.array([1.0, 2.0]), 0.5, 2)
        (array([1., 2.]), 5.0, None)
        >>> energy.grad(np.array([1.0, 2.0]), 0.5, 2, wrt=(0, 1))
        (array([1., 2.]), 5.0)
        """
        return self.value_and_grad(*args, wrt=wrt)[1]

    def vjp(self, *args, wrt=None):
        """(value, pullback), as JAX's `vjp`: `value` is what the kernel returns at `args` (a
        float, an array, or a tuple of them) and `pullback(cotangent)`, with a cotangent of the
        same structure (None for a leaf: zero), returns the gradients aligned with `args`: an
        array for a float array, a float for a float scalar, None for the other arguments
        (or, with `wrt=i` / `wrt=(i, j)`, only those: `selection`).

        The kernel runs once on `args`, mutating them as a plain call does; the pullback keeps
        copies of the arguments as they were and can be called any number of times.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def scaled(x, a):
        ...     return a * x, np.sum(x * x)
        >>> value, pullback = scaled.vjp(np.array([1.0, 2.0]), 3.0)
        >>> value
        (array([3., 6.]), 5.0)
        >>> pullback((np.ones(2), 0.0))        # the cotangent of (a * x, sum(x * x))
        (array([3., 3.]), 3.0)
        >>> pullback((None, 1.0))
        (array([2., 4.]), 0.0)
        """
        positions = differentiated_positions(self, args, wrt)
        return_type = self._result_type(args)
        if results.is_structured(return_type):
            value, pullback = results.vjp(self, args, results.result_layout(return_type, self.__name__), positions)
            return value, lambda cotangent: selected(pullback(cotangent), wrt)
        if not isinstance(return_type, numba_types.Float):
            raise DifferentiationError(f"vjp needs a kernel with a result; {self.__name__!r} returns "
                                       f"{return_type} (use autodiff with Duplicated shadows for arrays it "
                                       "writes)")
        saved = results.copy_arguments(args)
        value = self.dispatcher(*args)

        def pullback(cotangent):
            if np.ndim(cotangent) != 0 or not np.isrealobj(cotangent):
                raise ValueError(f"the cotangent of the result must be a real number, got {cotangent!r}")
            annotated = default_annotations(results.copy_arguments(saved), positions)
            _, active = self._reverse(annotated, seed=float(cotangent))
            return selected(gradients_of(annotated, active), wrt)

        return value, pullback

    def autodiff(self, *annotated_args, mode: str = "reverse", seed=1.0, width: int | None = None):
        """Enzyme-style call.

        mode="reverse": returns the derivatives of the Active arguments, in
        order; Duplicated shadows accumulate adjoints (`seed` scales the result's).
        With `width=k` (vector reverse mode, kernels returning a float or nothing)
        k cotangents go through one forward and one reverse sweep: each
        Duplicated shadow has a leading axis of k (lane j's shadow is shadow[j]),
        `seed` is k numbers (one per lane), and each Active derivative is an
        array of k.
        For a kernel that returns an array or a tuple, `seed` is the adjoint of
        the result: an array of its shape, or a tuple of the result's structure
        (None for a scalar leaf: 0).
        mode="forward": returns the tangent of the float return value (of the
        structure of the result for arrays and tuples; None when the kernel
        returns none). Duplicated(x, dx) gives x the tangent
        dx (arrays and float scalars); for an array the kernel writes, dx
        receives the tangent of what is written. Active(x) gets tangent 1.0;
        Const has none. `seed` is not used.

        Plain values are Const. See the "Activity annotations" page of the
        API reference for the annotations at length.

        >>> import numpy as np
        >>> from enzpy import Active, Const, Duplicated, differentiate
        >>> @differentiate
        ... def weighted(x, w, scale):
        ...     s = 0.0
        ...     for i in range(x.shape[0]):
        ...         s += w[i] * x[i] * x[i]
        ...     return scale * s
        >>> x, w, dx = np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.zeros(2)
        >>> weighted.autodiff(Duplicated(x, dx), Const(w), Active(0.5))
        (19.0,)
        >>> dx                                 # added into: zero it before the next call
        array([3., 8.])
        >>> weighted.autodiff(Duplicated(x, np.array([1.0, 0.0])), w, Const(0.5), mode="forward")
        3.0
        >>> lanes = np.zeros((2, 2))           # width=2: two cotangents (seeds 1 and 2) in one sweep
        >>> weighted.autodiff(Duplicated(x, lanes), Const(w), Active(0.5), seed=[1.0, 2.0], width=2)
        (array([19., 38.]),)
        >>> lanes
        array([[ 3.,  8.],
               [ 6., 16.]])
        """
        annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in annotated_args]
        self._check_shadows_are_separate(annotated)
        if mode == "forward":
            return self._autodiff_forward(annotated)
        if mode != "reverse":
            raise ValueError(f"mode must be 'reverse' or 'forward', not {mode!r}")
        if width is not None:
            return self._vector_reverse(annotated, seed, width)
        if isinstance(seed, (np.ndarray, tuple, list)):
            return_type = self._result_type([a.value for a in annotated])
            if not results.is_structured(return_type):
                raise ValueError(f"seed must be a number: kernel {self.__name__!r} returns {return_type}")
            layout = results.result_layout(return_type, self.__name__)
            leaf_seeds, shapes = results.shapes_from_seed(layout, seed)
            active, _ = results.reverse_call_keeping_arguments(self, layout, annotated, leaf_seeds, shapes)
            return tuple(active)
        _, active = self._reverse(annotated, seed=seed)
        return tuple(active)

    def jvp(self, args, tangents, width: int | None = None):
        """Forward mode: (value, tangent) of the kernel at `args` along `tangents`.

        `tangents` is aligned with `args`: an array of the argument's shape for
        a float array, a float for a float scalar, None for no tangent (and for
        every other argument). With `width=k` each tangent gets a leading axis
        of length k and all k directions go through one sweep.

        `tangent` is the tangent of the return value when the kernel returns a
        float (a float, or k floats with `width`); otherwise a tuple aligned
        with `args` holding the tangent of each float array's final contents
        (leading axis k with `width`), None for other arguments. The kernel runs
        once on `args`, mutating them as a plain call does; `tangents` are
        not modified.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def f(x, a):
        ...     return a * np.sum(x * x)
        >>> f.jvp((np.array([1.0, 2.0]), 3.0), (np.array([1.0, 0.0]), 0.0))
        (15.0, 6.0)
        >>> value, tangents = f.jvp((np.array([1.0, 2.0]), 3.0), (np.eye(2), np.zeros(2)), width=2)
        >>> tangents
        array([ 6., 12.])
        """
        args, tangents = tuple(args), tuple(tangents)
        if len(tangents) != len(args):
            raise ValueError(f"jvp needs one tangent per argument ({len(args)}), got {len(tangents)}")
        if width is not None and (int(width) != width or width < 1):
            raise ValueError(f"width must be a positive integer, got {width!r}")
        lanes = 1 if width is None else int(width)
        kinds, lane_tangents = [], []
        buffers = self._tangent_buffers(args, lanes)
        for index, (value, tangent) in enumerate(zip(args, tangents)):
            kind, lane_values = self._tangent_lanes(index, value, tangent, width, buffers.get(index))
            kinds.append(kind)
            lane_tangents.append(lane_values)
        self._check_shared_tangents(args, tangents, buffers, width)
        return_type = self._result_type(args)
        if results.is_structured(return_type):
            layout = results.result_layout(return_type, self.__name__)
            shapes = results.leaf_shapes(layout, self.dispatcher(*results.copy_arguments(args)))
            value, output_lanes = results.forward_call(self, layout, args, kinds, lane_tangents, lanes, shapes)
            return value, results.tangent_value(layout, output_lanes, width)
        value, return_tangents = self._forward(args, tuple(kinds), lane_tangents, lanes)
        if return_tangents is not None:
            return value, (return_tangents[0].item() if width is None else return_tangents)
        outputs = tuple(None if kind is not Duplicated else lane_values[0] if width is None else np.stack(lane_values)
                        for kind, lane_values in zip(kinds, lane_tangents))
        return value, outputs

    def jacobian(self, *args, wrt=None, mode: str = "auto", width: int = 8):
        """The Jacobian at `args` as a 2-D float64 array, rows outputs, columns inputs.

        Inputs are the arguments at positions `wrt` (default: every float
        argument), flattened in C order and concatenated in argument order (a
        scalar is one column). Outputs are the return value when the kernel
        returns a float (one row: the gradient); otherwise every float array
        the kernel writes, flattened and concatenated likewise, as functions
        of the inputs' values on entry. mode="auto" uses forward mode, `width`
        columns per sweep, when there are fewer inputs than outputs, and
        reverse mode, `width` rows per sweep (vector reverse mode; one row per
        sweep where it does not apply), otherwise ("forward" / "reverse"
        force one). The arguments are not modified (the kernel runs on copies).

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def square(x):
        ...     return x * x
        >>> square.jacobian(np.array([1.0, 2.0]))
        array([[2., 0.],
               [0., 4.]])
        """
        return jacobian_of(self, args, wrt=wrt, mode=mode, width=width)

    def hvp(self, args, direction, wrt=None):
        """H v at `args` along `direction` (both aligned with the arguments; `wrt`: only those
        rows): `higher_order.hvp`.

        The kernel must return a float; every float array and float scalar is an input. The
        result is aligned with `args`: an array for a float array, a float for a float scalar,
        None for the rest (a direction entry of None is zero). The arguments are not modified.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def cubic(x, a):
        ...     return a * np.sum(x ** 3)
        >>> cubic.hvp((np.array([1.0, 2.0]), 1.0), (np.array([1.0, 0.0]), 0.0))
        (array([6., 0.]), 3.0)
        """
        return selected(hvp_of(self, args, direction), wrt)

    def hessian(self, *args, wrt=None):
        """The Hessian at `args` (float inputs flattened as `jacobian`'s; `wrt`: only those
        arguments, as rows and columns): `higher_order.hessian`.

        One `hvp` per column, so symmetric up to rounding.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def cubic(x, a):
        ...     return a * np.sum(x ** 3)
        >>> cubic.hessian(np.array([1.0, 2.0]), 1.0)
        array([[ 6.,  0.,  3.],
               [ 0., 12., 12.],
               [ 3., 12.,  0.]])
        >>> cubic.hessian(np.array([1.0, 2.0]), 1.0, wrt=0)
        array([[ 6.,  0.],
               [ 0., 12.]])
        """
        return hessian_of(self, args, differentiated_positions(self, args, wrt))

    # -- machinery

    def _type_key(self, value):
        """What decides the numba type of an argument, for the compiled-derivative caches.

        An array's numba type is its dtype, ndim, layout, writeability and
        alignment; reading those is ~10x cheaper than numba's `typeof`, which
        dominated the Python cost of a small call.
        """
        if type(value) is np.ndarray:
            flags = value.flags
            return (value.dtype, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable,
                    flags.aligned)
        return self.dispatcher.typeof_pyval(value)

    def _result_type(self, args):
        """numba's type of the kernel's result for these arguments (compiling the primal once)."""
        key = tuple(self._type_key(a) for a in args)
        return_type = self._result_types.get(key)
        if return_type is None:
            types = tuple(self.dispatcher.typeof_pyval(a) for a in args)
            # With cache=True the result type is on disk too: a loaded derivative needs no primal.
            disk_key = self._disk_key("result type", args, types, (), None)
            return_type = disk_cache.load_value(disk_key) if disk_key else None
            if return_type is None:
                # Lowered only (frontend.numba.lowered) unless the dispatcher compiled it already:
                # the derivative's compile reuses it, and nothing needs the primal's machine code.
                with scanning_new_objects_only():
                    return_type = compiled_or_lowered(self.dispatcher, types).signature.return_type
                if disk_key:
                    disk_cache.store_value(disk_key, return_type)
            self._result_types[key] = return_type
        return return_type

    _default_annotation = staticmethod(default_annotation)

    def _gradient_for(self, annotated, distinct: bool, width: int = 1) -> _Gradient:
        """The compiled gradient for these argument types and annotations (compiled once)."""
        primal_args = tuple(a.value for a in annotated)
        types = tuple(self._type_key(a) for a in primal_args)
        kinds = tuple(type(a).__name__ for a in annotated)
        key = (types, kinds, distinct) if width == 1 else (types, kinds, distinct, width)
        gradient = self._gradients.get(key)
        if gradient is None:
            gradient = self._compile(primal_args, tuple(type(a) for a in annotated), distinct, width=width)
            self._gradients[key] = gradient
        return gradient

    def _reverse(self, annotated, seed, distinct: bool | None = None):
        gradient, parameters, copied_back, active_outputs = self.bound_reverse(annotated, seed, distinct)
        value = gradient.entry.call_raw(parameters)
        copy_back(copied_back)
        return value, [output[0].item() for output in active_outputs]

    def _vector_reverse(self, annotated, seed, width) -> tuple:
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        width = int(width)
        return_type = self._result_type([a.value for a in annotated])
        if results.is_structured(return_type):
            raise ValueError(f"width applies to kernels returning a float or nothing; {self.__name__!r} "
                             f"returns {return_type} (give it output arrays as Duplicated arguments)")
        seeds = np.broadcast_to(np.asarray(seed, dtype=np.float64), (width,))
        gradient, parameters, copied_back, active_outputs = self.bound_reverse(annotated, seeds, width=width)
        gradient.entry.call_raw(parameters)
        copy_back(copied_back)
        return tuple(output.copy() for output in active_outputs)

    def bound_reverse(self, annotated, seed, distinct: bool | None = None, width: int = 1):
        """(compiled gradient, its exploded parameters, shadows copied back after the call, the
        Active outputs) for one reverse call; `enzpy.prepared` keeps them to call again."""
        given = annotated
        annotated = self._with_scratch_shadows(annotated)
        primal_args = tuple(a.value for a in annotated)
        # Arrays that share memory get a gradient that never assumes one is unchanged by writes to another.
        if distinct is None:
            distinct = arrays_are_distinct(annotated_arrays(annotated))
        if not distinct and width == 1:
            self._check_aliased_shadows(annotated)
        gradient = self._gradient_for(annotated, distinct, width)
        convention = gradient.entry.convention
        parameters = primal_parameters(convention, primal_args)
        copied_back, active_outputs = [], []
        for index, annotation in enumerate(annotated):
            if isinstance(annotation, Duplicated):
                parameters.extend(shadow_address(convention.arguments[index], annotation.value, lane_shadow,
                                                 copied_back, role=role)
                                  for lane_shadow, role in lane_shadows(annotation, width, convention.arguments[index]))
        for index, annotation in enumerate(annotated):
            if isinstance(annotation, Active):
                output = np.zeros(width, dtype=convention.arguments[index].dtype)
                active_outputs.append(output)
                parameters.append(output.ctypes.data)
        if gradient.seeded:
            parameters.extend([float(seed)] if width == 1 else [float(lane) for lane in seed])
        # The scratch shadows live as long as the call's other buffers; a pair of one array marks
        # them (copy_back skips them, enzpy.prepared zeroes them before each call).
        copied_back += [(a.shadow, a.shadow) for a, b in zip(annotated, given) if a is not b]
        return gradient, parameters, copied_back, active_outputs

    def _with_scratch_shadows(self, annotated) -> list:
        """A prange kernel's Const float arrays as Duplicated with a zero shadow nobody reads.

        A prange loop's derivative gets all of the loop's arrays through one shadowed array of
        pointers (parallel/launches.py), so it cannot tell a Const array from the others: each
        needs a shadow it may add into."""
        scratch = self._scratch_shadow_positions([a.value for a in annotated], [type(a) for a in annotated])
        return [Duplicated(a.value, shadow_like(a.value)) if i in scratch else a for i, a in enumerate(annotated)]

    def _scratch_shadow_positions(self, values, kinds) -> set[int]:
        """Positions of the Const float arrays that get a scratch shadow (a prange kernel's)."""
        if not getattr(self.dispatcher, "targetoptions", {}).get("parallel"):
            return set()
        return {i for i, (value, kind) in enumerate(zip(values, kinds))
                if kind is Const and isinstance(value, np.ndarray) and value.dtype.kind == "f"}

    def _check_shadows_are_separate(self, annotated) -> None:
        """A shadow that shares memory with its own array would have the derivative overwrite the input."""
        for i, annotation in enumerate(annotated):
            if isinstance(annotation, Duplicated) and isinstance(annotation.value, np.ndarray) \
                    and isinstance(annotation.shadow, np.ndarray) \
                    and np.may_share_memory(annotation.value, annotation.shadow):
                raise ValueError(f"argument {i} ({self._argument_name(i)!r}): the shadow shares memory with "
                                 "the array itself; pass a separate array (np.zeros_like(x)) as the shadow")

    def _check_aliased_shadows(self, annotated) -> None:
        """Overlapping Duplicated arrays need shadows that overlap the same way (`aliasing`)."""
        duplicated = [(i, a) for i, a in enumerate(annotated) if isinstance(a, Duplicated)]
        for position, (i, first) in enumerate(duplicated):
            for j, second in duplicated[position + 1:]:
                if not np.may_share_memory(first.value, second.value):
                    continue
                if not overlap_alike((first.value, second.value), (first.shadow, second.shadow)):
                    raise DifferentiationError(
                        f"arguments {i} ({self._argument_name(i)!r}) and {j} ({self._argument_name(j)!r}) share "
                        "memory, and their shadows do not overlap as they do: pass views of one shadow array "
                        "taken as the arrays were (enzpy.aliasing.shadows_like([a, b]) makes them), or "
                        "separate copies of the arrays")

    def explain(self, *args):
        """What reverse mode does for these arguments (plain or annotated): see `enzpy.explain`.

        Returns an `enzpy.explain.ExplainReport`; printed, it gives the counts of active
        instructions and of the values the reverse sweep recomputes, re-loads or caches, the
        tape bytes for these arguments (the gradient runs once, on copies), and the cached
        values, prange loops and checkpointed loops.

        >>> import numpy as np
        >>> from enzpy import differentiate
        >>> @differentiate
        ... def f(x, a):
        ...     return a * np.sum(x * x)
        >>> report = f.explain(np.array([1.0, 2.0]), 3.0)
        >>> print(report)  # doctest: +ELLIPSIS
        reverse mode for f(Duplicated, Active)
          instructions: ... active, ... inactive, ... with shadows
          reverse sweep needs: ... recomputed, ... re-loaded, ... in stack slots, ... cached on the tape
          tape for these arguments: ...
        """
        return explain_call(self, *args)

    def _autodiff_forward(self, annotated):
        kinds, lane_tangents = [], []
        for annotation in annotated:
            if isinstance(annotation, Duplicated) and isinstance(annotation.value, np.ndarray):
                kinds.append(Duplicated)
                lane_tangents.append([annotation.shadow])
            elif isinstance(annotation, (Active, Duplicated)):
                tangent = annotation.shadow if isinstance(annotation, Duplicated) else 1.0
                if isinstance(tangent, np.ndarray) and tangent.ndim == 0:
                    tangent = tangent[()]
                if not isinstance(tangent, (int, float, np.integer, np.floating)):
                    name = self._argument_name(len(kinds))
                    raise TypeError(f"tangent of argument {len(kinds)} ({name!r}) must be a float, "
                                    f"got {type(tangent).__name__}")
                kinds.append(Active)
                lane_tangents.append([float(tangent)])
            else:
                kinds.append(Const)
                lane_tangents.append(None)
        args = tuple(a.value for a in annotated)
        return_type = self._result_type(args)
        if results.is_structured(return_type):
            layout = results.result_layout(return_type, self.__name__)
            shapes = results.leaf_shapes(layout, self.dispatcher(*results.copy_arguments(args)))
            _, output_lanes = results.forward_call(self, layout, args, kinds, lane_tangents, 1, shapes)
            return results.tangent_value(layout, output_lanes, None)
        _, return_tangents = self._forward(args, tuple(kinds), lane_tangents, 1)
        return None if return_tangents is None else return_tangents[0].item()

    @staticmethod
    def _tangent_buffers(args, lanes: int) -> dict[int, list[np.ndarray]]:
        """Per float array argument, one zeroed tangent buffer per lane; arrays that share
        memory get buffers that overlap as they do (`aliasing`)."""
        arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        per_lane = [shadows_like([args[i] for i in arrays]) for _ in range(lanes)]
        return {i: [shadows[k] for shadows in per_lane] for k, i in enumerate(arrays)}

    def _check_shared_tangents(self, args, tangents, buffers, width) -> None:
        """Arrays that share memory have one tangent there: the ones given must agree."""
        given = [i for i in buffers if tangents[i] is not None]
        if arrays_are_distinct([args[i] for i in given]):
            return
        for i in given:
            expected = np.asarray(tangents[i])
            got = buffers[i][0] if width is None else np.stack(buffers[i])
            if not np.array_equal(got, expected):
                raise ValueError(f"tangent of argument {i} ({self._argument_name(i)!r}): the argument shares "
                                 "memory with another one whose tangent differs there; one memory location "
                                 "has one tangent")

    def _tangent_lanes(self, index, value, tangent, width, buffers):
        """(annotation kind, one tangent per lane) for argument `index` of `jvp`, checked."""
        def where() -> str:          # only on error: finding the name costs more than a small call
            return f"tangent of argument {index} ({self._argument_name(index)!r})"

        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            # Every float array is duplicated, so writes through it keep their tangents.
            if tangent is not None:
                tangent = np.asarray(tangent)
                expected = value.shape if width is None else (width, *value.shape)
                if tangent.shape != expected or tangent.dtype.kind not in "fiu":
                    raise ValueError(f"{where()} must be a real array of shape {expected}, got "
                                     f"{tangent.dtype} {tangent.shape}")
                for lane, buffer in enumerate(buffers):
                    buffer[...] = tangent if width is None else tangent[lane]
            return Duplicated, buffers
        if tangent is None:
            return Const, None
        if not isinstance(value, (float, np.floating)):
            raise TypeError(f"{where()} must be None: only float arrays and float scalars have tangents, "
                            f"got a {type(value).__name__}")
        tangent = np.asarray(tangent)
        expected = () if width is None else (width,)
        if tangent.shape != expected or tangent.dtype.kind not in "fiu":
            wanted = "number" if width is None else f"array of shape {expected}"
            raise ValueError(f"{where()} must be a real {wanted}, got {tangent.dtype} {tangent.shape}")
        return Active, [float(t) for t in np.atleast_1d(tangent)]

    def _forward(self, args, kinds, lane_tangents, width):
        """Run the tangent function: (value, return tangents or None).

        `kinds[i]` is Duplicated (float array; lane_tangents[i] is one array per
        lane, updated in place), Active (float scalar; one float per lane) or Const.
        """
        scratch = self._scratch_shadow_positions(args, kinds)          # see _with_scratch_shadows
        kinds = tuple(Duplicated if i in scratch else kind for i, kind in enumerate(kinds))
        lane_tangents = [[shadow_like(args[i]) for _ in range(width)] if i in scratch else lanes
                         for i, lanes in enumerate(lane_tangents)]
        types = tuple(self._type_key(a) for a in args)
        key = (types, tuple(k.__name__ for k in kinds), width)
        tangent_function = self._tangents.get(key)
        if tangent_function is None:
            tangent_function = self._compile_forward(args, kinds, width)
            self._tangents[key] = tangent_function
        convention = tangent_function.entry.convention
        parameters = primal_parameters(convention, args)
        copied_back = []
        for index, kind in enumerate(kinds):
            if kind is Duplicated:
                for lane in lane_tangents[index]:
                    parameters.append(shadow_address(convention.arguments[index], args[index], lane, copied_back,
                                                     role="tangent"))
        for index, kind in enumerate(kinds):
            if kind is Active:
                parameters.extend(lane_tangents[index])
        return_tangents = None
        if tangent_function.returns_tangent:
            return_tangents = np.zeros(width, dtype=np.dtype(str(convention.return_type)))
            parameters.append(return_tangents.ctypes.data)
        value = tangent_function.entry.call_raw(parameters)
        copy_back(copied_back)
        return value, return_tangents

    def _compile(self, primal_args, kinds, distinct_arguments: bool = False, types=None, width: int = 1) -> _Gradient:
        """`types`: numba types instead of argument values (a call from njit code, numba_calls.py)."""
        key = self._disk_key("reverse", primal_args, types, kinds,
                             distinct_arguments if width == 1 else (distinct_arguments, width))
        stored = disk_cache.load(key) if key else None
        if stored is not None:
            entry, layout, text = stored
            return _Gradient(entry, *layout, text)
        with scanning_new_objects_only():
            captured = capture(self.dispatcher, args=primal_args, types=types)
            try:
                module, gradient_function, spec = self.gradient_module(captured, kinds, distinct_arguments, width)
            except DifferentiationError as error:
                raise DifferentiationError(for_user(str(error), self._where())) from None
            text = write_module(module)
            entry = self._entry_point(captured, text, gradient_function)
        duplicated = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, Duplicated))
        active = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, Active))
        layout = (duplicated, active, spec.return_type is not None)
        self._disk_store(key, entry, layout, text)
        return _Gradient(entry, *layout, text)

    def _compile_forward(self, primal_args, kinds, width, types=None) -> _Tangent:
        key = self._disk_key("forward", primal_args, types, kinds, width)
        stored = disk_cache.load(key) if key else None
        if stored is not None:
            entry, layout, text = stored
            return _Tangent(entry, *layout, text)
        with scanning_new_objects_only():
            captured = capture(self.dispatcher, args=primal_args, types=types)
            try:
                module, tangent_function, spec = self.tangent_module(captured, kinds, width)
            except DifferentiationError as error:
                raise DifferentiationError(for_user(str(error), self._where())) from None
            text = write_module(module)
            entry = self._entry_point(captured, text, tangent_function)
        layout = (width, spec.return_type is not None)
        self._disk_store(key, entry, layout, text)
        return _Tangent(entry, *layout, text)

    def _disk_key(self, mode: str, primal_args, types, kinds, variant) -> str | None:
        """The disk-cache file of this derivative, or None (no `cache=True`, or a kernel that
        names something `disk_cache` cannot key)."""
        if not self.cache:
            return None
        if self._identity is False:
            self._identity = disk_cache.kernel_identity(self.dispatcher)
        if self._identity is None:
            return None
        return disk_cache.derivative_key(
            self._identity, mode, disk_cache.type_names(self.dispatcher, primal_args, types),
            tuple(kind.__name__ for kind in kinds), variant,
            (self.optimize, self.cache_minimization, self.loose_types))

    @staticmethod
    def _disk_store(key: str | None, entry: NumbaEntryPoint, layout: tuple, text: str) -> None:
        if key is None:
            return
        try:
            disk_cache.store(key, entry, layout, text)
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as error:
            # The derivative works; only the next process will compile it again.
            warnings.warn(f"enzpy: could not keep the compiled derivative on disk: {error}", stacklevel=5)

    def _entry_point(self, captured, text, function) -> NumbaEntryPoint:
        compiled = CompiledModule(text, pipeline=post_ad_pipeline(text), keep_object_code=self.cache,
                                  entries=(function.name,))
        parameter_types = tuple(str(t) for t in function.function_type.params)
        convention = dataclasses.replace(captured.convention, entry=function.name, parameter_types=parameter_types)
        return NumbaEntryPoint(compiled, convention)

    def _where(self) -> str:
        """`module.function (file.py:line of def)`: the IR names only the mangled symbol."""
        function = getattr(self.dispatcher, "py_func", None)
        code = getattr(function, "__code__", None)
        if code is None:
            return repr(self.__name__)
        return f"'{function.__module__}.{function.__qualname__}' ({code.co_filename}:{code.co_firstlineno})"

    def _argument_name(self, index: int) -> str:
        try:
            return list(inspect.signature(self.dispatcher.py_func).parameters)[index]
        except (AttributeError, IndexError, TypeError, ValueError):
            return f"#{index}"

    def written_arguments(self, args, floats_only: bool = True) -> frozenset[int]:
        """Positions of the float array arguments (of all arrays, unless `floats_only`) the
        kernel may write (from its optimized IR)."""
        types = tuple(self.dispatcher.typeof_pyval(a) for a in args)
        if (types, floats_only) not in self._written:
            captured = capture(self.dispatcher, args=tuple(args))
            module = optimized_ir(captured)
            written = written_parameters(module.functions[captured.convention.entry])
            self._written[types, floats_only] = frozenset(
                a.position for a in captured.convention.arguments
                if a.is_array and (a.is_float or not floats_only) and a.data_parameter() in written)
        return self._written[types, floats_only]

    def derivative_module(self, captured, kinds: tuple[type, ...], mode: str = "reverse", width: int = 1):
        """(module with the derivative added, its function, its spec) for `mode` (reverse or forward)."""
        if mode == "forward":
            return self.tangent_module(captured, kinds, width)
        if mode == "reverse":
            return self.gradient_module(captured, kinds)
        raise ValueError(f"mode must be 'reverse' or 'forward', not {mode!r}")

    def gradient_module(self, captured, kinds: tuple[type, ...], distinct_arguments: bool = False, width: int = 1):
        """(module with the gradient added, the gradient function, its ReverseSpec) for annotation kinds.

        `distinct_arguments`: the arrays passed do not overlap (see
        `arrays_are_distinct`). A DifferentiationError is raised again from a
        copy of the kernel compiled with debug info, so that it names the
        Python source line.
        """
        try:
            return self._gradient_module(captured, kinds, distinct_arguments, width)
        except DifferentiationError as error:
            raise with_source_location(error, lambda: self._gradient_module(
                recapture_with_debug_info(captured), kinds, distinct_arguments, width)) from None

    def tangent_module(self, captured, kinds: tuple[type, ...], width: int = 1):
        """(module with the tangent function added, that function, its ForwardSpec) for annotation kinds.

        Duplicated float arrays get `width` shadow pointers; Active (or
        Duplicated) float scalars `width` tangents. Errors name the source
        line as in `gradient_module`.
        """
        try:
            return self._tangent_module(captured, kinds, width)
        except DifferentiationError as error:
            raise with_source_location(error, lambda: self._tangent_module(
                recapture_with_debug_info(captured), kinds, width)) from None

    def _gradient_module(self, captured, kinds: tuple[type, ...], distinct_arguments: bool, width: int = 1):
        convention = captured.convention
        check_kinds(convention, kinds, scalar_duplicated=False)
        module = optimized_ir(captured) if self.optimize else optimize(to_ir(captured), "none")
        if self.optimize:
            outline_checkpointed_loops(module)
        remove_markers(module)
        duplicated = [convention.arguments[i] for i, kind in enumerate(kinds) if issubclass(kind, Duplicated)]
        active = [convention.arguments[i] for i, kind in enumerate(kinds) if issubclass(kind, Active)]
        spec = ReverseSpec(
            duplicated=tuple(a.data_parameter() for a in duplicated),
            active=tuple(a.first_parameter for a in active),
            return_type=float_return_type(convention),
            duplicated_types=tuple(float_type(a.dtype) for a in duplicated),
            distinct_arguments=distinct_arguments,
            minimize_cache=self.cache_minimization,
            loose_types=self.loose_types,
            width=width)
        primal = module.functions[convention.entry]
        if width > 1 and mpi_routines_in(module):
            raise DifferentiationError(f"vector reverse mode (width {width}) of a kernel that communicates "
                                       "(MPI) is not supported; use width=1")
        # Whether the result is the same on every rank, before the AD changes the primal (MPI only).
        replicated = bool(mpi_routines_in(module)) and replicated_result(primal)
        gradient = build_reverse(module, primal, spec, "enzpy.reverse." + convention.entry)
        run_derivatives_in_parallel(module)
        run_checkpointed_loops(module)
        gradient = on_every_rank(module, gradient, primal, spec, replicated)
        return module, gradient, spec

    def _tangent_module(self, captured, kinds: tuple[type, ...], width: int):
        convention = captured.convention
        check_kinds(convention, kinds, scalar_duplicated=True)
        module = optimized_ir(captured) if self.optimize else optimize(to_ir(captured), "none")
        remove_markers(module)         # forward mode needs no checkpoints
        arguments = list(zip(convention.arguments, kinds))
        duplicated = [a for a, kind in arguments if issubclass(kind, Duplicated) and a.is_array]
        scalars = [a for a, kind in arguments if issubclass(kind, (Active, Duplicated)) and not a.is_array]
        spec = ForwardSpec(
            duplicated=tuple(a.data_parameter() for a in duplicated),
            active=tuple(a.first_parameter for a in scalars),
            return_type=float_return_type(convention),
            duplicated_types=tuple(float_type(a.dtype) for a in duplicated),
            width=width)
        suffix = "" if width == 1 else f".width{width}"
        tangent = build_forward(module, module.functions[convention.entry], spec,
                                f"enzpy.forward{suffix}." + convention.entry)
        run_derivatives_in_parallel(module)
        return module, tangent, spec


def check_kinds(convention, kinds: tuple[type, ...], scalar_duplicated: bool) -> None:
    """Refuse annotations that do not fit the argument (naming it); forward mode may duplicate float scalars."""
    for argument, kind in zip(convention.arguments, kinds):
        duplicable = argument.is_float and (argument.is_array or scalar_duplicated)
        if issubclass(kind, Duplicated) and not duplicable:
            needs = "a float array or float scalar" if scalar_duplicated else "a float array"
            raise DifferentiationError(f"argument {argument.position} ({argument.name!r}): Duplicated needs "
                                       f"{needs}, got {argument.numba_type}")
        if issubclass(kind, Active) and (argument.is_array or not argument.is_float):
            raise DifferentiationError(f"argument {argument.position} ({argument.name!r}): Active needs a "
                                       f"float scalar, got {argument.numba_type}")








def with_source_location(error: DifferentiationError, build_with_debug_info) -> DifferentiationError:
    """`error`, or the same error from `build_with_debug_info()` if that one names a source line.

    The debug build differs (numba marks its functions `noinline`, so a callee
    may stay a call): a located error about something else would mislead, so
    it is taken only when it reports the same problem.
    """
    if "Python source" in str(error):
        return error
    try:
        build_with_debug_info()
    except DifferentiationError as located:
        if "Python source" in str(located) and _problem(located) == _problem(error):
            return located
    except Exception:            # debug info is a nicety: never let it hide the real error
        pass
    return error




def _problem(error: Exception) -> str:
    """What an error reports, without where: function and value names differ between the builds."""
    what = re.split(r" \((?:function @|in function )", str(error), maxsplit=1)[0]
    return re.sub(r"[%@][-\w.$\"]+", "%", what)



def differentiate(function=None, *, optimize: bool = True, cache_minimization: bool = True,
                  loose_types: bool = False, cache: bool = False):
    """`differentiate(f)`, `@differentiate` or `@differentiate(optimize=False)`.

    `cache=True` keeps the compiled derivatives on disk, as numba's `cache=True`
    keeps kernels: a later process loads them instead of compiling
    (`enzpy.disk_cache`: keyed by the kernel's code and what it calls, the
    argument types and annotations, and the versions of enzpy, numba and LLVM).
    Pair it with `@njit(cache=True)` so numba's primal loads from its cache too.

    `cache_minimization=False` makes reverse mode cache every value it needs
    instead of recomputing or re-loading (the baseline of
    `benchmarks/cache_minimization.py`). `loose_types=True` lets reverse mode
    go on where type analysis finds the same bytes used as two types (the
    first use wins) instead of raising.

    >>> import numpy as np
    >>> from enzpy import differentiate
    >>> def sum_of_squares(x):
    ...     return np.sum(x * x)
    >>> f = differentiate(sum_of_squares)       # compiled with numba.njit
    >>> f(np.array([1.0, 2.0]))                 # the kernel itself
    5.0
    >>> f.grad(np.array([1.0, 2.0]))
    (array([2., 4.]),)
    >>> @differentiate(cache_minimization=False)
    ... def cube(a):
    ...     return a * a * a
    >>> cube.value_and_grad(2.0)
    (8.0, (12.0,))
    """
    options = dict(optimize=optimize, cache_minimization=cache_minimization, loose_types=loose_types,
                   cache=cache)
    if function is None:
        return lambda f: Differentiable(f, **options)
    return Differentiable(function, **options)


def _register_with_numba() -> None:
    """njit code may call a `@differentiate`d kernel as it calls the numba function inside."""
    from numba.core import types
    from numba.extending import typeof_impl

    @typeof_impl.register(Differentiable)
    def _typeof_differentiable(value, context):
        return types.Dispatcher(value.dispatcher)


_register_with_numba()
