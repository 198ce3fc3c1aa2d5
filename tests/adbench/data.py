"""Parsers for the ADBench reference files in shared/adbench (see its README.md).

Arrays are returned in row-major shapes whose flattening is exactly ADBench's
flat layout, so a gradient can be compared with a reference by `.ravel()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def adbench_dir() -> Path | None:
    """The reference-data folder, or None when it is not on this machine.

    The checkout sits next to `shared/` in the workspace; elsewhere (CI, another
    layout) the folder can be named with ENZPY_ADBENCH_DIR.
    """
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "adbench"
    if beside_checkout.is_dir():
        return beside_checkout
    from_environment = os.environ.get("ENZPY_ADBENCH_DIR")
    if from_environment and Path(from_environment).is_dir():
        return Path(from_environment)
    return None


def _numbers(text: str) -> list[str]:
    # The gradient/Jacobian files separate values with ", ", the instances with blanks.
    return text.replace(",", " ").split()


@dataclass(frozen=True)
class GmmInstance:
    alphas: np.ndarray  # (k,) log mixture weights, unnormalised
    means: np.ndarray  # (k, d)
    icf: np.ndarray  # (k, d*(d+1)/2): d log-diagonal entries, then the strict lower triangle by columns
    x: np.ndarray  # (n, d) points
    wishart_gamma: float
    wishart_m: int


def read_gmm(path: Path) -> GmmInstance:
    tokens = _numbers(path.read_text())
    d, k, n = (int(t) for t in tokens[:3])
    values = iter(tokens[3:])

    def take(count: int) -> np.ndarray:
        return np.array([float(next(values)) for _ in range(count)])

    alphas = take(k)
    means = take(k * d).reshape(k, d)
    icf = take(k * (d * (d + 1) // 2)).reshape(k, d * (d + 1) // 2)
    x = take(n * d).reshape(n, d)
    wishart_gamma = float(next(values))
    wishart_m = int(float(next(values)))
    return GmmInstance(alphas, means, icf, x, wishart_gamma, wishart_m)


@dataclass(frozen=True)
class LstmInstance:
    layers: int
    chars: int
    bits: int
    main_params: np.ndarray  # (2*layers, 4*bits): per layer a weight row then a bias row,
    # each split in forget, ingate, outgate, change blocks of `bits`
    extra_params: np.ndarray  # (3, bits): in_weight, out_weight, out_bias
    state: np.ndarray  # (2*layers, bits): per layer hidden then cell
    sequence: np.ndarray  # (chars, bits)


def read_lstm(path: Path) -> LstmInstance:
    tokens = _numbers(path.read_text())
    layers, chars, bits = (int(t) for t in tokens[:3])
    values = np.array([float(t) for t in tokens[3:]])
    sizes = [2 * layers * 4 * bits, 3 * bits, 2 * layers * bits, chars * bits]
    if values.size != sum(sizes):
        raise ValueError(f"{path}: expected {sum(sizes)} values after the header, found {values.size}")
    main, extra, state, sequence = np.split(values, np.cumsum(sizes)[:-1])
    return LstmInstance(layers, chars, bits, main.reshape(2 * layers, 4 * bits), extra.reshape(3, bits),
                        state.reshape(2 * layers, bits), sequence.reshape(chars, bits))


def read_values(path: Path) -> np.ndarray:
    """A flat list of numbers: lstm_l2_c1024_gradient.txt, ba_test_jacobian_values.txt."""
    return np.array([float(t) for t in _numbers(path.read_text())])


@dataclass(frozen=True)
class BaInstance:
    cams: np.ndarray  # (n, 11): Rodrigues rotation 3, centre 3, focal 1, principal point 2, radial distortion 2
    x: np.ndarray  # (m, 3) points
    w: np.ndarray  # (p,) observation weights
    obs: np.ndarray  # (p, 2) int: camera index, point index
    feats: np.ndarray  # (p, 2) measured features


def read_ba(path: Path) -> BaInstance:
    """The file holds one camera, point, weight and feature; ADBench replicates
    them, and observation i sees camera i % n and point i % m."""
    tokens = _numbers(path.read_text())
    n, m, p = (int(t) for t in tokens[:3])
    values = np.array([float(t) for t in tokens[3:]])
    if values.size != 11 + 3 + 1 + 2:
        raise ValueError(f"{path}: expected 17 values after the header, found {values.size}")
    cam, point, weight, feature = values[:11], values[11:14], values[14], values[15:17]
    observations = np.arange(p)
    obs = np.stack([observations % n, observations % m], axis=1).astype(np.int64)
    return BaInstance(np.tile(cam, (n, 1)), np.tile(point, (m, 1)), np.full(p, weight), obs,
                      np.tile(feature, (p, 1)))
