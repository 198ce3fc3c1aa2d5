"""enzpy.prepared: a reverse call bound once gives what autodiff gives, call after call."""

import numba
import numpy as np
import pytest

from enzpy import Active, Const, Duplicated, differentiate
from enzpy.prepared import prepare_reverse


@numba.njit
def damped_step(k, u, rate):
    # In place, with the step number in the arithmetic: rebinding k must matter.
    for i in range(u.shape[0]):
        u[i] = u[i] - rate * (1.0 + 0.1 * k) * u[i] * u[i]


def test_prepared_calls_match_autodiff_call_after_call():
    step = differentiate(damped_step)
    u, shadow = np.linspace(0.1, 0.9, 7), np.linspace(1.0, 2.0, 7)
    u_reference, shadow_reference = u.copy(), shadow.copy()
    prepared = prepare_reverse(step, [Const(0), Duplicated(u, shadow), Active(0.3)])
    for k in [3, 2, 1, 0]:
        (expected,) = step.autodiff(Const(k), Duplicated(u_reference, shadow_reference), Active(0.3))
        (got,) = prepared(first=k)
        # Active outputs start from zero each call; shadows accumulate as autodiff's do.
        assert got == expected
        np.testing.assert_array_equal(shadow, shadow_reference)
        np.testing.assert_array_equal(u, u_reference)   # both ran the step in place


def test_a_shadow_laid_out_otherwise_is_copied_in_and_out_each_call():
    step = differentiate(damped_step)
    u, u_reference = np.linspace(0.1, 0.9, 7), np.linspace(0.1, 0.9, 7)
    strided = np.ones(14)[::2]                      # the shadow: not u's strides
    prepared = prepare_reverse(step, [Const(0), Duplicated(u, strided), Const(0.3)])
    expected = np.ones(7)
    for _ in range(2):
        step.autodiff(Const(0), Duplicated(u_reference, expected), Const(0.3))
        prepared()
        np.testing.assert_array_equal(strided, expected)


def test_only_an_integer_first_argument_is_rebound():
    step = differentiate(damped_step)
    prepared = prepare_reverse(step, [Const(0), Duplicated(np.ones(3), np.ones(3)), Active(0.3)])
    prepared(first=4)
    scaled = differentiate(numba.njit(lambda rate, u: u.sum() * rate))
    other = prepare_reverse(scaled, [Active(0.5), Const(np.ones(3))])
    with pytest.raises(ValueError, match="integer first argument"):
        other(first=2)
