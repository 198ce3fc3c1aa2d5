"""Every registered scalar rule against finite differences of its own primal.

The cases are generated from the registry: a rule is tested the moment it is
registered, under every key (intrinsic, libm double, libm float) and, for
intrinsics and instructions, at both double and float. Each case JIT-compiles
one small module holding the primal, its double-precision twin (the reference
the finite differences are taken on) and one function per operand returning
the rule's partial. A registered rule without sample points fails.
"""

from __future__ import annotations

import ctypes
import math
import struct
from dataclasses import dataclass

import pytest
from numba.core.registry import cpu_target

from enzpy.errors import DifferentiationError
from enzpy.ir import core, write_module
from enzpy.ir.builder import Builder
from enzpy.ir.types import DOUBLE, FLOAT, I1, I32, PTR, FunctionType, Type
from enzpy.jit import CompiledModule
from enzpy.rules import missing_rule_error, registered_rules, rule_key, scalar_rule
from enzpy.rules.special import digamma_function

# numba's C helpers (numba_gamma, numba_ldexp, numba_nextafter) become symbols
# the JIT can resolve once numba's CPU target is initialized.
cpu_target.target_context

# Points inside each rule's domain, away from kinks and jumps by much more than
# the finite-difference steps, keyed by rule name (the rule's first key).
# Python float -> a float operand, int -> i32, bool -> i1, OUT -> a pointer to scratch memory.
OUT = "out-pointer"
SAMPLE_POINTS: dict[str, list[tuple]] = {
    "fadd": [(0.3, -1.7), (2.5, 4.0), (-3.0, 0.25)],
    "fsub": [(0.3, -1.7), (2.5, 4.0), (-3.0, 0.25)],
    "fmul": [(0.3, -1.7), (2.5, 4.0), (-3.0, 0.25)],
    "fdiv": [(0.3, -1.7), (2.5, 4.0), (-3.0, 0.25)],
    "frem": [(5.3, 2.0), (-7.4, 3.0), (0.7, 0.25)],
    "fneg": [(0.3,), (-2.0,), (5.5,)],
    # Casts: points and power-of-two steps exact in float, so the primal itself
    # is the reference.
    "fpext": [(1.5,), (-3.25,), (0.125,)],
    "fptrunc": [(1.5,), (-3.25,), (0.125,)],
    "freeze": [(0.3,), (-2.0,), (7.0,)],
    "sitofp": [(3,), (-7,), (0,)],
    "uitofp": [(3,), (7,), (100,)],
    "select": [(True, 0.5, 2.0), (False, 0.5, 2.0), (True, -3.0, 1.0)],
    "llvm.sin": [(0.3,), (-2.0,), (5.5,)],
    "llvm.cos": [(0.3,), (-2.0,), (5.5,)],
    "llvm.tan": [(0.3,), (-1.2,), (2.5,)],
    "llvm.asin": [(0.3,), (-0.6,), (0.9,)],
    "llvm.acos": [(0.3,), (-0.6,), (0.9,)],
    "llvm.atan": [(0.3,), (-2.0,), (5.5,)],
    "llvm.atan2": [(0.3, 1.7), (-1.0, -2.0), (2.5, -0.5)],
    "llvm.sinh": [(0.3,), (-2.0,), (3.5,)],
    "llvm.cosh": [(0.3,), (-2.0,), (3.5,)],
    "llvm.tanh": [(0.3,), (-2.0,), (1.5,)],
    "asinh": [(0.3,), (-2.0,), (5.5,)],
    "acosh": [(1.5,), (3.0,), (10.0,)],
    "atanh": [(0.3,), (-0.6,), (0.9,)],
    "llvm.exp": [(0.3,), (-2.0,), (5.5,)],
    "expm1": [(0.01,), (-2.0,), (3.0,)],
    "llvm.exp2": [(0.3,), (-2.0,), (3.5,)],
    "llvm.exp10": [(0.3,), (-2.0,), (1.5,)],
    "llvm.log": [(0.3,), (2.0,), (55.0,)],
    "log1p": [(-0.5,), (0.01,), (20.0,)],
    "llvm.log2": [(0.3,), (2.0,), (55.0,)],
    "llvm.log10": [(0.3,), (2.0,), (55.0,)],
    "llvm.sqrt": [(0.3,), (2.0,), (55.0,)],
    "cbrt": [(0.3,), (-2.0,), (55.0,)],
    "llvm.pow": [(1.3, 2.5), (0.7, -1.5), (3.0, 0.5), (2.0, 0.0)],
    "llvm.powi": [(1.3, 3), (0.7, -2), (-1.2, 5), (2.5, 0)],
    "hypot": [(0.3, 1.7), (-1.0, -2.0), (2.5, 0.5)],
    "llvm.fma": [(0.3, 1.7, -2.0), (-1.0, -2.0, 0.5), (2.5, 0.5, 3.0)],
    "llvm.fabs": [(0.3,), (-2.0,), (5.5,)],
    "llvm.copysign": [(0.3, -1.0), (-2.0, 3.0), (5.5, 2.0), (-1.5, -4.0)],
    "llvm.floor": [(0.3,), (-2.4,), (5.7,)],
    "llvm.ceil": [(0.3,), (-2.4,), (5.7,)],
    "llvm.trunc": [(0.3,), (-2.4,), (5.7,)],
    "llvm.round": [(0.3,), (-2.4,), (5.7,)],
    "llvm.roundeven": [(0.3,), (-2.4,), (5.7,)],
    "llvm.rint": [(0.3,), (-2.4,), (5.7,)],
    "llvm.nearbyint": [(0.3,), (-2.4,), (5.7,)],
    "llvm.minnum": [(0.3, 1.7), (2.5, -1.0), (-3.0, -2.5)],
    "llvm.ldexp": [(1.3, 3), (-0.7, -2), (5.5, 0)],
    "nextafter": [(1.3, 2.0), (-0.7, -5.0), (5.5, 0.0)],
    "frexp": [(1.3, OUT), (-0.7, OUT), (5.5, OUT), (1000.25, OUT)],
    "erf": [(0.3,), (-1.2,), (2.0,)],
    "erfc": [(0.3,), (-1.2,), (2.0,)],
    "tgamma": [(0.3,), (2.5,), (4.7,), (-1.5,)],
    "lgamma": [(0.3,), (2.5,), (12.7,), (-1.5,)],
}

OPCODES = {"fadd", "fsub", "fmul", "fdiv", "frem", "fneg", "fpext", "fptrunc", "freeze",
           "sitofp", "uitofp", "select"}
CASTS = {"fpext", "fptrunc", "sitofp", "uitofp"}
SUFFIX = {"double": "f64", "float": "f32"}
CTYPES = {"double": ctypes.c_double, "float": ctypes.c_float, "i32": ctypes.c_int32, "i1": ctypes.c_bool,
          "ptr": ctypes.c_void_p}
# Where functions with an output pointer (frexp's exponent) write.
SCRATCH = ctypes.create_string_buffer(64)
# (relative, absolute-per-unit-of-|f|) tolerances: float partials are computed in float.
TOLERANCES = {"double": (1e-6, 1e-9), "float": (2e-5, 2e-6)}


@dataclass(frozen=True)
class Case:
    """One key at one float type."""

    key: str
    """The name the rule is registered under."""
    result_type: Type
    """The float type the operation produces."""

    @property
    def rule_name(self) -> str:
        return registered_rules()[self.key].name

    @property
    def points(self) -> list[tuple]:
        return SAMPLE_POINTS[self.rule_name]

    def operand_types(self) -> list[Type]:
        if self.key == "fpext":
            return [FLOAT]
        if self.key == "fptrunc":
            return [DOUBLE]
        return [PTR if v is OUT else I1 if isinstance(v, bool) else I32 if isinstance(v, int)
                else self.result_type for v in self.points[0]]

    def reference(self) -> "Case":
        """The same operation at double precision: finite differences are taken on it."""
        if self.result_type == DOUBLE or self.key in CASTS:
            return self
        twin = self.key[:-1] if _is_float_libm_name(self.key) else self.key
        return Case(twin, DOUBLE)


def _is_float_libm_name(key: str) -> bool:
    return key.endswith("f") and key[:-1] in registered_rules() and key not in OPCODES


def _float_types(key: str) -> list[Type]:
    if key == "fpext":
        return [DOUBLE]
    if key == "fptrunc":
        return [FLOAT]
    if key in OPCODES or key.startswith("llvm."):
        return [DOUBLE, FLOAT]
    return [FLOAT] if _is_float_libm_name(key) else [DOUBLE]


def all_cases() -> list[Case]:
    return [Case(key, ty) for key in sorted(registered_rules()) for ty in _float_types(key)]


# ---------------------------------------------------------------- building and running

def emit_operation(builder: Builder, key: str, operands: list, result_type: Type) -> core.Value:
    """The primal operation `key` on `operands`, as numba's IR would spell it."""
    if key in CASTS:
        return builder.cast(key, operands[0], result_type)
    if key == "fneg":
        return builder.fneg(operands[0])
    if key == "freeze":
        return builder.insert(core.Freeze(type=result_type, opcode="freeze", operands=[operands[0]]))
    if key == "select":
        return builder.select(*operands)
    if key in OPCODES:
        return builder.binary(key, *operands)
    if key == "llvm.powi":
        # A variable-exponent powi becomes a call to compiler-rt's __powidf2,
        # which this process does not have; pow at an integral exponent is the same function.
        return builder.call_intrinsic("llvm.pow", operands[0], builder.cast("sitofp", operands[1], result_type))
    name = key
    if key.startswith("llvm."):
        # Overloaded on the float type, and on the integer type where there is one (powi, ldexp).
        name += f".{SUFFIX[result_type.kind]}" + "".join(
            f".{o.type}" for o in operands if o.type.is_integer)
    callee = builder.declare(name, result_type, [o.type for o in operands])
    return builder.call(callee, operands)


def _define(module: core.Module, name: str, case: Case) -> tuple[core.Function, Builder]:
    function = core.Function(name, FunctionType(case.result_type, tuple(case.operand_types())))
    module.add_function(function)
    return function, Builder(module).at_end(function.append_block("entry"))


@dataclass
class CompiledCase:
    """The JIT-compiled primal, reference and partials of one case."""

    primal: object
    """The operation at the case's type."""
    reference: object
    """The operation at double precision, for the finite differences."""
    partials: list
    """One callable per operand; None where the rule said the partial is zero."""
    keep_alive: CompiledModule
    """Owns the machine code the callables point into."""


def compile_case(case: Case) -> CompiledCase:
    rule = registered_rules()[case.key]
    module = core.Module(name=f"rule_{case.key}")
    for name, which in (("primal", case), ("reference", case.reference())):
        function, builder = _define(module, name, which)
        builder.ret(emit_operation(builder, which.key, function.arguments, which.result_type))
    zero_partials = []
    operand_count = len(case.operand_types())
    for index in range(operand_count):
        function, builder = _define(module, f"partial_{index}", case)
        result = emit_operation(builder, case.key, function.arguments, case.result_type)
        partials = rule.float_partials(builder, result, *function.arguments)
        assert len(partials) == operand_count, f"{case.key}: {len(partials)} partials for {operand_count} operands"
        partial = partials[index]
        if partial is None:
            zero_partials.append(index)
            partial = builder.float_constant(case.result_type, 0.0)
        assert partial.type == case.result_type, f"{case.key}: partial {index} has type {partial.type}"
        builder.ret(partial)
    compiled = CompiledModule(write_module(module), pipeline=None)

    def callable_for(name: str, which: Case):
        prototype = ctypes.CFUNCTYPE(CTYPES[str(which.result_type)],
                                     *(CTYPES[str(t)] for t in which.operand_types()))
        return prototype(compiled.address(name))

    return CompiledCase(
        primal=callable_for("primal", case), reference=callable_for("reference", case.reference()),
        partials=[None if i in zero_partials else callable_for(f"partial_{i}", case)
                  for i in range(operand_count)],
        keep_alive=compiled)


def to_float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def five_point_derivative(function, point: tuple, index: int) -> tuple[float, float]:
    """d function / d point[index] by the 5-point central stencil, and |function(point)|.

    The step is a power of two near 1e-3 |x|: x +- h and x +- 2h are then exact
    for the short-mantissa points used here, and the stencil's error
    (h^4 f''''' / 30 plus rounding of order eps |f| / h) is far below 1e-6.
    """
    x = point[index]
    step = 2.0 ** round(math.log2(1e-3 * max(1.0, abs(x))))

    def at(offset):
        moved = list(point)
        moved[index] = x + offset * step
        return function(*moved)

    derivative = (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * step)
    return derivative, abs(function(*point))


# ---------------------------------------------------------------- tests

def test_every_rule_has_sample_points():
    rule_names = {rule.name for rule in registered_rules().values()}
    missing = sorted(rule_names - SAMPLE_POINTS.keys())
    assert not missing, f"registered rules without sample points in tests/test_rules.py: {missing}"
    stale = sorted(SAMPLE_POINTS.keys() - rule_names)
    assert not stale, f"sample points for rules that are not registered: {stale}"


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c.key}-{c.result_type}")
def test_partials_match_finite_differences(case: Case):
    if case.rule_name not in SAMPLE_POINTS:
        pytest.fail(f"rule {case.rule_name!r} (key {case.key!r}) has no sample points in SAMPLE_POINTS")
    compiled = compile_case(case)
    operand_types = case.operand_types()
    relative, absolute = TOLERANCES[str(case.result_type)]
    for raw_point in case.points:
        # Float cases: evaluate everything at the float-rounded point, so the
        # double reference sees exactly what the float code saw.
        point = tuple(to_float32(v) if t == FLOAT else ctypes.addressof(SCRATCH) if v is OUT else v
                      for v, t in zip(raw_point, operand_types))
        for index, operand_type in enumerate(operand_types):
            partial = compiled.partials[index]
            if not operand_type.is_float:
                assert partial is None, f"{case.key}: non-float operand {index} must have a None partial"
                continue
            expected, size = five_point_derivative(compiled.reference, point, index)
            actual = 0.0 if partial is None else partial(*point)
            tolerance = relative * abs(expected) + absolute * (1.0 + size)
            assert abs(actual - expected) <= tolerance, (
                f"{case.key} ({case.result_type}) d/d operand {index} at {point}: "
                f"rule gives {actual!r}, finite differences {expected!r}")


def test_primal_matches_its_double_twin():
    """Guards the harness: the float function really is the float version of the reference."""
    case = Case("sinhf", FLOAT)
    compiled = compile_case(case)
    assert compiled.primal(0.5) == pytest.approx(math.sinh(0.5), rel=1e-6)
    assert compiled.reference(0.5) == math.sinh(0.5)


@pytest.mark.parametrize("float_type", [DOUBLE, FLOAT], ids=str)
def test_digamma_known_values(float_type):
    module = core.Module(name="digamma")
    digamma_function(module, float_type)
    compiled = CompiledModule(write_module(module), pipeline=None)
    c_type = CTYPES[str(float_type)]
    digamma = ctypes.CFUNCTYPE(c_type, c_type)(compiled.address(f"enzpy.digamma.{SUFFIX[float_type.kind]}"))
    euler_gamma = 0.5772156649015329
    known = {1.0: -euler_gamma, 0.5: -euler_gamma - 2 * math.log(2), -0.5: 2 - euler_gamma - 2 * math.log(2),
             2.0: 1 - euler_gamma, 10.0: 2.251752589066721, 1e-3: -1000.5755719318103,
             -2.5: 1.1031566406452432, 100.0: 4.600161852738087}
    relative = 1e-13 if float_type == DOUBLE else 1e-6
    for x, expected in known.items():
        assert digamma(x) == pytest.approx(expected, rel=relative), x
    for pole in (0.0, -1.0, -3.0):
        assert math.isnan(digamma(pole))


def test_digamma_is_emitted_once_per_module():
    module = core.Module(name="twice")
    first = digamma_function(module, FLOAT)
    assert digamma_function(module, FLOAT) is first
    assert sorted(n for n in module.functions if n.startswith("enzpy.digamma")) == \
        ["enzpy.digamma.f32", "enzpy.digamma.f64"]


def _call_to(name: str, argument_types: list[Type], result_type: Type = DOUBLE) -> core.Call:
    module = core.Module()
    callee = module.get_or_declare(name, FunctionType(result_type, tuple(argument_types)))
    arguments = [core.Argument(t, f"a{i}") for i, t in enumerate(argument_types)]
    return Builder(module).at_end(core.Block("entry")).call(callee, arguments)


@pytest.mark.parametrize("callee, key", [
    ("llvm.sin.f64", "llvm.sin"), ("llvm.sin.f32", "llvm.sin"), ("llvm.powi.f64.i32", "llvm.powi"),
    ("llvm.exp2.f64", "llvm.exp2"), ("llvm.log10.f32", "llvm.log10"), ("llvm.fma.v4f64", "llvm.fma"),
    ("llvm.memcpy.p0.p0.i64", "llvm.memcpy"), ("llvm.ldexp.f64.i32", "llvm.ldexp"),
    ("llvm.exp2", "llvm.exp2"), ("sinh", "sinh"), ("sinhf", "sinhf"), ("numba_gammaf", "numba_gammaf"),
    ("log1p", "log1p"), ("exp2f", "exp2f"),
])
def test_rule_key_strips_intrinsic_type_suffixes(callee, key):
    assert rule_key(_call_to(callee, [DOUBLE])) == key


def test_rule_key_of_instructions_is_the_opcode():
    x = core.Argument(DOUBLE, "x")
    product = core.BinaryOperator(type=DOUBLE, opcode="fmul", operands=[x, x])
    widened = core.Cast(type=DOUBLE, opcode="fpext", operands=[core.Argument(FLOAT, "f")])
    assert rule_key(product) == "fmul" and scalar_rule(product).name == "fmul"
    assert rule_key(widened) == "fpext"
    assert scalar_rule(_call_to("llvm.sin.f32", [FLOAT], FLOAT)).keys == ("llvm.sin", "sin", "sinf")


def test_missing_rule_error_names_key_function_block_and_line():
    module = core.Module()
    function = module.add_function(core.Function("kernel", FunctionType(DOUBLE, (DOUBLE,)), ["x"]))
    function.append_block("entry")
    loop = function.append_block("loop")
    callee = module.get_or_declare("llvm.frobnicate.f64", FunctionType(DOUBLE, (DOUBLE,)))
    builder = Builder(module).at_end(loop)
    builder.location = core.SourceLocation(42, "model.py")
    call = builder.call(callee, [function.arguments[0]])
    assert scalar_rule(call) is None
    error = missing_rule_error(call, "kernel")
    assert isinstance(error, DifferentiationError)
    message = str(error)
    assert message.startswith("Differentiation rule for 'llvm.frobnicate' not implemented")
    for fragment in ("'kernel'", "'loop'", "model.py:42", "@partials(\"llvm.frobnicate\")", "enzpy/rules/"):
        assert fragment in message, (fragment, message)


def test_missing_rule_error_without_debug_line_or_block_name():
    module = core.Module()
    function = module.add_function(core.Function("f", FunctionType(DOUBLE, (DOUBLE,)), ["x"]))
    block = function.append_block()
    x = function.arguments[0]
    instruction = Builder(module).at_end(block).binary("frobnicate", x, x)
    message = str(missing_rule_error(instruction, "f"))
    assert "'frobnicate'" in message and "'f'" in message and "#0" in message
    assert "source" not in message


def test_registering_a_key_twice_is_an_error():
    from enzpy.rules.registry import partials
    with pytest.raises(ValueError, match="already registered"):
        partials("fmul")(lambda builder, result, x, y: (y, x))


@pytest.mark.parametrize("key", sorted(registered_rules()))
def test_rules_only_emit_at_the_insertion_point(key):
    """The drivers run rules on stand-in values in a scratch block (to see what a rule
    reads); a rule must accept any values and put its instructions only there."""
    case = Case(key, _float_types(key)[0])
    module = core.Module(name="scratch")
    scratch = core.Block("scratch")
    result = core.Value(case.result_type)
    stand_ins = [core.Value(t) for t in case.operand_types()]
    partials = registered_rules()[key].partials(Builder(module).at_end(scratch), result, *stand_ins)
    assert len(partials) == len(stand_ins)
    for partial in partials:
        assert partial is None or isinstance(partial, core.Constant) or partial is result \
            or any(partial is s for s in stand_ins) or partial in scratch.instructions, (key, partial)
    assert all(f.is_declaration or f.name.startswith("enzpy.") for f in module.functions.values())
