"""How Python arguments meet a compiled derivative: annotations by default, exploded
parameters, shadow pointers, and the gradients read back.

Shared by `api` (Differentiable) and the modules layered on it (`results`,
`jacobian`, `explain`, `higher_order`, `prepared`), which import these from here
rather than from `api`, so that the imports point one way.
"""

from __future__ import annotations

import numpy as np

from .aliasing import shadow_like, shadows_like
from .annotations import Active, Const, Duplicated
from .ir.types import FloatType
from .jit import array_parameters, check_array, scalar_parameter


def default_annotation(value):
    """A float array Duplicated (with a zero shadow), a float scalar Active, anything else Const."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return Duplicated(value, shadow_like(value))
    if isinstance(value, (float, np.floating)):
        return Active(value)
    return Const(value)


def float_return_type(convention) -> FloatType | None:
    """The float type the kernel stores through retptr, or None when it returns no float."""
    if convention.returns_value and np.dtype(str(convention.return_type)).kind == "f":
        return float_type(np.dtype(str(convention.return_type)))
    return None


def float_type(dtype) -> FloatType:
    return FloatType("float" if np.dtype(dtype) == np.float32 else "double")


def primal_parameters(convention, values) -> list:
    """The exploded parameters of the primal arguments, as numba passes them."""
    parameters = []
    for spec, value in zip(convention.arguments, values):
        if spec.is_array:
            parameters.extend(array_parameters(spec, value))
        else:
            parameters.append(scalar_parameter(spec, value))
    return parameters


def shadow_address(spec, value: np.ndarray, shadow, copied_back: list, role: str) -> int:
    """The data pointer to pass for `shadow`, the derivative array of argument `value`.

    The kernel walks the shadow with the argument's strides: a shadow laid out
    differently is replaced by a same-strided copy, recorded in `copied_back`
    to be written back after the call (`copy_back`).
    """
    if not isinstance(shadow, np.ndarray) or shadow.shape != value.shape or shadow.dtype != value.dtype:
        raise ValueError(f"{role} of argument {spec.position} ({spec.name!r}) must be a "
                         f"{value.dtype} array of shape {value.shape}, got "
                         f"{getattr(shadow, 'dtype', type(shadow).__name__)} {getattr(shadow, 'shape', '')}")
    if shadow.strides != value.strides:
        laid_out = shadow_like(value)
        laid_out[...] = shadow
        copied_back.append((shadow, laid_out))
        shadow = laid_out
    check_array(spec, shadow, role=f"{role} of argument")
    return shadow.ctypes.data


def lane_shadows(annotation, width: int, spec) -> list[tuple[np.ndarray, str]]:
    """(shadow, role) per lane of a Duplicated argument: the shadow itself, or with `width` > 1
    (vector reverse mode) the k arrays along its leading axis."""
    if width == 1:
        return [(annotation.shadow, "shadow")]
    shadow, value = annotation.shadow, annotation.value
    if not isinstance(shadow, np.ndarray) or shadow.shape != (width, *np.shape(value)):
        raise ValueError(f"shadow of argument {spec.position} ({spec.name!r}) must be an array of shape "
                         f"{(width, *np.shape(value))} with width={width} (one shadow per lane), got "
                         f"{getattr(shadow, 'shape', type(shadow).__name__)}")
    return [(shadow[lane], f"shadow (lane {lane})") for lane in range(width)]


def copy_back(copied_back: list) -> None:
    for shadow, laid_out in copied_back:
        if shadow is not laid_out:
            shadow[...] = laid_out


def annotated_arrays(annotated) -> list:
    """The values and the shadows of annotated arguments: what `arrays_are_distinct` checks."""
    return [a.value for a in annotated] + [a.shadow for a in annotated if isinstance(a, Duplicated)]


def default_annotations(args, positions=None) -> list:
    """Float arrays Duplicated, float scalars Active, the rest Const (and every argument not
    in `positions`, when given). Arrays that share memory get shadows overlapping as they
    do (`aliasing`): one derivative per byte."""
    annotated = [Const(a) if positions is not None and i not in positions
                 else Duplicated(a, None) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else default_annotation(a) for i, a in enumerate(args)]
    duplicated = [i for i, a in enumerate(annotated) if isinstance(a, Duplicated)]
    for i, shadow in zip(duplicated, shadows_like([args[i] for i in duplicated])):
        annotated[i] = Duplicated(args[i], shadow)
    return annotated


def gradients_of(annotated, active) -> tuple:
    """Gradients aligned with the arguments: a Duplicated one's shadow, an Active one's
    derivative (from `active`, in order), None for the others."""
    active = iter(active)
    return tuple(a.shadow if isinstance(a, Duplicated) else next(active) if isinstance(a, Active) else None
                 for a in annotated)


def default_kinds(convention) -> tuple[type, ...]:
    """What `value_and_grad` differentiates: float arrays Duplicated, float scalars Active."""
    return tuple((Duplicated if a.is_array else Active) if a.is_float else Const for a in convention.arguments)
