"""Derivatives of MPI routines (named by mpi/recognition.py), one rule per routine.

The buffers are arrays of `count` elements of the call's datatype (MPI_DOUBLE
or MPI_FLOAT carry derivatives; integer buffers none). Forward mode repeats
each call on the shadows, so the tangent travels with the message. Reverse
mode runs the adjoint communication (Enzyme's rules):

    routine                 adjoint (reverse sweep)
    Send(x -> dest)         Recv(t <- dest); xbar += t
    Recv(y <- source)       Send(ybar -> source); ybar = 0      (source, tag: from the status if wildcards)
    Sendrecv(x -> d, y <- s)  Sendrecv(ybar -> s, t <- d); xbar += t; ybar = 0
    Allreduce(x, y, SUM)    Allreduce(ybar, t, SUM); xbar += t; ybar = 0
    Allreduce(x, y, MAX/MIN)  the rank that holds the winning element (the lowest rank of equal
                            ones) gets the summed adjoint: Allreduce(ybar, t, SUM); xbar += [won] t
    Reduce(x, y, SUM, root) Bcast(t = ybar from root); xbar += t; ybar = 0 at root
    Bcast(x, root)          Reduce(xbar, t, SUM, root); xbar = t at root, 0 elsewhere
    Isend(x -> dest)        posted at the reverse of its Wait: Irecv(t <- dest); completed here: xbar += t
    Irecv(y <- source)      posted at the reverse of its Wait: Isend(ybar -> source); completed here: ybar = 0
    Wait(all)(requests)     posts the adjoint calls of the requests (mpi/requests.py keeps them)

Every rank runs the same sequence of calls in reverse, so the adjoint
messages match as the primal ones did. Handles are MPICH's ints (the
`mpi` extra installs MPICH); the datatype and operation must be constants
(numba-mpi loads them from fixed addresses, read at compile time).
"""

from __future__ import annotations

from ..ir import core
from ..ir.builder import Builder, constant_int
from ..ir.types import DOUBLE, FLOAT, I1, I8, I32, I64, PTR, VOID, ArrayType, Type
from ..mpi.recognition import constant_handle, handle_name, handles
from .calls import ArrayOperand, MemoryCallContext, MemoryCallRule, register_memory_call_rule

_FLOATS = {"MPI_DOUBLE": DOUBLE, "MPI_FLOAT": FLOAT}
_INTEGERS = {"MPI_INT": I32, "MPI_INT32_T": I32, "MPI_INT64_T": I64, "MPI_CHAR": I8}
_MPICH_SOURCE, _MPICH_TAG = 8, 12
"""Offsets of MPI_SOURCE and MPI_TAG in MPICH's MPI_Status."""


class _MpiRule(MemoryCallRule):
    """What the routines share: the datatype at `datatype_position`, helper calls."""

    communicates = True              # every rank runs the adjoint messages, shadow or not
    datatype_position = 2
    operation_position: int | None = None
    operations = ("MPI_SUM",)

    def datatype(self, call: core.Call, position: int | None = None) -> str | None:
        return handle_name(constant_handle(call.operands[position or self.datatype_position]))

    def float_type(self, call: core.Call) -> Type | None:
        return _FLOATS.get(self.datatype(call))

    def element_type(self, call: core.Call) -> Type:
        return self.float_type(call) or _INTEGERS.get(self.datatype(call), I8)

    def operation(self, call: core.Call) -> str | None:
        return handle_name(constant_handle(call.operands[self.operation_position]))

    def unsupported(self, call):
        if not handles():
            return f"'{self.names[0]}': enzpy names MPI's datatypes through mpi4py, which is not installed"
        if not call.operands[self.datatype_position].type.is_integer:
            return f"'{self.names[0]}': only MPI libraries with integer handles (MPICH) are supported"
        kind = self.datatype(call)
        if kind is None or (kind not in _FLOATS and kind not in _INTEGERS):
            return f"'{self.names[0]}': the datatype is not a known constant (MPI_DOUBLE, MPI_FLOAT, integers)"
        if self.operation_position is not None and self.float_type(call) is not None \
                and self.operation(call) not in self.operations:
            return (f"'{self.names[0]}' with {self.operation(call) or 'an unknown operation'}: "
                    f"differentiable for {', '.join(self.operations)} only")
        return None

    def buffer(self, call, position: int, count: int, reads: bool, writes: bool) -> ArrayOperand:
        one = constant_int(I64, 1)
        return ArrayOperand(position, call.operands[count], one, call.operands[count], self.float_type(call),
                            reads=reads, writes=writes,
                            element_type=None if self.float_type(call) else self.element_type(call))

    def contents_needed(self, call, active):
        return set()

    def repeat_on_shadows(self, context, buffers: dict[int, int], status: int | None = None) -> None:
        """Forward mode: the same call with each buffer (position: its count's position) replaced by
        its shadow, or a zeroed stand-in where it has none, so the tangent travels with the message."""
        element = self.float_type(context.call)
        if element is None:
            return
        scratch = []
        operands = [context.value(i) for i in range(len(context.call.operands))]
        for position, count in buffers.items():
            operands[position] = _adjoint_or_scratch(context, position, context.value(count), element, scratch)
        if status is not None:
            operands[status] = _status(context)
        _mpi(context.builder, self.names[0], operands)
        _free_scratch(context, scratch)


# -- helpers the derivative code calls

def _mpi(builder: Builder, name: str, arguments) -> core.Value:
    callee = builder.declare(name, I32, [a.type for a in arguments])
    return builder.call(callee, list(arguments))


def _bytes(builder: Builder, count: core.Value, element: Type) -> core.Value:
    count = builder.cast("sext", count, I64) if count.type != I64 else count
    return builder.mul(count, constant_int(I64, {"double": 8, "float": 4}[element.kind]))


def _temporary(builder: Builder, count: core.Value, element: Type) -> core.Value:
    malloc = builder.declare("malloc", PTR, [I64])
    return builder.call(malloc, [builder.add(_bytes(builder, count, element), constant_int(I64, 8))],
                        "mpi.adjoint.buffer")


def _free(builder: Builder, pointer: core.Value) -> None:
    builder.call(builder.declare("free", VOID, [PTR]), [pointer])


def _zero(builder: Builder, pointer: core.Value, count: core.Value, element: Type) -> None:
    memset = builder.declare("llvm.memset.p0.i64", VOID, [PTR, I8, I64, I1])
    builder.call(memset, [pointer, constant_int(I8, 0), _bytes(builder, count, element), constant_int(I1, 0)])


def _copy(builder: Builder, target: core.Value, source: core.Value, count: core.Value, element: Type) -> None:
    memcpy = builder.declare("llvm.memcpy.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
    builder.call(memcpy, [target, source, _bytes(builder, count, element), constant_int(I1, 0)])


_HELPERS = """
define internal void @enzpy.mpi.add.{kind}(ptr %target, ptr %source, i64 %n, ptr %won, i32 %rank) {{
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %body ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %done
body:
  %from = getelementptr {kind}, ptr %source, i64 %i
  %value = load {kind}, ptr %from, align {size}
  %all = icmp eq ptr %won, null
  %winner.at = getelementptr i32, ptr %won, i64 %i
  %winner = load i32, ptr %winner.at, align 4
  %mine = icmp eq i32 %winner, %rank
  %take = or i1 %all, %mine
  %added = select i1 %take, {kind} %value, {kind} 0.0
  %to = getelementptr {kind}, ptr %target, i64 %i
  %old = load {kind}, ptr %to, align {size}
  %sum = fadd {kind} %old, %added
  store {kind} %sum, ptr %to, align {size}
  %next = add i64 %i, 1
  br label %loop
done:
  ret void
}}

define internal void @enzpy.mpi.candidates.{kind}(ptr %sent, ptr %reduced, ptr %won, i64 %n, i32 %rank, i32 %size) {{
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %body ]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %done
body:
  %mine.at = getelementptr {kind}, ptr %sent, i64 %i
  %mine = load {kind}, ptr %mine.at, align {size}
  %best.at = getelementptr {kind}, ptr %reduced, i64 %i
  %best = load {kind}, ptr %best.at, align {size}
  %holds = fcmp oeq {kind} %mine, %best
  %candidate = select i1 %holds, i32 %rank, i32 %size
  %to = getelementptr i32, ptr %won, i64 %i
  store i32 %candidate, ptr %to, align 4
  %next = add i64 %i, 1
  br label %loop
done:
  ret void
}}
"""


def _helper(module: core.Module, name: str, element: Type) -> core.Function:
    from ..ir.reader import parse_module

    full = f"enzpy.mpi.{name}.{element.kind}"
    if full not in module.functions:
        parsed = parse_module(_HELPERS.format(kind=element.kind, size={"double": 8, "float": 4}[element.kind]))
        for helper in parsed.functions.values():
            module.functions.setdefault(helper.name, helper)
    return module.functions[full]


def _accumulate(context: MemoryCallContext, target, source, count, element, won=None, rank=None) -> None:
    """target += source (where `won` says this rank won, when given)."""
    builder = context.builder
    count = builder.cast("sext", count, I64) if count.type != I64 else count
    builder.call(_helper(builder.module, "add", element),
                 [target, source, count, won or core.ConstantNull(PTR), rank or constant_int(I32, 0)])


def _status(context: MemoryCallContext) -> core.Value:
    """A status buffer for the derivative's own receives (64 bytes: more than any MPI's)."""
    return context.slot(ArrayType(16, I32))


def _rank(context: MemoryCallContext, communicator: core.Value) -> core.Value:
    slot = context.slot(I32)
    _mpi(context.builder, "MPI_Comm_rank", [communicator, slot])
    return context.builder.load(I32, slot, "mpi.rank")


def _adjoint_or_scratch(context: MemoryCallContext, position: int, count, element: Type, scratch: list):
    """The buffer's shadow, or (no shadow on this rank: a Const array) a zeroed temporary, so that
    the messages still match the other ranks' (freed by `_free_scratch`)."""
    shadow = context.shadow(position)
    if shadow is not None:
        return shadow
    temporary = _temporary(context.builder, count, element)
    _zero(context.builder, temporary, count, element)
    scratch.append(temporary)
    return temporary


def _free_scratch(context: MemoryCallContext, scratch: list) -> None:
    for temporary in scratch:
        _free(context.builder, temporary)


# -- MPI_Send(buffer, count, datatype, dest, tag, comm)

class Send(_MpiRule):
    names = ("MPI_Send",)

    def arrays(self, call):
        return [self.buffer(call, 0, 1, reads=True, writes=False)]

    def forward(self, context):
        self.repeat_on_shadows(context, {0: 1})

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder, count = context.builder, context.value(1)
        received = _temporary(builder, count, element)
        _mpi(builder, "MPI_Recv", [received, count, context.value(2), context.value(3), context.value(4),
                                   context.value(5), _status(context)])
        if context.shadow(0) is not None:
            _accumulate(context, context.shadow(0), received, count, element)
        _free(builder, received)


# -- MPI_Recv(buffer, count, datatype, source, tag, comm, status)

def _actual(context: MemoryCallContext, value: core.Value, wildcard: str, status: core.Value, offset: int):
    """The source or tag a receive matched: the operand, or the status's field for a wildcard."""
    builder = context.builder
    field = builder.load(I32, builder.gep(I8, status, [constant_int(I64, offset)]))
    is_wildcard = builder.icmp("eq", value, constant_int(value.type, handles()[wildcard]))
    return builder.select(is_wildcard, field, value)


class Recv(_MpiRule):
    names = ("MPI_Recv",)

    def arrays(self, call):
        status = ArrayOperand(6, constant_int(I64, 16), constant_int(I64, 1), constant_int(I64, 16), None,
                              reads=False, writes=True, element_type=I32)
        return [self.buffer(call, 0, 1, reads=False, writes=True), status]

    def results_needed(self, call, active):
        return {6}                    # who sent it, with which tag: the adjoint goes back there

    def forward(self, context):
        self.repeat_on_shadows(context, {0: 1}, status=6)

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder, count = context.builder, context.value(1)
        status = context.result(6)
        source = _actual(context, context.value(3), "MPI_ANY_SOURCE", status, _MPICH_SOURCE)
        tag = _actual(context, context.value(4), "MPI_ANY_TAG", status, _MPICH_TAG)
        scratch = []
        shadow = _adjoint_or_scratch(context, 0, count, element, scratch)
        _mpi(builder, "MPI_Send", [shadow, count, context.value(2), source, tag, context.value(5)])
        _zero(builder, shadow, count, element)            # the receive overwrote the buffer
        _free_scratch(context, scratch)


# -- MPI_Sendrecv(send, scount, stype, dest, stag, receive, rcount, rtype, source, rtag, comm, status)

class Sendrecv(_MpiRule):
    names = ("MPI_Sendrecv",)

    def float_type(self, call):
        types = {_FLOATS.get(self.datatype(call, p)) for p in (2, 7)}
        return types.pop() if len(types) == 1 else None

    def unsupported(self, call):
        if self.datatype(call, 2) != self.datatype(call, 7):
            return "'MPI_Sendrecv' with different send and receive datatypes"
        return super().unsupported(call)

    def arrays(self, call):
        status = ArrayOperand(11, constant_int(I64, 16), constant_int(I64, 1), constant_int(I64, 16), None,
                              reads=False, writes=True, element_type=I32)
        return [self.buffer(call, 0, 1, reads=True, writes=False),
                self.buffer(call, 5, 6, reads=False, writes=True), status]

    def results_needed(self, call, active):
        return {11}

    def forward(self, context):
        self.repeat_on_shadows(context, {0: 1, 5: 6}, status=11)

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder = context.builder
        status = context.result(11)
        source = _actual(context, context.value(8), "MPI_ANY_SOURCE", status, _MPICH_SOURCE)
        tag = _actual(context, context.value(9), "MPI_ANY_TAG", status, _MPICH_TAG)
        scratch = []
        received_adjoint = _adjoint_or_scratch(context, 5, context.value(6), element, scratch)
        incoming = _temporary(builder, context.value(1), element)
        # The received values' adjoint goes back to their sender; ours comes from whom we sent to.
        _mpi(builder, "MPI_Sendrecv", [received_adjoint, context.value(6), context.value(7), source, tag,
                                       incoming, context.value(1), context.value(2), context.value(3),
                                       context.value(4), context.value(10), _status(context)])
        _zero(builder, received_adjoint, context.value(6), element)
        if context.shadow(0) is not None:
            _accumulate(context, context.shadow(0), incoming, context.value(1), element)
        _free(builder, incoming)
        _free_scratch(context, scratch)


# -- MPI_Allreduce(send, receive, count, datatype, op, comm)

class Allreduce(_MpiRule):
    names = ("MPI_Allreduce",)
    datatype_position, operation_position = 3, 4
    operations = ("MPI_SUM", "MPI_MAX", "MPI_MIN")

    def arrays(self, call):
        return [self.buffer(call, 0, 2, reads=True, writes=False),
                self.buffer(call, 1, 2, reads=False, writes=True)]

    def contents_needed(self, call, active):
        return {0} if self.operation(call) != "MPI_SUM" else set()

    def results_needed(self, call, active):
        return {1} if self.operation(call) != "MPI_SUM" else set()

    def _winners(self, context, sent, reduced):
        """Per element, the lowest rank whose value won (an int array to free)."""
        builder, count, communicator = context.builder, context.value(2), context.value(5)
        element = self.float_type(context.call)
        rank = _rank(context, communicator)
        size_slot = context.slot(I32)
        _mpi(builder, "MPI_Comm_size", [communicator, size_slot])
        won = _temporary(builder, count, FLOAT)         # 4 bytes an element, as i32
        count64 = builder.cast("sext", count, I64) if count.type != I64 else count
        builder.call(_helper(builder.module, "candidates", element),
                     [sent, reduced, won, count64, rank, builder.load(I32, size_slot)])
        in_place = constant_int(I64, 1)                  # MPI_IN_PLACE is (void *) -1 in MPICH
        _mpi(builder, "MPI_Allreduce", [builder.cast("inttoptr", builder.sub(constant_int(I64, 0), in_place), PTR),
                                        won, count, constant_int(I32, handles()["MPI_INT"]),
                                        constant_int(I32, handles()["MPI_MIN"]), communicator])
        return won, rank

    def forward(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        if self.operation(context.call) == "MPI_SUM":
            self.repeat_on_shadows(context, {0: 2, 1: 2})
            return
        builder, count = context.builder, context.value(2)
        scratch = []
        sent = _adjoint_or_scratch(context, 0, count, element, scratch)
        received = _adjoint_or_scratch(context, 1, count, element, scratch)
        # Max, min: the winner's tangent, to every rank: a sum of (won ? tangent : 0).
        won, rank = self._winners(context, context.value(0), context.value(1))
        mine = _temporary(builder, count, element)
        _zero(builder, mine, count, element)
        _accumulate(context, mine, sent, count, element, won, rank)
        _mpi(builder, "MPI_Allreduce", [mine, received, count, context.value(3),
                                        constant_int(I32, handles()["MPI_SUM"]), context.value(5)])
        _free(builder, mine)
        _free(builder, won)
        _free_scratch(context, scratch)

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder, count = context.builder, context.value(2)
        scratch = []
        received_adjoint = _adjoint_or_scratch(context, 1, count, element, scratch)
        total = _temporary(builder, count, element)
        _mpi(builder, "MPI_Allreduce", [received_adjoint, total, count, context.value(3),
                                        constant_int(I32, handles()["MPI_SUM"]), context.value(5)])
        _zero(builder, received_adjoint, count, element)
        if self.operation(context.call) == "MPI_SUM":
            won, rank = None, None
        else:
            won, rank = self._winners(context, context.contents(0), context.result(1))
        if context.shadow(0) is not None:
            _accumulate(context, context.shadow(0), total, count, element, won, rank)
        if won is not None:
            _free(builder, won)
        _free(builder, total)
        _free_scratch(context, scratch)


# -- MPI_Reduce(send, receive, count, datatype, op, root, comm)

class Reduce(_MpiRule):
    names = ("MPI_Reduce",)
    datatype_position, operation_position = 3, 4

    def arrays(self, call):
        return [self.buffer(call, 0, 2, reads=True, writes=False),
                self.buffer(call, 1, 2, reads=False, writes=True)]

    def forward(self, context):
        self.repeat_on_shadows(context, {0: 2, 1: 2})

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder, count, root, communicator = context.builder, context.value(2), context.value(5), context.value(6)
        at_root = builder.icmp("eq", _rank(context, communicator), root)
        scratch = []
        received_adjoint = _adjoint_or_scratch(context, 1, count, element, scratch)
        total = _temporary(builder, count, element)
        _copy(builder, total, received_adjoint, count, element)   # significant at the root only
        _mpi(builder, "MPI_Bcast", [total, count, context.value(3), root, communicator])
        if context.shadow(0) is not None:
            _accumulate(context, context.shadow(0), total, count, element)
        # The root's receive buffer was overwritten; elsewhere it was not touched.
        zeroed = builder.select(at_root, received_adjoint, total)
        _zero(builder, zeroed, count, element)
        _free(builder, total)
        _free_scratch(context, scratch)


# -- MPI_Bcast(buffer, count, datatype, root, comm)

class Bcast(_MpiRule):
    names = ("MPI_Bcast",)

    def arrays(self, call):
        return [self.buffer(call, 0, 1, reads=True, writes=True)]

    def forward(self, context):
        self.repeat_on_shadows(context, {0: 1})

    def reverse(self, context):
        element = self.float_type(context.call)
        if element is None:
            return
        builder, count, root, communicator = context.builder, context.value(1), context.value(3), context.value(4)
        scratch = []
        shadow = _adjoint_or_scratch(context, 0, count, element, scratch)
        total = _temporary(builder, count, element)
        _mpi(builder, "MPI_Reduce", [shadow, total, count, context.value(2),
                                     constant_int(I32, handles()["MPI_SUM"]), root, communicator])
        # Every rank's copy came from the root's buffer: its adjoint is the sum, the others' copies none.
        _zero(builder, shadow, count, element)
        at_root = builder.icmp("eq", _rank(context, communicator), root)
        kept = builder.select(at_root, shadow, total)
        _accumulate(context, kept, total, count, element)   # at the root: shadow = sum; elsewhere total += total
        _free(builder, total)
        _free_scratch(context, scratch)


# -- MPI_Isend / MPI_Irecv(buffer, count, datatype, peer, tag, comm, request); MPI_Wait(request, status);
#    MPI_Waitall(count, requests, statuses): the derivative requests live in mpi/requests.py

def _request_slots(position: int, count) -> ArrayOperand:
    return ArrayOperand(position, count, constant_int(I64, 1), count, None, reads=True, writes=True,
                        element_type=I32)


def _callback(builder: Builder, name: str, arguments) -> None:
    from ..mpi import requests  # noqa: F401  (registers the callbacks with LLVM)
    builder.call(builder.declare(name, VOID, [a.type for a in arguments]), list(arguments))


class _Nonblocking(_MpiRule):
    kind = 0
    reads, writes = True, False

    def arrays(self, call):
        return [self.buffer(call, 0, 1, reads=self.reads, writes=self.writes),
                _request_slots(6, constant_int(I64, 1))]

    def results_needed(self, call, active):
        return {6}                    # the request's handle: what the Wait that completes it names

    def _post(self, context, callback: str, handle_pointer) -> None:
        if self.float_type(context.call) is None:
            return
        shadow = context.shadow(0) or core.ConstantNull(PTR)
        _callback(context.builder, callback, [constant_int(I32, self.kind), shadow,
                                              *(context.value(i) for i in range(1, 6)), handle_pointer])

    def forward(self, context):
        self._post(context, "enzpy_mpi_tangent_post", context.value(6))

    def augment(self, context):
        self._post(context, "enzpy_mpi_record", context.value(6))

    def reverse(self, context):
        self._post(context, "enzpy_mpi_complete_adjoint", context.result(6))


class Isend(_Nonblocking):
    names = ("MPI_Isend",)
    kind = 0


class Irecv(_Nonblocking):
    names = ("MPI_Irecv",)
    kind = 1
    reads, writes = False, True


class _Completion(_MpiRule):
    """Wait and Waitall: forward mode waits for the tangents too; the reverse sweep posts the
    adjoint calls of the requests waited for (mpi/requests.py)."""

    requests_position = 0

    def unsupported(self, call):
        return None

    def count(self, call) -> core.Value:
        return constant_int(I32, 1)

    def arrays(self, call):
        return [_request_slots(self.requests_position, self.count(call))]

    def contents_needed(self, call, active):
        return {self.requests_position}            # the handles, before the call nulls them

    def forward(self, context):
        _callback(context.builder, "enzpy_mpi_tangent_wait",
                  [context.contents(self.requests_position), self._count(context)])
        context.done()

    def reverse(self, context):
        _callback(context.builder, "enzpy_mpi_post_adjoints",
                  [context.contents(self.requests_position), self._count(context)])

    def _count(self, context):
        count = self.count(context.call)
        return count if isinstance(count, core.Constant) else context.value(0)


class Wait(_Completion):
    names = ("MPI_Wait",)


class Waitall(_Completion):
    names = ("MPI_Waitall",)
    requests_position = 1

    def count(self, call):
        return call.operands[0]


# -- MPI_Barrier(comm): no data; mirrored in the reverse sweep, as Enzyme does (the ranks keep in step)

class Barrier(_MpiRule):
    names = ("MPI_Barrier",)

    def unsupported(self, call):
        return None

    def arrays(self, call):
        return []

    def forward(self, context):
        pass

    def reverse(self, context):
        _mpi(context.builder, "MPI_Barrier", [context.value(0)])


for _rule in (Send(), Recv(), Sendrecv(), Allreduce(), Reduce(), Bcast(), Isend(), Irecv(), Wait(), Waitall(),
              Barrier()):
    register_memory_call_rule(_rule)
