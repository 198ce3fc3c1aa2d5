"""BA's Jacobian the way Enzyme's ADBench port computes it: one small reverse sweep per residual row.

Enzyme's C port calls `__enzyme_autodiff` on one observation's residuals,
twice per observation (the two reprojection rows) and once for its weight
error: about 95k calls on ba1. From Python each enzpy call would cost the API's
marshalling; inside njit code (`numba_calls.py`) `enzpy.autodiff` is a direct
call of the compiled gradient, so the per-observation form costs what its
sweeps cost. `per_observation_contender` is that form on tests/adbench's
`ba_residuals` restricted to one observation (length-1 slices of the
arrays), with the Jacobian laid out as the other BA contenders return it.
"""

from __future__ import annotations

import numba
import numpy as np

import enzpy
from enzpy import Const, Duplicated
from tests.adbench.objectives import ba_residuals

from .problems import Contender, concatenate


@numba.njit(cache=False)
def per_observation_blocks(cams, x, w, obs, feats, blocks, weight_rows):
    """blocks[i, row] = d (reprojection row of observation i) / d (camera 11, point 3, weight 1);
    weight_rows[i] = d (weight error i) / d w[i]: three reverse sweeps of one observation each."""
    one = np.zeros((1, 2), dtype=obs.dtype)          # observation 0 of the length-1 slices
    d_cam, d_point, d_weight = np.zeros((1, 11)), np.zeros((1, 3)), np.zeros(1)
    reprojection, weight_error = np.zeros((1, 2)), np.zeros(1)
    d_reprojection, d_weight_error = np.zeros((1, 2)), np.zeros(1)
    for i in range(obs.shape[0]):
        camera, point = obs[i, 0], obs[i, 1]
        for row in range(3):
            d_cam[:] = 0.0
            d_point[:] = 0.0
            d_weight[:] = 0.0
            d_reprojection[:] = 0.0
            d_weight_error[:] = 0.0
            if row < 2:
                d_reprojection[0, row] = 1.0
            else:
                d_weight_error[0] = 1.0
            enzpy.autodiff(ba_residuals, Duplicated(cams[camera:camera + 1], d_cam),
                           Duplicated(x[point:point + 1], d_point), Duplicated(w[i:i + 1], d_weight),
                           Const(one), Const(feats[i:i + 1]), Duplicated(reprojection, d_reprojection),
                           Duplicated(weight_error, d_weight_error))
            if row < 2:
                blocks[i, row, :11] = d_cam[0]
                blocks[i, row, 11:14] = d_point[0]
                blocks[i, row, 14] = d_weight[0]
            else:
                weight_rows[i] = d_weight[0]


def per_observation_contender(instance) -> Contender:
    p = instance.w.size

    def call():
        blocks, weight_rows = np.empty((p, 2, 15)), np.empty(p)
        per_observation_blocks(instance.cams, instance.x, instance.w, instance.obs, instance.feats, blocks,
                               weight_rows)
        return blocks, weight_rows

    return Contender(call, concatenate)
