"""Random numba kernels as small trees: generated from a grammar, rendered as Python source.

A kernel takes two float arrays `x`, `y` of length n (sometimes an n x n
array `M`), a float scalar `s` and an integer `m`, and returns a float, an
array, a tuple of both, or nothing (then only what it writes counts). Every
scalar local and every local buffer is defined at the top of the body, so
deleting any statement later (the shrinker does) leaves valid Python; numba
may still refuse a shrunk kernel (a loop variable used outside its loop), and
the checker calls that `invalid`, which the shrinker never keeps.

Values stay away from singularities by construction: logarithms and square
roots take `2 + sin(...)` or `1 + e * e`, divisions divide by `1 + e * e`,
exponentials take a `tanh`. Kinks (abs, min, max, branches, early exits) are
generated on purpose; the checker recognizes a finite difference that
straddles one and says `kink` instead of comparing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

# -- expressions


@dataclass(frozen=True)
class Number:
    """A float literal."""
    value: float
    """The literal's value."""

    def render(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Name:
    """A float scalar: the argument `s`, a local accumulator, or a loop index as a float."""
    text: str
    """Python text of the value, e.g. `acc1` or `(i * 0.25)`."""

    def render(self) -> str:
        return self.text


@dataclass(frozen=True)
class Element:
    """An array element `array[index]` (or `array[index, column]` for the 2-D argument)."""
    array: str
    """The array's name."""
    index: str
    """Index text, valid wherever the element is generated (`i`, `(i + 1) % n`, `n - 1`)."""
    column: str | None = None
    """Second index of a 2-D element."""

    def render(self) -> str:
        return f"{self.array}[{self.index}]" if self.column is None else f"{self.array}[{self.index}, {self.column}]"


@dataclass(frozen=True)
class Apply:
    """A math function or operator applied to operands; `template` has `{0}`, `{1}` slots."""
    template: str
    """Python text with one slot per operand, e.g. `np.log(2.0 + np.sin({0}))`."""
    operands: tuple
    """The operand expressions."""

    def render(self) -> str:
        return self.template.format(*(f"({operand.render()})" for operand in self.operands))


@dataclass(frozen=True)
class Reduce:
    """A numpy reduction of an array expression, e.g. `np.sum(np.sin(x) * y)`."""
    template: str
    """Python text with one slot for the array expression, e.g. `np.sum({0})`."""
    array_expression: str
    """Whole-array numpy expression over the kernel's 1-D arrays."""

    def render(self) -> str:
        return self.template.format(self.array_expression)


UNARY = ("np.sin({0})", "np.cos({0})", "np.tanh({0})", "np.arctan({0})", "np.exp(np.tanh({0}))",
         "np.log(2.0 + np.sin({0}))", "np.sqrt(1.0 + {0} * {0})", "{0} * {0}", "-{0}", "np.abs({0})",
         "np.log1p({0} * {0})", "{0} ** 3", "math.erf({0})", "np.cosh(np.sin({0}))",
         "(1.5 + np.sin({0})) ** 1.5", "math.atan2({0}, 2.0)", "np.floor({0}) + 0.5 * {0}",
         "math.exp(-{0} * {0})", "np.sign({0}) * {0}")
BINARY = ("{0} + {1}", "{0} - {1}", "{0} * {1}", "{0} / (1.0 + {1} * {1})", "max({0}, {1})", "min({0}, {1})",
          "math.hypot({0}, {1})", "np.arctan2({0}, 2.0 + np.cos({1}))")
REDUCTIONS = ("np.sum({0})", "np.dot({0}, {0})", "np.max({0})", "np.mean({0})", "np.prod(np.tanh({0}) * 0.5 + 1.0)")
MATRIX_EXPRESSIONS = ("M @ x", "(M.T @ y) * x", "np.dot(M, np.sin(x))", "M[0] * y", "M[:, 1] + x",
                      "np.sum(M * M, axis=0)", "M.ravel()[:n] * y")
"""Whole-array expressions of length n over M, for kernels that take it (BLAS gemv, views, axis sums)."""
DATA_INDICES = ("int(abs(y[0]) * 3.0) % n", "int(x[n - 1] > 0.0)", "np.argmax(x)")
"""Indices read from the data: piecewise constant in it, so only their uses carry derivatives."""
ARRAY_EXPRESSIONS = ("np.sin(x) * y", "x * x + y", "np.exp(np.tanh(y)) - x", "x[1:] * y[:-1]",
                     "np.sqrt(1.0 + x * x)", "np.cumsum(y) * 0.1", "x[::-1] * y")

# -- statements


@dataclass(frozen=True)
class Assign:
    """`target = value` or `target += value` for a float local."""
    target: str
    """The local accumulator's name."""
    value: object
    """The expression."""
    augmented: bool
    """`+=` instead of `=`."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}{self.target} {'+=' if self.augmented else '='} {self.value.render()}"]


@dataclass(frozen=True)
class Store:
    """`array[index] = value` (or `+=`): an in-place update of an argument or a local buffer."""
    element: Element
    """Where it stores."""
    value: object
    """The expression."""
    augmented: bool
    """`+=` instead of `=`."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}{self.element.render()} {'+=' if self.augmented else '='} {self.value.render()}"]


@dataclass(frozen=True)
class For:
    """`for variable in range(bound): body`."""
    variable: str
    """The loop variable."""
    bound: str
    """Text inside `range(...)`, e.g. `n`, `m`, `1, n`, `i + 1`."""
    body: tuple
    """Statements."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}for {self.variable} in range({self.bound}):", *_block(self.body, indent + "    ")]


@dataclass(frozen=True)
class While:
    """A loop whose trip count depends on the data: `while k < limit and condition > threshold`."""
    counter: str
    """The integer counter (also usable as an index modulo n)."""
    limit: str
    """Upper bound of the counter, e.g. `m + 2`."""
    condition: object
    """Float expression compared with the threshold on each trip."""
    threshold: float
    """The comparison's right side."""
    body: tuple
    """Statements."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}{self.counter} = 0",
                f"{indent}while {self.counter} < {self.limit} and {self.condition.render()} < {self.threshold!r}:",
                *_block(self.body, indent + "    "), f"{indent}    {self.counter} += 1"]


@dataclass(frozen=True)
class If:
    """`if condition > threshold: body else: otherwise`."""
    condition: object
    """Float expression."""
    threshold: float
    """The comparison's right side."""
    body: tuple
    """Statements taken when the condition holds."""
    otherwise: tuple = ()
    """Statements of the else branch (none: no else)."""

    def lines(self, indent: str) -> list[str]:
        text = [f"{indent}if {self.condition.render()} > {self.threshold!r}:", *_block(self.body, indent + "    ")]
        if self.otherwise:
            text += [f"{indent}else:", *_block(self.otherwise, indent + "    ")]
        return text


@dataclass(frozen=True)
class Exit:
    """An early exit: `if condition > threshold: break` (in a loop) or `...: return value`."""
    condition: object
    """Float expression."""
    threshold: float
    """The comparison's right side."""
    returned: str | None = None
    """Python text returned (the kernel's result form); None: `keyword`."""
    keyword: str = "break"
    """`break`, or `continue` (only in a `for` loop: a while loop's counter update would be skipped)."""

    def lines(self, indent: str) -> list[str]:
        action = self.keyword if self.returned is None else f"return {self.returned}"
        return [f"{indent}if {self.condition.render()} > {self.threshold!r}:", f"{indent}    {action}"]


@dataclass(frozen=True)
class Swap:
    """`a, b = b, a` for two local buffers of the same type (a time stepper's double buffer)."""
    first: str
    """One buffer."""
    second: str
    """The other."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}{self.first}, {self.second} = {self.second}, {self.first}"]


@dataclass(frozen=True)
class CallHelper:
    """A call of an array helper (`helper(source, target)`): it writes `target` from `source`."""
    helper: str
    """The helper's name."""
    source: str
    """Array read."""
    target: str
    """Array written."""

    def lines(self, indent: str) -> list[str]:
        return [f"{indent}{self.helper}({self.source}, {self.target})"]


def _block(statements, indent: str) -> list[str]:
    lines = [line for statement in statements for line in statement.lines(indent)]
    return lines or [f"{indent}pass"]

# -- kernels


@dataclass(frozen=True)
class Helper:
    """An `@numba.njit` function the kernel calls: scalar `(a, b) -> float`, or array `(src, dst)`."""
    name: str
    """Its name."""
    source: str
    """Its definition, decorator included."""


@dataclass(frozen=True)
class Kernel:
    """One generated kernel: its arguments, body and result, and the arguments it runs on."""
    body: tuple
    """Statements after the definitions of the locals."""
    result: str
    """'scalar', 'array', 'tuple' or 'none'."""
    returned: str | None
    """Python text of the final return value (None for 'none')."""
    accumulators: int
    """Float locals acc0..acc{k-1}, each set to a literal at the top."""
    buffers: tuple[str, ...]
    """Definitions of the local buffers t0, t1, ...: Python right-hand sides."""
    helpers: tuple[Helper, ...]
    """njit functions the body may call."""
    dtype: str
    """'float64' or 'float32': the arrays' (and `s`'s) type."""
    matrix: bool
    """Whether the kernel takes the 2-D argument M (n x n)."""
    n: int
    """Length of x and y."""
    m: int
    """The integer argument (trip counts)."""
    seed: int
    """Seed of the generator and of the argument values."""
    layout: str = "C"
    """How the arrays are passed: 'C' contiguous, 'strided' (x and y every other element of a
    longer array, M a transposed view), or 'overlapping' (y a view of x shifted by one)."""

    @property
    def parameters(self) -> tuple[str, ...]:
        return ("x", "y", *(("M",) if self.matrix else ()), "s", "m")

    def source(self) -> str:
        """The module text: imports, helpers, then `kernel`."""
        lines = ["import math", "import numba", "import numpy as np", ""]
        used = "\n".join(line for statement in self.body for line in statement.lines(""))
        used += f"\n{self.returned or ''}\n" + "\n".join(self.buffers)
        for helper in self.helpers:
            if helper.name + "(" in used:
                lines += ["", helper.source.rstrip(), ""]
        lines += ["", f"def kernel({', '.join(self.parameters)}):", "    n = x.shape[0]"]
        lines += [f"    acc{k} = {0.25 * (k + 1)!r}" for k in range(self.accumulators)]
        lines += [f"    t{k} = {definition}" for k, definition in enumerate(self.buffers)]
        lines += _block(self.body, "    ")
        if self.returned is not None:
            lines.append(f"    return {self.returned}")
        return "\n".join(lines) + "\n"


@dataclass
class _Scope:
    """What generated code may refer to at one point."""
    scalars: list[str]
    """Float scalar texts."""
    arrays: list[str]
    """1-D float arrays that may be read (x, y, local buffers)."""
    writable: list[str]
    """1-D arrays that may be written."""
    indices: list[str] = field(default_factory=lambda: ["0", "n - 1", "n // 2"])
    """Valid index texts for the 1-D arrays."""
    loop_depth: int = 0
    """How many loops enclose this point."""
    innermost: str = ""
    """'for' or 'while': the innermost enclosing loop."""
    variables: int = 0
    """Loop variables made so far (names i0, i1, ...)."""


class Generator:
    """Draws kernels from the grammar with one `random.Random`."""

    def __init__(self, seed: int, max_depth: int = 3, max_statements: int = 6):
        self.random = random.Random(seed)
        self.seed = seed
        self.max_depth = max_depth
        self.max_statements = max_statements
        self.matrix = False
        self.counter = 0
        self.helpers: list[Helper] = []
        self.returned: str | None = None

    def kernel(self) -> Kernel:
        draw = self.random
        dtype = draw.choice(("float64", "float64", "float32"))
        self.matrix = draw.random() < 0.25
        result = draw.choice(("scalar", "scalar", "scalar", "array", "tuple", "none"))
        accumulators = draw.randint(1, 3)
        buffer_choices = ("np.zeros_like(x)", "x.copy()", "np.sin(y) + x * x", "np.empty_like(y)")
        buffers = tuple(draw.choice(buffer_choices) for _ in range(draw.randint(0, 2)))
        # np.empty_like(y) is filled at once, so every read sees defined values.
        buffers = tuple("y.copy()" if b == "np.empty_like(y)" else b for b in buffers) if draw.random() < 0.5 \
            else tuple("np.empty_like(y); t{0}[:] = y" if b == "np.empty_like(y)" else b for b in buffers)
        buffers = tuple(b.format(k) for k, b in enumerate(buffers))
        self.helpers = self._helpers()
        scalars = ["s", *(f"acc{k}" for k in range(accumulators))]
        locals_ = [f"t{k}" for k in range(len(buffers))]
        scope = _Scope(scalars=scalars, arrays=["x", "y", *locals_], writable=["x", "y", *locals_])
        sum_of = " + ".join(f"acc{k}" for k in range(accumulators))
        returned_array = locals_[0] if locals_ and draw.random() < 0.7 else "y"
        self.returned = {"scalar": sum_of, "array": returned_array, "tuple": f"({sum_of}, {returned_array})",
                         "none": None}[result]
        body = self._statements(scope, depth=0, result=result)
        if result == "none":
            body += (Store(Element("y", "0"), Name(sum_of), augmented=True),)   # the accumulators matter
        if result == "array" and returned_array == "y":
            returned = "y.copy()"           # a result that is not an argument itself
            self.returned = returned
        return Kernel(body=tuple(body), result=result, returned=self.returned, accumulators=accumulators,
                      buffers=buffers, helpers=tuple(self.helpers), dtype=dtype, matrix=self.matrix,
                      n=draw.randint(2, 7), m=draw.randint(0, 4), seed=self.seed,
                      layout=draw.choice(("C", "C", "C", "strided", "overlapping")))

    def _helpers(self) -> list[Helper]:
        draw, helpers = self.random, []
        for k in range(draw.randint(0, 2)):
            scope = _Scope(scalars=["a", "b"], arrays=[], writable=[])
            expression = self._expression(scope, 2)
            options = draw.choice(("", "fastmath=True", "inline='always'", "cache=False"))
            helpers.append(Helper(f"scalar_helper{k}", f"@numba.njit({options})\ndef scalar_helper{k}(a, b):\n"
                                                       f"    return {expression.render()}\n"))
        if draw.random() < 0.3:
            scope = _Scope(scalars=["src[i]"], arrays=["src"], writable=[], indices=["i", "(i + 1) % n"])
            expression = self._expression(scope, 2)
            helpers.append(Helper("array_helper", "@numba.njit\ndef array_helper(src, dst):\n"
                                  "    n = src.shape[0]\n    for i in range(n):\n"
                                  f"        dst[i] += {expression.render()}\n"))
        return helpers

    # -- expressions

    def _expression(self, scope: _Scope, depth: int):
        draw = self.random
        if depth <= 0 or draw.random() < 0.3:
            return self._leaf(scope)
        choice = draw.random()
        scalar_helpers = [h for h in self.helpers if h.name.startswith("scalar_helper")]
        if choice < 0.45:
            return Apply(draw.choice(UNARY), (self._expression(scope, depth - 1),))
        if choice < 0.85:
            return Apply(draw.choice(BINARY), (self._expression(scope, depth - 1), self._expression(scope, depth - 1)))
        if choice < 0.93 and scalar_helpers:
            helper = draw.choice(scalar_helpers)
            return Apply(helper.name + "({0}, {1})", (self._expression(scope, depth - 1),
                                                       self._expression(scope, depth - 1)))
        if "x" in scope.arrays and "y" in scope.arrays:
            pool = ARRAY_EXPRESSIONS + (MATRIX_EXPRESSIONS if self.matrix else ())
            return Reduce(draw.choice(REDUCTIONS), draw.choice(pool))
        return self._leaf(scope)

    def _leaf(self, scope: _Scope):
        draw = self.random
        choice = draw.random()
        if choice < 0.1:
            return Number(draw.choice((0.5, 1.25, 2.0, -0.75, 3.0)))
        if choice < 0.4 and scope.scalars:
            return Name(draw.choice(scope.scalars))
        if self.matrix and "x" in scope.arrays and choice < 0.55:
            return Element("M", draw.choice(scope.indices), draw.choice(scope.indices))
        if scope.arrays:
            index = draw.choice(DATA_INDICES) if "x" in scope.arrays and draw.random() < 0.08 \
                else draw.choice(scope.indices)
            return Element(draw.choice(scope.arrays), index)
        return Name(draw.choice(scope.scalars))

    # -- statements

    def _statements(self, scope: _Scope, depth: int, result: str) -> list:
        count = self.random.randint(1, max(1, self.max_statements - 2 * depth))
        return [self._statement(scope, depth, result) for _ in range(count)]

    def _statement(self, scope: _Scope, depth: int, result: str):
        draw = self.random
        choice = draw.random()
        compound = depth < self.max_depth
        if compound and choice < 0.3:
            return self._for(scope, depth, result)
        if compound and choice < 0.38:
            return self._while(scope, depth, result)
        if compound and choice < 0.5:
            otherwise = tuple(self._statements(scope, depth + 1, result)) if draw.random() < 0.5 else ()
            return If(self._expression(scope, 2), draw.choice((0.0, 0.3, -0.2)),
                      tuple(self._statements(scope, depth + 1, result)), otherwise)
        if choice < 0.56 and scope.loop_depth > 0:
            keyword = draw.choice(("break", "continue")) if scope.innermost == "for" else "break"
            return Exit(self._expression(scope, 2), draw.choice((0.5, 0.8, 1.5)), keyword=keyword)
        if choice < 0.59 and result in ("scalar", "array") and self.returned is not None:
            return Exit(self._expression(scope, 2), draw.choice((0.9, 1.5)), returned=self.returned)
        locals_ = [a for a in scope.writable if a.startswith("t")]
        if choice < 0.62 and len(locals_) >= 2 and self._same_kind(locals_[0], locals_[1]):
            return Swap(locals_[0], locals_[1])
        if choice < 0.66 and any(h.name == "array_helper" for h in self.helpers) and scope.writable:
            return CallHelper("array_helper", draw.choice(scope.arrays), draw.choice(scope.writable))
        if choice < 0.82 and scope.writable:
            return Store(Element(draw.choice(scope.writable), draw.choice(scope.indices)),
                         self._expression(scope, self.max_depth - depth + 1), augmented=draw.random() < 0.5)
        if self.matrix and choice < 0.86 and scope.loop_depth > 0:
            return Store(Element("M", draw.choice(scope.indices), draw.choice(scope.indices)),
                         self._expression(scope, 2), augmented=True)
        target = draw.choice([s for s in scope.scalars if s.startswith("acc")])
        return Assign(target, self._expression(scope, self.max_depth - depth + 1), augmented=draw.random() < 0.6)

    @staticmethod
    def _same_kind(first: str, second: str) -> bool:
        return True                  # every local buffer is a float array of length n, of one dtype

    def _loop_variable(self, scope: _Scope) -> str:
        scope.variables += 1
        return f"i{scope.variables}"

    def _for(self, scope: _Scope, depth: int, result: str) -> For:
        draw = self.random
        variable = self._loop_variable(scope)
        enclosing = [index for index in scope.indices if index.startswith("i") and " " not in index]
        bounds = ["n", "n", "m", "1, n", "min(m, n)"] + [f"{index} + 1" for index in enclosing]
        bound = draw.choice(bounds)
        if bound in ("n", "1, n") or bound.endswith(" + 1") or bound == "min(m, n)":
            indices = [variable, f"n - 1 - {variable}", f"({variable} + 1) % n", f"(2 * {variable}) % n"]
            if bound == "1, n":
                indices.append(f"{variable} - 1")
        else:
            indices = [f"{variable} % n"]
        inner = replace(scope, scalars=[*scope.scalars, f"({variable} * 0.25)"], indices=[*scope.indices, *indices],
                        loop_depth=scope.loop_depth + 1, innermost="for")
        body = tuple(self._statements(inner, depth + 1, result))
        scope.variables = inner.variables
        return For(variable, bound, body)

    def _while(self, scope: _Scope, depth: int, result: str) -> While:
        draw = self.random
        counter = self._loop_variable(scope)
        inner = replace(scope, indices=[*scope.indices, f"{counter} % n"], loop_depth=scope.loop_depth + 1,
                        innermost="while")
        condition = Name(draw.choice([s for s in scope.scalars if s.startswith("acc")]))
        body = tuple(self._statements(inner, depth + 1, result))
        scope.variables = inner.variables
        return While(counter, draw.choice(("m + 2", "8", "n")), condition, draw.choice((2.0, 5.0, 20.0)), body)


def generate(seed: int) -> Kernel:
    """The kernel of seed `seed` (the same kernel on every machine and Python version)."""
    return Generator(seed).kernel()
