"""enzpy's own IR: read from LLVM, transformed in Python, written back as LLVM text."""

from .core import *  # noqa: F401,F403
from .reader import parse_module, read_module  # noqa: F401
from .writer import write_function, write_module  # noqa: F401
