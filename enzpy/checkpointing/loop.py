"""Checkpointed time loops written in Python around a numba step kernel.

    step = enzpy.differentiate(burgers_step)           # burgers_step(u, scratch, nu, dt): u in place
    loop = enzpy.checkpointed(step, steps=20_000, schedule=enzpy.Revolve(20))
    loop(u, scratch, nu, dt)                            # the plain loop: step 20,000 times
    du = energy_gradient(u_final)                       # adjoint of the final state
    (dnu,) = loop.autodiff(Duplicated(u, du), Const(scratch), Active(nu), Const(dt))

as Checkpointing.jl's `@ad_checkpoint` does for Julia. The loop's *state* is
every array the step writes (found in its optimized IR): snapshots copy it,
and only it. Each array written with floats gets an adjoint: the one the
user passes (`Duplicated`: on entry the adjoint of the final contents, on
return that of the initial ones, as autodiff of one in-place kernel does),
or a private zeroed one for scratch arrays passed as plain values or Const
(a Const scratch array would otherwise swallow the derivative that flows
through it from one step to the next). Float arrays the step only reads
accumulate their adjoints over all steps; an Active scalar's derivatives are
summed. After `autodiff` the state arrays hold the final state, as after a
plain run of the loop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba.core import types as numba_types

from ..api import Active, Const, Differentiable, Duplicated, differentiate
from ..errors import DifferentiationError
from ..prepared import PreparedReverse, prepare_reverse
from .driver import LoopReport, follow
from .schedules import Online, Revolve, Schedule
from .storage import Snapshots


def checkpointed(step, steps: int | None = None, *, schedule: Schedule = Revolve(20),
                 until: Callable[..., bool] | None = None, step_index: bool = False) -> CheckpointedLoop:
    """A loop of `steps` calls of `step` (a numba kernel, or a Differentiable) whose reverse
    sweep follows `schedule` (`Revolve`, `Periodic` or `Online`).

    `until(*args)`: instead of `steps`, the loop runs while it returns False (checked before
    each step); only `Online` schedules take such loops. `step_index=True`: the step is
    called as `step(k, *args)` with the step number k.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, Revolve, checkpointed
    >>> @numba.njit
    ... def step(u, rate):
    ...     u *= 1.0 - rate                          # the state u, in place
    >>> loop = checkpointed(step, 3, schedule=Revolve(2))
    >>> u, du = np.array([1.0, 2.0]), np.ones(2)         # du: the adjoint of u's final contents
    >>> loop.autodiff(Duplicated(u, du), Active(0.5))    # d sum(final u) / d rate
    [-2.25]
    >>> du, u                                            # the adjoint of the initial u; the final u
    (array([0.125, 0.125]), array([0.125, 0.25 ]))
    """
    return CheckpointedLoop(step if isinstance(step, Differentiable) else differentiate(step),
                            steps, schedule, until, step_index)


class CheckpointedLoop:
    """See `checkpointed`; `report` describes the last gradient (schedule, steps recomputed, bytes).

    Called, it runs the plain loop; `autodiff` and `vjp` give its derivatives.

    >>> import numba
    >>> import numpy as np
    >>> from enzpy import Active, Duplicated, Periodic, checkpointed
    >>> @numba.njit
    ... def step(u, rate):
    ...     u *= 1.0 - rate                          # the state u, in place
    >>> loop = checkpointed(step, 6, schedule=Periodic(3))
    >>> loop(np.array([1.0, 2.0]), 0.5)
    6
    >>> loop.autodiff(Duplicated(np.array([1.0, 2.0]), np.ones(2)), Active(0.5))
    [-0.5625]
    >>> loop.report.steps, loop.report.recomputed_steps, loop.report.peak_snapshots
    (6, 6, 2)
    """

    def __init__(self, step: Differentiable, steps, schedule, until, step_index: bool):
        if (steps is None) == (until is None):
            raise ValueError("a checkpointed loop needs either steps= or until=, not both")
        if steps is not None and (int(steps) != steps or steps < 0):
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if until is not None and schedule.needs_length_upfront:
            raise ValueError(f"{schedule} needs the number of steps before the loop runs; a loop with "
                             "until= takes an Online schedule")
        self.step, self.steps, self.schedule = step, steps, schedule
        self.until, self.step_index = until, step_index
        self.report: LoopReport | None = None

    def _call_arguments(self, k: int, values: list) -> list:
        return [k, *values] if self.step_index else list(values)

    def _ended(self, k: int, values: list) -> bool:
        return k >= self.steps if self.until is None else bool(self.until(*values))

    def __call__(self, *args) -> int:
        """The plain loop (no derivative); returns the number of steps run.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import checkpointed
        >>> @numba.njit
        ... def step(u, rate):
        ...     u *= 1.0 - rate                          # the state u, in place
        >>> u = np.array([1.0, 2.0])
        >>> checkpointed(step, 3)(u, 0.5)
        3
        >>> u
        array([0.125, 0.25 ])
        """
        k = 0
        while not self._ended(k, list(args)):
            self.step.dispatcher(*self._call_arguments(k, args))
            k += 1
        return k

    def explain(self) -> str:
        """What the last `autodiff` did: schedule, steps run and recomputed, snapshot bytes.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import Active, Duplicated, Revolve, checkpointed
        >>> @numba.njit
        ... def step(u, rate):
        ...     u *= 1.0 - rate                          # the state u, in place
        >>> loop = checkpointed(step, 3, schedule=Revolve(2))
        >>> loop.explain()
        'checkpointed loop: no gradient computed yet'
        >>> loop.autodiff(Duplicated(np.array([1.0, 2.0]), np.ones(2)), Active(0.5))
        [-2.25]
        >>> print(loop.explain())  # doctest: +ELLIPSIS
        checkpointed loop: Revolve(snapshots=2, disk_snapshots=0, directory=None), 3 steps
          forward steps run: 5 (2 recomputed), reverse steps: 3
          one snapshot: 16 bytes; ...
        """
        if self.report is None:
            return "checkpointed loop: no gradient computed yet"
        return str(self.report)

    def vjp(self, *args):
        """(final, pullback): `final` aligned with `args`, a copy of each array the step writes
        as the loop leaves it (None for the rest); `pullback(cotangent)`, a cotangent of the same
        structure (None: zero), returns the gradients aligned with `args` (float arrays and float
        scalars; None for the others). The loop runs on `args`, as a plain call does.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import checkpointed
        >>> @numba.njit
        ... def step(u, rate):
        ...     u *= 1.0 - rate                          # the state u, in place
        >>> final, pullback = checkpointed(step, 3).vjp(np.array([1.0, 2.0]), 0.5)
        >>> final                                        # u as the loop leaves it; rate is not written
        (array([0.125, 0.25 ]), None)
        >>> pullback((np.ones(2), None))                 # the gradient of sum(final u)
        (array([0.125, 0.125]), -2.25)
        """
        from ..results import copy_arguments

        saved = copy_arguments(args)
        self(*args)
        state = self._state_positions(list(args))
        final = tuple(args[i].copy() if i in state else None for i in range(len(args)))

        def pullback(cotangent):
            cotangent = tuple(cotangent)
            if len(cotangent) != len(args):
                raise ValueError(f"the cotangent needs one entry per argument ({len(args)}), got {len(cotangent)}")
            values = copy_arguments(saved)
            annotated = []
            for i, value in enumerate(values):
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    shadow = np.zeros_like(value)
                    if cotangent[i] is not None:
                        shadow[...] = cotangent[i]
                    annotated.append(Duplicated(value, shadow))
                elif isinstance(value, (float, np.floating)):
                    annotated.append(Active(value))
                else:
                    annotated.append(Const(value))
            active = iter(self.autodiff(*annotated))
            return tuple(a.shadow if isinstance(a, Duplicated) else next(active) if isinstance(a, Active)
                         else None for a in annotated)

        return final, pullback

    def _check_step_returns_nothing(self, values: list) -> None:
        return_type = self.step._result_type(self._call_arguments(0, values))
        if return_type is not None and not isinstance(return_type, numba_types.NoneType):
            raise DifferentiationError(f"a checkpointed step returns nothing; {self.step.__name__!r} returns "
                                       f"{return_type}: accumulate a cost into an array argument instead")

    @staticmethod
    def _state_shadows(annotated, state_positions) -> dict[int, np.ndarray]:
        """The derivative arrays of the float arrays the step writes: the user's, or private zeros."""
        return {i: annotated[i].shadow if isinstance(annotated[i], Duplicated) else np.zeros_like(annotated[i].value)
                for i in state_positions if annotated[i].value.dtype.kind == "f"}

    @staticmethod
    def _with_state_shadows(annotated, shadows: dict[int, np.ndarray]) -> list:
        """The step's annotations: each written float array Duplicated with its derivative array."""
        return [Duplicated(a.value, shadows[i]) if i in shadows else a for i, a in enumerate(annotated)]

    def _forward(self, annotated, values: list) -> None:
        self._check_step_returns_nothing(values)
        shadows = self._state_shadows(annotated, sorted(self._state_positions(values)))
        step_annotations = self._with_state_shadows(annotated, shadows)
        k = 0
        while not self._ended(k, values):
            self.step.autodiff(*([Const(k)] if self.step_index else []), *step_annotations, mode="forward")
            k += 1
        return None

    def _state_positions(self, values: list) -> frozenset[int]:
        probe = self._call_arguments(0, values)
        offset = 1 if self.step_index else 0
        return frozenset(i - offset for i in self.step.written_arguments(probe, floats_only=False) if i >= offset)

    def autodiff(self, *annotated, mode: str = "reverse") -> list[float] | None:
        """Reverse mode over the whole loop (see the module docstring); returns the Active
        arguments' derivatives, in order. Duplicated shadows are updated in place.

        mode="forward": tangents need no checkpointing. Each Duplicated shadow holds a
        tangent of the initial contents (a Duplicated scalar's shadow its tangent) and is
        turned into the tangent of the final contents, step by step.

        >>> import numba
        >>> import numpy as np
        >>> from enzpy import Active, Duplicated, Revolve, checkpointed
        >>> @numba.njit
        ... def step(u, rate):
        ...     u *= 1.0 - rate                          # the state u, in place
        >>> loop = checkpointed(step, 3, schedule=Revolve(2))
        >>> u, du = np.array([1.0, 2.0]), np.ones(2)
        >>> loop.autodiff(Duplicated(u, du), Active(0.5))
        [-2.25]
        >>> du
        array([0.125, 0.125])
        >>> tu = np.array([1.0, 0.0])                    # forward mode: the tangent of the initial u
        >>> loop.autodiff(Duplicated(np.array([1.0, 2.0]), tu), 0.5, mode="forward")
        >>> tu                                           # ... of the final u
        array([0.125, 0.   ])
        """
        annotated = [a if isinstance(a, (Const, Active, Duplicated)) else Const(a) for a in annotated]
        values = [a.value for a in annotated]
        if mode == "forward":
            return self._forward(annotated, values)
        if mode != "reverse":
            raise ValueError(f"mode must be 'reverse' or 'forward', not {mode!r}")
        self._check_step_returns_nothing(values)
        state_positions = sorted(self._state_positions(values))
        state = [values[i] for i in state_positions]
        shadows = self._state_shadows(annotated, state_positions)
        active_positions = [i for i, a in enumerate(annotated) if isinstance(a, Active)]
        totals = [0.0] * len(active_positions)

        def advance(k: int) -> None:
            self.step.dispatcher(*self._call_arguments(k, values))

        step_annotations = self._with_state_shadows(annotated, shadows)
        if self.step_index:
            step_annotations.insert(0, Const(0))
        prepared: list[PreparedReverse] = []

        def reverse(k: int) -> None:
            # The same arrays every step: the call is bound once (enzpy.prepared), at the first
            # adjoint step, when the schedule has the state of a step in the work arrays.
            if not prepared:
                prepared.append(prepare_reverse(self.step, step_annotations))
            derivatives = prepared[0](first=k) if self.step_index else prepared[0]()
            for position, derivative in enumerate(derivatives):
                totals[position] += derivative

        report = LoopReport(schedule=repr(self.schedule))
        self.report = report
        if self._ended(0, values):
            return totals                   # no step: nothing moves
        final: list[np.ndarray] = []
        snapshots = Snapshots(getattr(self.schedule, "directory", None))
        storage_of = self.schedule.storage_of if isinstance(self.schedule, Online) else (lambda s: s)
        try:
            follow(self.schedule.actions(self.steps), state, advance, reverse, snapshots, report,
                   self.steps if self.schedule.needs_length_upfront else None,
                   ended=lambda k: self._ended(k, values), storage_of=storage_of,
                   forward_done=lambda: final.extend(a.copy() for a in state))
        finally:
            snapshots.close()
        for array, saved in zip(state, final):
            array[...] = saved
        return totals
