"""enzpy's reverse mode against ADBench's reference data (external oracles).

The objectives in tests/adbench/objectives.py follow ADBench's C++ reference;
their values must reproduce the README's numbers and their enzpy derivatives
ADBench's hand-written ones, with ADBench's tolerance |a - b| <= 1e-8 * max(1, |b|).
Gradients are also checked against 5-point finite differences along random
directions, which needs no reference at all.
"""

import numpy as np
import pytest

from enzpy import Const, Duplicated, differentiate
from tests.adbench.data import adbench_dir, read_ba, read_gmm, read_lstm, read_values
from tests.adbench.objectives import ba_residuals, gmm_objective, lstm_objective

DATA = adbench_dir()
if DATA is None:
    pytest.skip("ADBench reference data not found: expected ../shared/adbench beside the checkout, "
                "or a folder named by ENZPY_ADBENCH_DIR", allow_module_level=True)

GMM_OBJECTIVE = 8.07380408004975791
GMM_GRADIENT = np.array([
    0.108662855508652456, -0.741270039523898472, 0.632607184015246071,
    1.11692576532787013, 0.163333013551455269, -0.0219989824071193142,
    0.227778292254236098, 1.20963025612832187, -0.0606375920733956339,
    2.58529994051162237, 0.112632694524213789, 0.385744309849611777,
    0.0735180573182305508, 5.41836362715595232, -0.321494409677446469,
    1.71892309775004937, 0.860091090790866875, -0.994640930466322848])
LSTM_LOSS = 0.66666518
BA_REPROJECTION = (-0.269048849235189402, 0.259944792677901881)
BA_WEIGHT_ERROR = 0.826092651515999976


def assert_adbench_close(actual, expected, what: str):
    """ADBench's own acceptance test, element-wise."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    error = np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))
    worst = int(np.argmax(error))
    assert error.flat[worst] <= 1e-8, \
        f"{what}: entry {worst} is {actual.flat[worst]!r}, reference {expected.flat[worst]!r}"


def five_point_derivative(function, point, direction, step=1e-4):
    """d/ds function(point + s * direction) at s = 0; error O(step^4)."""
    values = [function(point + s * step * direction) for s in (-2, -1, 1, 2)]
    return (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)


def assert_matches_finite_differences(function, point, gradient, rng, directions: int, what: str):
    for _ in range(directions):
        direction = rng.standard_normal(point.shape)
        predicted = float(gradient @ direction)
        finite_difference = five_point_derivative(function, point, direction)
        assert abs(predicted - finite_difference) <= 1e-6 * max(1.0, abs(finite_difference)), \
            f"{what}: reverse {predicted!r} vs finite differences {finite_difference!r}"


# ---------------------------------------------------------------- GMM


@pytest.fixture(scope="module")
def gmm():
    return read_gmm(DATA / "gmm_test.txt")


def gmm_gradient(instance):
    """Reverse-mode d objective / d(alphas, means, icf), flattened in ADBench's order."""
    shadows = [np.zeros_like(a) for a in (instance.alphas, instance.means, instance.icf)]
    differentiate(gmm_objective).autodiff(
        Duplicated(instance.alphas.copy(), shadows[0]), Duplicated(instance.means.copy(), shadows[1]),
        Duplicated(instance.icf.copy(), shadows[2]), Const(instance.x), Const(instance.wishart_gamma),
        Const(instance.wishart_m))
    return np.concatenate([s.ravel() for s in shadows])


def test_gmm_objective_matches_reference(gmm):
    value = gmm_objective(gmm.alphas, gmm.means, gmm.icf, gmm.x, gmm.wishart_gamma, gmm.wishart_m)
    assert_adbench_close(value, GMM_OBJECTIVE, "GMM objective")


def test_gmm_gradient_matches_reference(gmm):
    assert_adbench_close(gmm_gradient(gmm), GMM_GRADIENT, "GMM gradient")


def test_gmm_value_and_grad_agrees(gmm):
    # Default annotations also make x and wishart_gamma active; the value and
    # the (alphas, means, icf) part must not change.
    value, grads = differentiate(gmm_objective).value_and_grad(
        gmm.alphas.copy(), gmm.means.copy(), gmm.icf.copy(), gmm.x.copy(), gmm.wishart_gamma, gmm.wishart_m)
    assert_adbench_close(value, GMM_OBJECTIVE, "GMM value from value_and_grad")
    assert_adbench_close(np.concatenate([g.ravel() for g in grads[:3]]), GMM_GRADIENT,
                         "GMM gradient from value_and_grad")


def test_gmm_gradient_matches_finite_differences(gmm):
    sizes = [gmm.alphas.size, gmm.means.size, gmm.icf.size]

    def objective(flat):
        alphas, means, icf = np.split(flat, np.cumsum(sizes)[:-1])
        return gmm_objective(alphas, means.reshape(gmm.means.shape), icf.reshape(gmm.icf.shape), gmm.x,
                             gmm.wishart_gamma, gmm.wishart_m)

    point = np.concatenate([gmm.alphas, gmm.means.ravel(), gmm.icf.ravel()])
    assert_matches_finite_differences(objective, point, gmm_gradient(gmm), np.random.default_rng(11), 4, "GMM")


# ---------------------------------------------------------------- LSTM


@pytest.fixture(scope="module")
def lstm():
    return read_lstm(DATA / "lstm_l2_c1024.txt")


@pytest.fixture(scope="module")
def lstm_gradient(lstm):
    """Reverse-mode d loss / d(main params, extra params), flattened in ADBench's order."""
    main_shadow, extra_shadow = np.zeros_like(lstm.main_params), np.zeros_like(lstm.extra_params)
    state = lstm.state.copy()
    differentiate(lstm_objective).autodiff(
        Duplicated(lstm.main_params.copy(), main_shadow), Duplicated(lstm.extra_params.copy(), extra_shadow),
        Const(state), Const(lstm.sequence))
    # The kernel works on a copy of the state, as ADBench passes it by value.
    np.testing.assert_array_equal(state, lstm.state)
    return np.concatenate([main_shadow.ravel(), extra_shadow.ravel()])


def test_lstm_loss_matches_reference(lstm):
    loss = lstm_objective(lstm.main_params, lstm.extra_params, lstm.state, lstm.sequence)
    assert_adbench_close(loss, LSTM_LOSS, "LSTM loss")


def test_lstm_gradient_matches_reference(lstm_gradient):
    assert_adbench_close(lstm_gradient, read_values(DATA / "lstm_l2_c1024_gradient.txt"), "LSTM gradient")


def test_lstm_gradient_matches_finite_differences(lstm, lstm_gradient):
    split = lstm.main_params.size

    def loss(flat):
        return lstm_objective(flat[:split].reshape(lstm.main_params.shape),
                              flat[split:].reshape(lstm.extra_params.shape), lstm.state, lstm.sequence)

    point = np.concatenate([lstm.main_params.ravel(), lstm.extra_params.ravel()])
    assert_matches_finite_differences(loss, point, lstm_gradient, np.random.default_rng(12), 2, "LSTM")


# ---------------------------------------------------------------- bundle adjustment


@pytest.fixture(scope="module")
def ba():
    return read_ba(DATA / "ba_test.txt")


def ba_outputs(instance):
    p = instance.w.size
    return np.zeros((p, 2)), np.zeros(p)


def test_ba_residuals_match_reference(ba):
    reproj_err, w_err = ba_outputs(ba)
    ba_residuals(ba.cams, ba.x, ba.w, ba.obs, ba.feats, reproj_err, w_err)
    assert_adbench_close(reproj_err, np.tile(BA_REPROJECTION, (ba.w.size, 1)), "BA reprojection residuals")
    assert_adbench_close(w_err, np.full(ba.w.size, BA_WEIGHT_ERROR), "BA weight residuals")


def ba_jacobian_row(differentiable, instance, row: int) -> np.ndarray:
    """Row `row` of the dense Jacobian (residuals: reprojection (p, 2) flattened, then
    weight errors; columns: cameras, points, weights), by one reverse sweep seeded
    through the shadow of the output arrays."""
    reproj_err, w_err = ba_outputs(instance)
    reproj_adjoint, w_err_adjoint = np.zeros_like(reproj_err), np.zeros_like(w_err)
    if row < reproj_err.size:
        reproj_adjoint.flat[row] = 1.0
    else:
        w_err_adjoint[row - reproj_err.size] = 1.0
    cams_bar, x_bar, w_bar = np.zeros_like(instance.cams), np.zeros_like(instance.x), np.zeros_like(instance.w)
    differentiable.autodiff(
        Duplicated(instance.cams.copy(), cams_bar), Duplicated(instance.x.copy(), x_bar),
        Duplicated(instance.w.copy(), w_bar), Const(instance.obs), Const(instance.feats),
        Duplicated(reproj_err, reproj_adjoint), Duplicated(w_err, w_err_adjoint))
    return np.concatenate([cams_bar.ravel(), x_bar.ravel(), w_bar])


def ba_sparsity(instance):
    """Column indices of each row's non-zeros, in the order of ADBench's values file."""
    n, m, p = instance.cams.shape[0], instance.x.shape[0], instance.w.size
    points_start, weights_start = 11 * n, 11 * n + 3 * m
    pattern = []
    for i in range(p):
        camera, point = instance.obs[i]
        columns = list(range(11 * camera, 11 * camera + 11)) + \
            list(range(points_start + 3 * point, points_start + 3 * point + 3)) + [weights_start + i]
        pattern += [columns, columns]  # both coordinates of the reprojection
    pattern += [[weights_start + i] for i in range(p)]
    return pattern


def test_ba_jacobian_matches_reference(ba):
    differentiable = differentiate(ba_residuals)
    pattern = ba_sparsity(ba)
    jacobian = np.array([ba_jacobian_row(differentiable, ba, row) for row in range(len(pattern))])
    assert jacobian.shape == (30, 62)  # the README's 30 x 62

    on_pattern = np.zeros(jacobian.shape, dtype=bool)
    for row, columns in enumerate(pattern):
        on_pattern[row, columns] = True
    assert np.all(jacobian[~on_pattern] == 0.0), \
        f"non-zeros outside ADBench's sparsity pattern at {np.argwhere((jacobian != 0.0) & ~on_pattern)[:5]}"

    non_zeros = np.concatenate([jacobian[row, columns] for row, columns in enumerate(pattern)])
    assert_adbench_close(non_zeros, read_values(DATA / "ba_test_jacobian_values.txt"), "BA Jacobian")
