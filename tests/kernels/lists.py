"""Lists built inside the kernel: reflected lists of floats and of arrays (append, index,
iterate, `len`, pop) and typed lists of floats and of arrays (`numba.typed.List`:
append, index, iterate, `len`).

numba keeps such a list in a resizable buffer (an NRT varsize MemInfo: a
header of integers, then the items) that `append` grows by reallocating.
The shadow is a second buffer that grows with it (`enzpy/rules/lists.py`).
Every kernel returns a float."""

import numba
import numpy as np

from .case import Case


@numba.njit
def appended_squares_through_sine(x):
    values = []
    for i in range(x.size):
        values.append(x[i] * x[i])
    total = 0.0
    for v in values:
        total += np.sin(v)
    return total + len(values)


@numba.njit
def comprehension_of_exponentials(x):
    values = [np.exp(0.5 * v) for v in x]
    total = 0.0
    for i in range(len(values)):
        total += (i + 1.0) * values[i]
    return total


@numba.njit
def literal_list_of_three(x):
    corners = [x[0] * x[1], x[1] - x[2], np.cos(x[2])]
    return corners[0] * corners[1] + corners[2] * corners[2]


@numba.njit
def running_sums_read_back(x):
    # Each append reads the item the previous one wrote (values[-1]).
    values = [x[0]]
    for i in range(1, x.size):
        values.append(0.5 * values[-1] + x[i] * x[i])
    total = 0.0
    for v in values:
        total += v * v
    return total


@numba.njit
def updated_in_place(x):
    values = []
    for v in x:
        values.append(v)
    for i in range(len(values)):
        values[i] = values[i] * values[i] + 1.0
    for i in range(len(values) - 1):
        values[i + 1] = values[i + 1] * values[i]
    return values[-1] + values[0]


@numba.njit
def popped_stack(x):
    # Grows to x.size, then shrinks by popping (the buffer reallocates both ways).
    stack = []
    for v in x:
        stack.append(np.tanh(v))
    total = 0.0
    while len(stack) > 2:
        top = stack.pop()
        total += top * stack[-1]
    return total + stack[0]


@numba.njit
def energy_history_of_a_stepper(u, dt):
    # A time loop that records a diagnostic every step, then weights the record.
    n = u.size
    state = u.copy()
    energies = []
    for step in range(12):
        new = np.empty_like(state)
        for i in range(n):
            new[i] = state[i] + dt * (state[(i + 1) % n] - 2.0 * state[i] + state[i - 1])
        state = new
        energy = 0.0
        for i in range(n):
            energy += state[i] * state[i]
        energies.append(energy)
    total = 0.0
    for k in range(len(energies)):
        total += energies[k] / (k + 1.0)
    return total


@numba.njit
def enumerate_weighted(x, w):
    values = []
    for i in range(x.size):
        values.append(x[i] * w[i])
    total = 0.0
    for i, v in enumerate(values):
        total += np.sqrt(1.0 + v * v) * (i % 3 + 1)
    return total


@numba.njit
def float32_list(x):
    values = []
    for i in range(x.size):
        values.append(x[i] * np.float32(1.5))
    total = np.float32(0.0)
    for v in values:
        total += v * v
    return total


@numba.njit
def filtered_positive_values(x):
    # Which items the list keeps depends on the data (away from the kink at 0).
    kept = []
    for v in x:
        if v > 0.0:
            kept.append(v)
    total = 0.0
    for v in kept:
        total += np.log(1.0 + v)
    return total * len(kept)


@numba.njit
def list_of_scaled_arrays(x):
    parts = []
    for i in range(3):
        parts.append(x * (i + 1.0))
    total = 0.0
    for part in parts:
        total += np.sum(part * part)
    return total


@numba.njit
def list_of_row_transforms(matrix):
    # Each item is a new array computed from one row; items are read back by index.
    rows = []
    for i in range(matrix.shape[0]):
        rows.append(np.tanh(matrix[i]) * (i + 1.0))
    total = 0.0
    for i in range(len(rows) - 1):
        total += np.dot(rows[i], rows[i + 1])
    return total


@numba.njit
def trajectory_of_states(u, dt):
    # A stepper that keeps every state in a list, then scores the whole trajectory.
    states = [u.copy()]
    for step in range(6):
        previous = states[-1]
        new = np.empty_like(previous)
        for i in range(previous.size):
            new[i] = previous[i] + dt * np.sin(previous[i - 1])
        states.append(new)
    total = 0.0
    for k in range(len(states)):
        total += np.sum(states[k] * states[k]) / (k + 1.0)
    return total


@numba.njit
def typed_list_appended_and_indexed(x):
    values = numba.typed.List()
    for i in range(x.size):
        values.append(np.exp(0.3 * x[i]) * x[i])
    total = 0.0
    for i in range(len(values)):
        total += (i + 1.0) * values[i] * values[len(values) - 1 - i]
    return total


@numba.njit
def typed_list_iterated(x, w):
    values = numba.typed.List.empty_list(numba.types.float64)
    for i in range(x.size):
        values.append(x[i] * w[i])
    total = 0.0
    for v in values:
        total += np.sqrt(1.0 + v * v)
    return total + len(values)


@numba.njit
def typed_list_running_history(u, dt):
    # Reads the last recorded value back while the list grows.
    history = numba.typed.List()
    history.append(u[0])
    for i in range(1, u.size):
        history.append(history[-1] * (1.0 - dt) + dt * np.sin(u[i]))
    total = 0.0
    for k in range(len(history)):
        total += history[k] * history[k]
    return total


@numba.njit
def typed_list_float32(x):
    values = numba.typed.List()
    for i in range(x.size):
        values.append(x[i] * x[i])
    total = np.float32(0.0)
    for i in range(len(values)):
        total += values[i] * np.float32(i + 1)
    return total


@numba.njit
def list_of_pairs(x):
    # Items are (float, float) tuples: two fields per slot.
    pairs = []
    for i in range(x.size - 1):
        pairs.append((x[i], np.cos(x[i + 1])))
    total = 0.0
    for a, b in pairs:
        total += a * b
    return total


@numba.njit
def typed_list_of_scaled_arrays(x):
    parts = numba.typed.List()
    for i in range(3):
        parts.append(x * (i + 1.0))
    total = 0.0
    for part in parts:
        total += np.sum(part * part)
    return total


@numba.njit
def typed_list_of_states(u, dt):
    # A stepper keeping each state in a typed list; the input itself is the first item.
    states = numba.typed.List()
    states.append(u)
    for step in range(5):
        previous = states[-1]
        new = np.empty_like(previous)
        for i in range(previous.size):
            new[i] = previous[i] + dt * np.tanh(previous[i - 1])
        states.append(new)
    total = 0.0
    for k in range(len(states)):
        total += np.dot(states[k], states[k]) * (k + 1.0)
    return total


@numba.njit
def typed_list_of_matrix_rows(matrix, weights):
    # 2D items and an integer index into the list.
    blocks = numba.typed.List()
    for i in range(matrix.shape[0]):
        blocks.append(np.outer(matrix[i], weights))
    total = 0.0
    for i in range(len(blocks)):
        total += np.sum(np.sin(blocks[len(blocks) - 1 - i])) * (i + 1.0)
    return total


@numba.njit
def typed_list_of_float32_arrays(x):
    parts = numba.typed.List()
    for i in range(x.size):
        parts.append(x[i:] * x[i])
    total = np.float32(0.0)
    for part in parts:
        total += np.sum(part)
    return total


CASES = [
    Case("appended_squares_through_sine", appended_squares_through_sine,
         lambda rng: (rng.uniform(0.2, 1.2, 7),), tags=frozenset({"list", "alloc"})),
    Case("comprehension_of_exponentials", comprehension_of_exponentials,
         lambda rng: (rng.uniform(-1.0, 1.0, 9),), tags=frozenset({"list", "alloc"})),
    Case("literal_list_of_three", literal_list_of_three,
         lambda rng: (rng.uniform(0.5, 1.5, 3),), tags=frozenset({"list", "alloc"})),
    Case("running_sums_read_back", running_sums_read_back,
         lambda rng: (rng.uniform(-1.0, 1.0, 11),), tags=frozenset({"list", "alloc"})),
    Case("updated_in_place", updated_in_place,
         lambda rng: (rng.uniform(0.5, 1.0, 6),), tags=frozenset({"list", "alloc", "inplace"})),
    Case("popped_stack", popped_stack,
         lambda rng: (rng.uniform(-1.0, 1.0, 10),), tags=frozenset({"list", "alloc", "while"})),
    Case("energy_history_of_a_stepper", energy_history_of_a_stepper,
         lambda rng: (rng.uniform(-1.0, 1.0, 16), 0.1), tags=frozenset({"list", "alloc", "stepper"})),
    Case("enumerate_weighted", enumerate_weighted,
         lambda rng: (rng.uniform(-1.0, 1.0, 8), rng.uniform(0.5, 2.0, 8)), tags=frozenset({"list", "alloc"})),
    Case("float32_list", float32_list,
         lambda rng: (rng.uniform(-1.0, 1.0, 6).astype(np.float32),),
         tags=frozenset({"list", "alloc", "float32"})),
    Case("filtered_positive_values", filtered_positive_values,
         lambda rng: (np.where(np.arange(12) % 3 == 0, -1.0, 1.0) * rng.uniform(0.3, 1.0, 12),),
         tags=frozenset({"list", "alloc", "branch"})),
    Case("list_of_scaled_arrays", list_of_scaled_arrays,
         lambda rng: (rng.uniform(-1.0, 1.0, 5),), tags=frozenset({"list", "alloc", "arrayexpr"})),
    Case("list_of_row_transforms", list_of_row_transforms,
         lambda rng: (rng.uniform(-1.0, 1.0, (4, 3)),), tags=frozenset({"list", "alloc", "arrayexpr", "2d"})),
    Case("typed_list_appended_and_indexed", typed_list_appended_and_indexed,
         lambda rng: (rng.uniform(-1.0, 1.0, 7),), tags=frozenset({"list", "typedlist", "alloc"})),
    Case("typed_list_iterated", typed_list_iterated,
         lambda rng: (rng.uniform(-1.0, 1.0, 6), rng.uniform(0.5, 2.0, 6)),
         tags=frozenset({"list", "typedlist", "alloc"})),
    Case("typed_list_running_history", typed_list_running_history,
         lambda rng: (rng.uniform(-1.0, 1.0, 9), 0.2), tags=frozenset({"list", "typedlist", "alloc"})),
    Case("typed_list_float32", typed_list_float32,
         lambda rng: (rng.uniform(-1.0, 1.0, 5).astype(np.float32),),
         tags=frozenset({"list", "typedlist", "alloc", "float32"})),
    Case("list_of_pairs", list_of_pairs,
         lambda rng: (rng.uniform(-1.0, 1.0, 7),), tags=frozenset({"list", "alloc", "tuple"})),
    Case("trajectory_of_states", trajectory_of_states,
         lambda rng: (rng.uniform(-1.0, 1.0, 8), 0.1), tags=frozenset({"list", "alloc", "stepper"})),
    Case("typed_list_of_scaled_arrays", typed_list_of_scaled_arrays,
         lambda rng: (rng.uniform(-1.0, 1.0, 5),), tags=frozenset({"list", "typedlist", "alloc", "arrayexpr"})),
    Case("typed_list_of_states", typed_list_of_states,
         lambda rng: (rng.uniform(-1.0, 1.0, 7), 0.2), tags=frozenset({"list", "typedlist", "alloc", "stepper"})),
    Case("typed_list_of_matrix_rows", typed_list_of_matrix_rows,
         lambda rng: (rng.uniform(-1.0, 1.0, (3, 4)), rng.uniform(0.5, 1.5, 2)),
         tags=frozenset({"list", "typedlist", "alloc", "arrayexpr", "2d", "blas"})),
    Case("typed_list_of_float32_arrays", typed_list_of_float32_arrays,
         lambda rng: (rng.uniform(-1.0, 1.0, 5).astype(np.float32),),
         tags=frozenset({"list", "typedlist", "alloc", "arrayexpr", "float32"})),
]
