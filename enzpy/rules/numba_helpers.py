"""numba's C helpers, one entry each: what enzpy does when a kernel calls one.

numba's compiled code calls into C for what it does not lower to LLVM itself:
`numba/_helperlib.c` (bound as `numba_<name>`, see `_helpermod.c` and
`numba.core.base._load_global_helpers`), the typed containers in
`numba/cext/`, the random state in `numba/_random.c`, BLAS / LAPACK in
`numba/_lapack.c`, and the NRT (`numba/core/runtime/nrt.cpp`, bound as
`NRT_<name>` by `numba.core.runtime.nrt`, plus the few NRT functions numba
writes in LLVM IR, `nrtdynmod.py`). Every one of them is classified here:

- inactive: moves no float a derivative follows (strides, integers, random
  state, strings, exceptions, reference counts, frees). `rules.calls.is_inactive_call`
  skips these calls, so their pointer operands never make anything active.
- rule: has a differentiation rule elsewhere (math.py / special.py / arithmetic.py
  under the name kernels call, the allocators in calls.py, BLAS in blas.py,
  LAPACK in lapack.py).
- needs a rule: differentiable, but enzpy has no rule yet (np.linalg.eig, qr); a
  call that touches a derivative is refused naming the numpy function.
- unsupported: the derivative would go where enzpy cannot follow it (typed
  containers, Python objects, complex numbers behind pointers).

`describe_helper` names the Python / numpy operation behind a helper, for the
error raised when a call without a rule meets a derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

INACTIVE = "inactive"
RULE = "rule"
NEEDS_RULE = "needs a rule"
UNSUPPORTED = "unsupported"
CLASSIFICATIONS = (INACTIVE, RULE, NEEDS_RULE, UNSUPPORTED)


@dataclass(frozen=True)
class Helper:
    """One C helper numba's code can call."""

    name: str
    """The symbol a kernel's IR calls (`numba_xgesv`, `NRT_MemInfo_alloc`)."""
    classification: str
    """One of CLASSIFICATIONS."""
    reason: str
    """Why, in one line."""
    operation: str | None = None
    """The Python / numpy operation that lowers to this call, where one does."""


HELPERS: dict[str, Helper] = {}


def _add(name: str, classification: str, reason: str, operation: str | None = None) -> None:
    assert classification in CLASSIFICATIONS and name not in HELPERS, name
    HELPERS[name] = Helper(name, classification, reason, operation)


# -- _helperlib.c: arithmetic and math ----------------------------------------------------------

# numba binds these to the libm names too (`ll.add_symbol("sin", ...)`); kernels call the
# libm name or the llvm intrinsic, which is where the rules are registered.
_LIBM = ("sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh",
         "exp", "expm1", "sqrt", "fabs", "floor", "ceil", "log", "log10", "log1p", "round", "trunc",
         "pow", "fmod", "atan2")
for _base in _LIBM:
    for _name in (_base, _base + "f"):
        _add(f"numba_{_name}", RULE, f"libm `{_name}` under numba's name; kernels call `{_name}`, "
             "whose rule is in rules/math.py (fmod: arithmetic.py)", f"math.{_base}")

_add("numba_fixed_fmod", RULE, "fmod with Python's sign (Windows builds); same partials as frem "
     "(rules/arithmetic.py)", "math.fmod / %")
_add("numba_fixed_fmodf", RULE, "float32 numba_fixed_fmod", "math.fmod / %")
_add("numba_set_fnclex", INACTIVE, "installs the FPU-exception-clearing function (Windows); no data")
for _name in ("sdiv", "srem", "udiv", "urem"):
    _add(f"numba_{_name}", INACTIVE, "64-bit integer division on 32-bit targets: integers only", "// and %")
_add("numba_fptoui", INACTIVE, "float -> unsigned integer conversion: an integer result has no derivative")
_add("numba_fptouif", INACTIVE, "float32 -> unsigned integer conversion: an integer result has no derivative")
_add("numba_frexp", RULE, "mantissa and exponent; rule in rules/math.py", "math.frexp")
_add("numba_frexpf", RULE, "float32 numba_frexp; rule in rules/math.py", "math.frexp")
_add("numba_ldexp", RULE, "x * 2**e; rule in rules/math.py", "math.ldexp")
_add("numba_ldexpf", RULE, "float32 numba_ldexp; rule in rules/math.py", "math.ldexp")
_add("numba_nextafter", RULE, "next float towards y; rule in rules/math.py", "np.nextafter / np.spacing")
_add("numba_nextafterf", RULE, "float32 numba_nextafter; rule in rules/math.py", "np.nextafter / np.spacing")
_add("numba_gamma", RULE, "Gamma function; rule in rules/special.py", "math.gamma")
_add("numba_gammaf", RULE, "float32 numba_gamma; rule in rules/special.py", "math.gamma")
for _name, _libm in (("erf", "erf"), ("erfc", "erfc"), ("lgamma", "lgamma")):
    for _suffix in ("", "f"):
        _add(f"numba_{_name}{_suffix}", RULE, f"exported, but math.{_name} lowers to libm `{_libm}{_suffix}`, "
             "whose rule is in rules/special.py", f"math.{_name}")
_add("numba_cpow", UNSUPPORTED, "complex power through pointers to complex pairs: complex arithmetic "
     "is not differentiated", "** on complex numbers")
_add("numba_cpowf", UNSUPPORTED, "complex64 numba_cpow", "** on complex numbers")

# -- _helperlib.c: arrays, records, Python objects, exceptions ----------------------------------

_add("numba_attempt_nocopy_reshape", INACTIVE, "computes the strides of a reshaped view from shape and "
     "strides (integers only); the data pointer is carried by the IR", "ndarray.reshape / np.reshape / ravel")
_add("numba_adapt_ndarray", UNSUPPORTED, "unboxes a Python array (objmode / wrapper): its data comes from "
     "Python, where no derivative is followed", "an array returned from object mode")
_add("numba_ndarray_new", UNSUPPORTED, "boxes an array into a Python object: the derivative would leave "
     "the kernel", "an array passed to object mode")
_add("numba_get_buffer", UNSUPPORTED, "reads a Python buffer (objmode / wrapper): data from Python",
     "a buffer from object mode")
_add("numba_adapt_buffer", UNSUPPORTED, "turns a Python buffer into an array struct: data from Python",
     "a buffer from object mode")
_add("numba_release_buffer", INACTIVE, "releases a Python buffer; moves no data")
_add("numba_complex_adaptor", UNSUPPORTED, "unboxes a Python complex: data from Python", "a complex from object mode")
_add("numba_extract_record_data", UNSUPPORTED, "unboxes a numpy record: its fields come from Python",
     "a record from object mode")
_add("numba_recreate_record", UNSUPPORTED, "boxes a record into a Python object: the derivative would leave "
     "the kernel", "a record passed to object mode")
for _name in ("extract_np_datetime", "extract_np_timedelta", "create_np_datetime", "create_np_timedelta"):
    _add(f"numba_{_name}", INACTIVE, "datetime64 / timedelta64 (int64) to or from Python: integers only")
_add("numba_gil_ensure", INACTIVE, "takes the GIL; no data")
_add("numba_gil_release", INACTIVE, "releases the GIL; no data")
_add("numba_fatal_error", INACTIVE, "aborts the process; no data")
_add("numba_py_type", INACTIVE, "the type object of a Python object; no floats")
_add("numba_unpack_slice", INACTIVE, "start / stop / step of a Python slice: integers only")
_add("numba_do_raise", INACTIVE, "raises the kernel's exception (error path); no derivative")
_add("numba_unpickle", INACTIVE, "unpickles an exception's constant arguments (error path)")
_add("numba_runtime_build_excinfo_struct", INACTIVE, "builds a dynamic exception's arguments (error path)")
for _name in ("get_pyobject_private_data", "set_pyobject_private_data", "reset_pyobject_private_data"):
    _add(f"numba_{_name}", INACTIVE, "the dispatcher's per-object typeof cache: a pointer, no floats")
_add("numba_gdb_breakpoint", INACTIVE, "a debugger breakpoint; no data", "numba.gdb_breakpoint()")
_add("numba_make_generator", UNSUPPORTED, "boxes a generator into a Python object (_dynfunc.c): "
     "generators are not differentiated", "a generator returned to Python")

# -- _random.c: the random state ----------------------------------------------------------------

for _name, _operation in (("get_py_random_state", "random.*"), ("get_np_random_state", "np.random.*"),
                          ("get_internal_random_state", "np.random.* (internal state)")):
    _add(f"numba_{_name}", INACTIVE, "pointer to a Mersenne Twister state: random numbers do not depend on "
         "the kernel's inputs", _operation)
_add("numba_rnd_shuffle", INACTIVE, "refills the Mersenne Twister state (integers only)", "random.* / np.random.*")
_add("numba_rnd_init", INACTIVE, "seeds the Mersenne Twister state (integers only)", "random.seed / np.random.seed")
_add("numba_poisson_ptrs", INACTIVE, "draws a Poisson sample: an integer result has no derivative",
     "np.random.poisson")

# -- _helperlib.c: unicode ----------------------------------------------------------------------

_add("numba_extract_unicode", INACTIVE, "unboxes a Python str (length, kind, data): characters only")
_add("numba_gettyperecord", INACTIVE, "unicode character properties (str.upper, isdigit, ...): integers only")
_add("numba_get_PyUnicode_ExtendedCase", INACTIVE, "unicode case-mapping table entry: integers only")

# -- cext/dictobject.c, listobject.c, setobject.c: typed containers -----------------------------
# Bookkeeping calls move no element; the calls that copy elements in or out would carry a
# float's derivative through memory enzpy has no shadow for.

_DICT_MOVES = {"dict_lookup": "d[k] / d.get / k in d", "dict_insert": "d[k] = v",
               "dict_insert_ez": "d[k] = v", "dict_popitem": "d.popitem() / d.pop",
               "dict_iter_next": "iterating a typed dict"}
for _name, _operation in _DICT_MOVES.items():
    _add(f"numba_{_name}", UNSUPPORTED, "copies typed-dict keys / values in or out: typed containers carry "
         "no derivatives", f"{_operation} (numba.typed.Dict)")
for _name in ("test_dict", "dict_new_sized", "dict_set_method_table", "dict_free", "dict_length",
              "dict_delitem", "dict_iter_sizeof", "dict_iter", "dict_dump"):
    _add(f"numba_{_name}", INACTIVE, "typed-dict bookkeeping (create, size, delete, iterator set-up): "
         "moves no element out")
_LIST_MOVES = {"list_setitem": "l[i] = v", "list_getitem": "l[i]",
               "list_delitem": "del l[i] / l.pop", "list_delete_slice": "del l[a:b]",
               "list_iter_next": "iterating a typed list"}
for _name, _operation in _LIST_MOVES.items():
    _add(f"numba_{_name}", UNSUPPORTED, "copies or exposes typed-list elements: no rule yet (typed lists "
         "of floats and of arrays support creation, append, len and indexing)", f"{_operation} (numba.typed.List)")
_add("numba_list_new", RULE, "creates a typed list: a shadow list is created with it (rules/typed_lists.py)",
     "numba.typed.List()")
_add("numba_list_append", RULE, "copies an item into a typed list: a float or an array is mirrored on the "
     "shadow list (rules/typed_lists.py); other items (tuples) have no rule yet", "l.append(v) (numba.typed.List)")
_add("numba_list_base_ptr", RULE, "where a typed list's items are: the shadow list's items are its shadow "
     "(rules/typed_lists.py)", "l[i] (numba.typed.List)")
_add("numba_list_set_method_table", RULE, "gives a typed list its items' incref and decref: forward mode sets "
     "it on the shadow list too (rules/typed_lists.py)")
for _name in ("test_list", "list_free", "list_size_address",
              "list_length", "list_allocated", "list_is_mutable", "list_set_is_mutable", "list_iter_sizeof",
              "list_iter"):
    _add(f"numba_{_name}", INACTIVE, "typed-list bookkeeping (create, size, flags, iterator set-up): "
         "moves no element")
_add("numba_set_add", UNSUPPORTED, "copies a key into a typed set: typed containers carry no derivatives",
     "s.add(v) (typed set)")
_add("numba_set_iter_next", UNSUPPORTED, "yields typed-set keys: typed containers carry no derivatives",
     "iterating a typed set")
for _name in ("test_set", "set_new", "set_new_sized", "set_set_method_table", "set_free", "set_length",
              "set_contains", "set_discard", "set_iter_sizeof", "set_iter", "set_dump"):
    _add(f"numba_{_name}", INACTIVE, "typed-set bookkeeping or membership (a bool result): moves no key out")

# -- _lapack.c: BLAS (rules in rules/blas.py) and LAPACK (rules in rules/lapack.py) -------------

BLAS_OPERATIONS = {
    "numba_xxdot": "np.dot / np.vdot / @ of two vectors",
    "numba_xxgemv": "np.dot / @ of a matrix and a vector",
    "numba_xxgemm": "np.dot / @ of two matrices",
    "numba_xxnrm2": "np.linalg.norm of a vector",
}
for _name in ("numba_xxdot", "numba_xxgemv", "numba_xxgemm", "numba_xxnrm2"):
    _add(_name, RULE, f"BLAS {_name[8:]}: a memory-call rule in rules/blas.py", BLAS_OPERATIONS[_name])

# Which np.linalg function lowers to which helper: numba/np/linalg.py.
LAPACK_OPERATIONS = {
    "numba_xxgetrf": "np.linalg.inv / np.linalg.det / np.linalg.slogdet",
    "numba_ez_xxgetri": "np.linalg.inv",
    "numba_xxpotrf": "np.linalg.cholesky",
    "numba_ez_rgeev": "np.linalg.eig / np.linalg.eigvals",
    "numba_ez_cgeev": "np.linalg.eig / np.linalg.eigvals (complex)",
    "numba_ez_xxxevd": "np.linalg.eigh / np.linalg.eigvalsh",
    "numba_ez_gesdd": "np.linalg.svd / np.linalg.pinv / np.linalg.matrix_rank / np.linalg.cond / "
                      "np.linalg.norm (ord=2, -2 or 'nuc' of a matrix)",
    "numba_ez_geqrf": "np.linalg.qr",
    "numba_ez_xxgqr": "np.linalg.qr",
    "numba_ez_gelsd": "np.linalg.lstsq",
    "numba_xgesv": "np.linalg.solve",
}
_LAPACK_RULES = {"numba_xgesv": "gesv (linear solve)", "numba_xxgetrf": "getrf (LU)",
                 "numba_ez_xxgetri": "getri (inverse from LU)", "numba_xxpotrf": "potrf (Cholesky)",
                 "numba_ez_xxxevd": "syevd (symmetric eigenproblem; distinct eigenvalues)",
                 "numba_ez_gesdd": "gesdd (SVD; distinct singular values)",
                 "numba_ez_gelsd": "gelsd (least squares; full rank)"}
for _name, _routine in _LAPACK_RULES.items():
    _add(_name, RULE, f"LAPACK {_routine}: a memory-call rule in rules/lapack.py (real kinds; complex "
         "refused by name)", LAPACK_OPERATIONS[_name])
_add("numba_ez_rgeev", NEEDS_RULE, "LAPACK geev (nonsymmetric eigenproblem): complex eigenvalues and "
     "eigenvectors of a real matrix; no differentiation rule yet (np.linalg.eigh has one, for symmetric "
     "matrices)", LAPACK_OPERATIONS["numba_ez_rgeev"])
_add("numba_ez_cgeev", UNSUPPORTED, "LAPACK geev of a complex matrix: complex arithmetic is not differentiated",
     LAPACK_OPERATIONS["numba_ez_cgeev"])
for _name, _routine in (("numba_ez_geqrf", "geqrf (QR factorization)"), ("numba_ez_xxgqr", "orgqr (Q of QR)")):
    _add(_name, NEEDS_RULE, f"LAPACK {_routine}: overwrites its array operands in place; no differentiation "
         "rule yet", LAPACK_OPERATIONS[_name])

# -- the NRT ------------------------------------------------------------------------------------

for _name in ("NRT_MemInfo_alloc", "NRT_MemInfo_alloc_aligned", "NRT_MemInfo_alloc_safe",
              "NRT_MemInfo_alloc_safe_aligned"):
    _add(_name, RULE, "allocates an array's MemInfo and data: a zeroed shadow allocation (rules/calls.py)",
         "np.empty / np.zeros / array expressions")
_add("NRT_Allocate", RULE, "raw allocation: a zeroed shadow buffer (rules/calls.py)")
_add("NRT_MemInfo_alloc_dtor", UNSUPPORTED, "allocation with a destructor (jitclass, structref, containers): "
     "its contents get no shadow, except a typed list's MemInfo (rules/typed_lists.py)",
     "a jitclass / structref instance")
_add("NRT_MemInfo_alloc_dtor_safe", UNSUPPORTED, "allocation with a destructor (jitclass, structref, "
     "containers): its contents get no shadow", "a jitclass / structref instance")
_add("NRT_MemInfo_alloc_safe_aligned_external", UNSUPPORTED, "allocation through a user's external "
     "allocator: no shadow allocation for it", "an array from an external allocator")
_add("NRT_MemInfo_new_varsize", RULE, "resizable buffer (strings, reflected lists): a zeroed shadow "
     "buffer of the same size (rules/lists.py)", "str / list building")
_add("NRT_MemInfo_new_varsize_dtor", RULE, "resizable buffer with a destructor (reflected lists, sets): "
     "a zeroed shadow buffer of the same size (rules/lists.py)", "a list / set literal")
_add("NRT_MemInfo_varsize_alloc", UNSUPPORTED, "(re)allocates a resizable buffer's data: no shadow for it",
     "list / set growth")
_add("NRT_MemInfo_varsize_realloc", RULE, "grows or shrinks a resizable buffer, copying its contents: "
     "the shadow grows with it and never shrinks (rules/lists.py)", "list.append / list.pop")
_add("NRT_MemInfo_varsize_free", INACTIVE, "frees a resizable buffer's data")
_add("NRT_MemInfo_call_dtor", INACTIVE, "frees a MemInfo (refcount reached zero)")
_add("NRT_MemInfo_release", INACTIVE, "drops a MemInfo reference")
_add("NRT_Free", INACTIVE, "frees a raw allocation")
_add("NRT_MemInfo_data", UNSUPPORTED, "returns a MemInfo's data pointer out of C: enzpy follows the inline "
     "NRT_MemInfo_data_fast numba normally uses, not this")
_add("NRT_get_api", INACTIVE, "the NRT's function table for C extensions; no data")
_add("_nrt_get_sample_external_allocator", INACTIVE, "a test allocator's address; no data")
for _name in ("NRT_adapt_ndarray_from_python", "NRT_adapt_buffer_from_python", "NRT_meminfo_from_pyobject"):
    _add(_name, UNSUPPORTED, "unboxes a Python object's data (wrapper / objmode): data from Python",
         "an array from object mode")
for _name in ("NRT_adapt_ndarray_to_python_acqref", "NRT_meminfo_as_pyobject", "NRT_meminfo_new_from_pyobject"):
    _add(_name, UNSUPPORTED, "boxes data into a Python object (wrapper / objmode): the derivative would "
         "leave the kernel", "an array passed to object mode")
# Written in LLVM IR by numba (nrtdynmod.py) and linked into every kernel's module.
_add("NRT_incref", INACTIVE, "reference count +1 (IR in nrtdynmod.py)")
_add("NRT_decref", INACTIVE, "reference count -1, frees at zero (IR in nrtdynmod.py)")
for _name in ("nrt_atomic_add", "nrt_atomic_sub", "nrt_atomic_cas"):
    _add(_name, INACTIVE, "atomic reference-count arithmetic (IR in nrtdynmod.py): integers only")
_add("nrt_unresolved_abort", INACTIVE, "aborts on an unresolved symbol (error path)")
_add("NRT_MemInfo_data_fast", RULE, "loads a MemInfo's data pointer (IR in nrtdynmod.py): the frontend "
     "links its body, which is differentiated as ordinary loads")


INACTIVE_HELPERS = frozenset(name for name, helper in HELPERS.items() if helper.classification == INACTIVE)
"""Helper calls that no derivative goes through (`rules.calls.is_inactive_call`)."""


def classify(name: str) -> Helper | None:
    """The table entry of a helper, or None for a function that is not one of numba's helpers."""
    return HELPERS.get(name)


def describe_helper(name: str) -> str | None:
    """The operation a helper call stands for, as an error message should name it.

    `"np.linalg.solve (numba_xgesv: LAPACK gesv (linear solve): ... no differentiation
    rule yet)"`; None for names that are not numba helpers, so a caller can write
    `describe_helper(name) or repr(name)`.
    """
    helper = HELPERS.get(name)
    if helper is None:
        return None
    detail = f"{helper.name}: {helper.reason}"
    return f"{helper.operation} ({detail})" if helper.operation else detail
