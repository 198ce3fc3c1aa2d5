"""The optional comparison frameworks, JAX and PyTorch, loaded once and configured alike.

Both are extras (`pip install -e ".[bench]"`): a missing one gives a blank
column, never a crash. numba and enzpy run on one thread, so JAX and PyTorch
are held to one thread too; otherwise the ratios would measure core counts,
not compilers (and this machine's cores are shared).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

# XLA reads its flags once, when the CPU backend starts; set them before any import of jax.
_ONE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclass
class Framework:
    name: str
    """Column label: "JAX" or "PyTorch"."""
    module: object | None
    """The imported `jax` or `torch`, or None when it cannot be used."""
    version: str
    """Version string, or why it is missing."""

    def describe(self) -> str:
        return self.version if self.module is not None else f"{self.name} {self.version}"


def unavailable(error: Exception) -> str:
    return "not installed" if isinstance(error, ImportError) else f"unusable ({type(error).__name__})"


_loaded: dict[str, Framework] = {}


def load_jax(enabled: bool = True) -> Framework:
    """`jax` with float64 switched on (ADBench and numba work in double precision)."""
    if not enabled:
        return Framework("JAX", None, "disabled")
    if "jax" not in _loaded:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _ONE_THREAD_XLA_FLAGS).strip()
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        try:
            jax = importlib.import_module("jax")
            jax.config.update("jax_enable_x64", True)
            _loaded["jax"] = Framework("JAX", jax, f"jax {jax.__version__}")
        except Exception as error:   # ImportError, or a broken jaxlib install
            _loaded["jax"] = Framework("JAX", None, unavailable(error))
    return _loaded["jax"]


def load_torch(enabled: bool = True) -> Framework:
    """`torch` on the CPU, one intra-op thread."""
    if not enabled:
        return Framework("PyTorch", None, "disabled")
    if "torch" not in _loaded:
        try:
            torch = importlib.import_module("torch")
            torch.set_num_threads(1)
            _loaded["torch"] = Framework("PyTorch", torch, f"torch {torch.__version__}")
        except Exception as error:
            _loaded["torch"] = Framework("PyTorch", None, unavailable(error))
    return _loaded["torch"]
