"""ADBench objectives (GMM, LSTM, bundle adjustment) as numba kernels, and
parsers for ADBench's reference data: external oracles for enzpy's gradients."""
