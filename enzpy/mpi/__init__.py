"""MPI in kernels: the calls recognized in numba's IR (`recognition.py`), the contract of a
gradient on every rank (`ranks.py`); the adjoint rules are `rules/mpi.py`.

numba-mpi calls MPI through ctypes function pointers, so numba's IR holds the
routines' addresses, not their names. enzpy asks the dynamic linker which
symbol each address is (`dladdr`), so it needs neither numba-mpi (GPL-3.0:
an optional extra for examples and tests) nor a table per MPI; mpi4py, when
present, names the datatype and operation handles.
"""

from .recognition import mentions_mpi_routine, mpi_routines_in, name_mpi_calls  # noqa: F401
