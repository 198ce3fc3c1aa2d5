"""ADBench's objectives written as numba kernels, the way a scientist would:
explicit loops over numpy arrays, scratch arrays from np.empty, no BLAS.

Each follows ADBench's C++ reference (src/cpp/shared/gmm.h, lstm.h, ba.h in
microsoft/ADBench) operation by operation, so values agree to rounding and the
reference derivatives apply unchanged, including ADBench's quirks.
"""

import math

import numba
import numpy as np


# ---------------------------------------------------------------- GMM


@numba.njit
def log_sum_exp(values):
    # Shifted by the maximum, as ADBench does, so exp cannot overflow.
    largest = values[0]
    for i in range(1, values.shape[0]):
        largest = max(largest, values[i])
    total = 0.0
    for i in range(values.shape[0]):
        total += math.exp(values[i] - largest)
    return math.log(total) + largest


@numba.njit
def multigammaln(a, p):
    # log of the multivariate gamma function Gamma_p(a), ADBench's log_gamma_distrib.
    out = 0.25 * p * (p - 1) * math.log(math.pi)
    for j in range(1, p + 1):
        out += math.lgamma(a + 0.5 * (1 - j))
    return out


@numba.njit
def gmm_objective(alphas, means, icf, x, wishart_gamma, wishart_m):
    """Negative log-likelihood-like GMM objective with a Wishart prior (ADBench).

    alphas (k,), means (k, d), icf (k, d*(d+1)/2), x (n, d). Component ik has
    the inverse-covariance factor Q = diag(exp(icf[ik, :d])) plus the strict
    lower triangle icf[ik, d:], stored column by column.
    """
    k, d = means.shape
    n = x.shape[0]
    constant = -n * d * 0.5 * math.log(2.0 * math.pi)

    # sum of log-diagonals (log det Q) and the exp'd diagonals, once per component
    sum_qs = np.empty(k)
    q_diagonals = np.empty((k, d))
    for ik in range(k):
        sum_qs[ik] = 0.0
        for id_ in range(d):
            sum_qs[ik] += icf[ik, id_]
            q_diagonals[ik, id_] = math.exp(icf[ik, id_])

    centered = np.empty(d)
    q_times_centered = np.empty(d)
    main_term = np.empty(k)
    slse = 0.0
    for ix in range(n):
        for ik in range(k):
            for id_ in range(d):
                centered[id_] = x[ix, id_] - means[ik, id_]
                q_times_centered[id_] = q_diagonals[ik, id_] * centered[id_]
            # lower triangle walked column by column, matching icf's storage
            lower_index = d
            for i in range(d):
                for j in range(i + 1, d):
                    q_times_centered[j] += icf[ik, lower_index] * centered[i]
                    lower_index += 1
            squared_norm = 0.0
            for id_ in range(d):
                squared_norm += q_times_centered[id_] * q_times_centered[id_]
            main_term[ik] = alphas[ik] + sum_qs[ik] - 0.5 * squared_norm
        slse += log_sum_exp(main_term)

    err = constant + slse - n * log_sum_exp(alphas)

    # Wishart prior on the inverse covariances
    prior_n = d + wishart_m + 1
    prior_constant = prior_n * d * (math.log(wishart_gamma) - 0.5 * math.log(2.0)) - \
        multigammaln(0.5 * prior_n, d)
    prior = 0.0
    for ik in range(k):
        frobenius = 0.0
        for id_ in range(d):
            frobenius += q_diagonals[ik, id_] * q_diagonals[ik, id_]
        for i in range(d, icf.shape[1]):
            frobenius += icf[ik, i] * icf[ik, i]
        prior += 0.5 * wishart_gamma * wishart_gamma * frobenius - wishart_m * sum_qs[ik]
    return err + prior - k * prior_constant


# ---------------------------------------------------------------- LSTM


@numba.njit
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit
def lstm_objective(main_params, extra_params, state, sequence):
    """ADBench's LSTM loss: mean cross-entropy of next-character predictions.

    main_params (2*l, 4*b): per layer a weight row then a bias row, each split in
    forget, ingate, outgate, change blocks; extra_params (3, b): in_weight,
    out_weight, out_bias; state (2*l, b): per layer hidden then cell (copied, as
    the C++ takes it by value); sequence (c, b).
    """
    layers = main_params.shape[0] // 2
    b = main_params.shape[1] // 4
    chars = sequence.shape[0]
    hidden_cell = state.copy()
    layer_input = np.empty(b)
    prediction = np.empty(b)
    total = 0.0
    count = 0
    for t in range(chars - 1):
        for i in range(b):
            layer_input[i] = sequence[t, i] * extra_params[0, i]
        for layer in range(layers):
            weight = 2 * layer
            bias = 2 * layer + 1
            hidden = 2 * layer
            cell = 2 * layer + 1
            # ADBench's "LSTM" gates each unit by its own input/hidden only (no matrices).
            for i in range(b):
                forget = sigmoid(layer_input[i] * main_params[weight, i] + main_params[bias, i])
                ingate = sigmoid(hidden_cell[hidden, i] * main_params[weight, b + i] + main_params[bias, b + i])
                outgate = sigmoid(layer_input[i] * main_params[weight, 2 * b + i] + main_params[bias, 2 * b + i])
                change = math.tanh(hidden_cell[hidden, i] * main_params[weight, 3 * b + i] +
                                   main_params[bias, 3 * b + i])
                hidden_cell[cell, i] = hidden_cell[cell, i] * forget + ingate * change
                hidden_cell[hidden, i] = outgate * math.tanh(hidden_cell[cell, i])
            # the next layer reads this layer's hidden state
            for i in range(b):
                layer_input[i] = hidden_cell[hidden, i]
        for i in range(b):
            prediction[i] = layer_input[i] * extra_params[1, i] + extra_params[2, i]

        # ADBench's quirk: 2 is added inside the log of the normaliser.
        normaliser = 0.0
        for i in range(b):
            normaliser += math.exp(prediction[i])
        log_normaliser = math.log(normaliser + 2.0)
        for i in range(b):
            total += sequence[t + 1, i] * (prediction[i] - log_normaliser)
        count += b
    return -total / count


# ---------------------------------------------------------------- bundle adjustment


@numba.njit
def ba_residuals(cams, x, w, obs, feats, reproj_err, w_err):
    """ADBench's bundle-adjustment residuals, written into reproj_err (p, 2) and w_err (p,).

    cams (n, 11): Rodrigues rotation 3, centre 3, focal, principal point 2,
    radial distortion 2; x (m, 3); w (p,); obs (p, 2) camera and point indices;
    feats (p, 2).
    """
    p = obs.shape[0]
    for i in range(p):
        cam = obs[i, 0]
        point = obs[i, 1]
        # point relative to the camera centre
        x0 = x[point, 0] - cams[cam, 3]
        x1 = x[point, 1] - cams[cam, 4]
        x2 = x[point, 2] - cams[cam, 5]
        r0 = cams[cam, 0]
        r1 = cams[cam, 1]
        r2 = cams[cam, 2]
        squared_angle = r0 * r0 + r1 * r1 + r2 * r2
        if squared_angle != 0.0:
            # Rodrigues' formula in Ceres' form, as ADBench
            angle = math.sqrt(squared_angle)
            cos_angle = math.cos(angle)
            sin_angle = math.sin(angle)
            inverse_angle = 1.0 / angle
            a0 = r0 * inverse_angle
            a1 = r1 * inverse_angle
            a2 = r2 * inverse_angle
            along_axis = (a0 * x0 + a1 * x1 + a2 * x2) * (1.0 - cos_angle)
            y0 = x0 * cos_angle + (a1 * x2 - a2 * x1) * sin_angle + a0 * along_axis
            y1 = x1 * cos_angle + (a2 * x0 - a0 * x2) * sin_angle + a1 * along_axis
            y2 = x2 * cos_angle + (a0 * x1 - a1 * x0) * sin_angle + a2 * along_axis
        else:
            # first-order rotation near the identity
            y0 = x0 + (r1 * x2 - r2 * x1)
            y1 = x1 + (r2 * x0 - r0 * x2)
            y2 = x2 + (r0 * x1 - r1 * x0)
        u = y0 / y2
        v = y1 / y2
        squared_radius = u * u + v * v
        distortion = 1.0 + cams[cam, 9] * squared_radius + cams[cam, 10] * squared_radius * squared_radius
        u = u * distortion
        v = v * distortion
        reproj_err[i, 0] = w[i] * (u * cams[cam, 6] + cams[cam, 7] - feats[i, 0])
        reproj_err[i, 1] = w[i] * (v * cams[cam, 6] + cams[cam, 8] - feats[i, 1])
    for i in range(p):
        w_err[i] = 1.0 - w[i] * w[i]
