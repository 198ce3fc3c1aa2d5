"""BA's Jacobian the way Enzyme's ADBench port computes it: one small reverse sweep per residual row.

Enzyme's C port calls `__enzyme_autodiff` on one observation's residuals,
twice per observation (the two reprojection rows) and once for its weight
error: about 95k calls on ba1. From Python each enzpy call would cost the
API's marshalling; inside njit code (`numba_calls.py`) `enzpy.autodiff` is a
direct call of the compiled gradient. Its inputs here are scalars (`Active`:
15 derivatives returned), not slices of the arrays: a numba array argument
costs a struct and reference counting per call, which on ba1 alone took
about 11 ms for the 95k calls' primal runs, three times the C path's whole
Jacobian. `reprojection_row` is tests/adbench's `ba_residuals` for one
observation and one row, written for scalars.
"""

from __future__ import annotations

import math

import numba
import numpy as np

import enzpy
from enzpy import Active, Const

from .problems import Contender, concatenate


@numba.njit
def reprojection_row(r0, r1, r2, c0, c1, c2, focal, u0, v0, k1, k2, p0, p1, p2, w, feature, row):
    """Row `row` of one observation's reprojection error: camera (Rodrigues r, centre c, focal,
    principal point u0 v0, distortion k1 k2), point p, weight w, the feature's coordinate."""
    x0, x1, x2 = p0 - c0, p1 - c1, p2 - c2
    squared_angle = r0 * r0 + r1 * r1 + r2 * r2
    if squared_angle != 0.0:
        angle = math.sqrt(squared_angle)
        cos_angle, sin_angle = math.cos(angle), math.sin(angle)
        a0, a1, a2 = r0 / angle, r1 / angle, r2 / angle
        along_axis = (a0 * x0 + a1 * x1 + a2 * x2) * (1.0 - cos_angle)
        y0 = x0 * cos_angle + (a1 * x2 - a2 * x1) * sin_angle + a0 * along_axis
        y1 = x1 * cos_angle + (a2 * x0 - a0 * x2) * sin_angle + a1 * along_axis
        y2 = x2 * cos_angle + (a0 * x1 - a1 * x0) * sin_angle + a2 * along_axis
    else:
        y0, y1, y2 = x0 + (r1 * x2 - r2 * x1), x1 + (r2 * x0 - r0 * x2), x2 + (r0 * x1 - r1 * x0)
    u, v = y0 / y2, y1 / y2
    squared_radius = u * u + v * v
    distortion = 1.0 + k1 * squared_radius + k2 * squared_radius * squared_radius
    if row == 0:
        return w * (u * distortion * focal + u0 - feature)
    return w * (v * distortion * focal + v0 - feature)


@numba.njit
def weight_error(w):
    return 1.0 - w * w


@numba.njit
def per_observation_blocks(cams, x, w, obs, feats, blocks, weight_rows):
    """blocks[i, row] = d (reprojection row of observation i) / d (camera 11, point 3, weight 1);
    weight_rows[i] = d (weight error i) / d w[i]: three reverse sweeps of one observation each."""
    for i in range(obs.shape[0]):
        c, p = cams[obs[i, 0]], x[obs[i, 1]]
        for row in range(2):
            d = enzpy.autodiff(reprojection_row, Active(c[0]), Active(c[1]), Active(c[2]), Active(c[3]),
                               Active(c[4]), Active(c[5]), Active(c[6]), Active(c[7]), Active(c[8]), Active(c[9]),
                               Active(c[10]), Active(p[0]), Active(p[1]), Active(p[2]), Active(w[i]),
                               Const(feats[i, row]), Const(row))
            for j in range(15):
                blocks[i, row, j] = d[j]
        weight_rows[i] = enzpy.autodiff(weight_error, Active(w[i]))[0]


def per_observation_contender(instance) -> Contender:
    p = instance.w.size

    def call():
        blocks, weight_rows = np.empty((p, 2, 15)), np.empty(p)
        per_observation_blocks(instance.cams, instance.x, instance.w, instance.obs, instance.feats, blocks,
                               weight_rows)
        return blocks, weight_rows

    return Contender(call, concatenate)
