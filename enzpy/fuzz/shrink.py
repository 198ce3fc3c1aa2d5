"""Reduce a failing kernel to a small one that fails the same way (greedy, as C-Reduce does).

Each candidate is one edit of the kernel tree: delete a statement, replace an
`if` or a loop by one of its bodies, give a loop one trip, replace an
expression by one of its operands or by a literal, make an update a plain
assignment, shorten the arrays, lower `m`. The first candidate that still
fails the same way is kept and the search starts over from it, until no edit
keeps the failure or the budget of checks is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from .grammar import Apply, Assign, CallHelper, Element, Exit, For, If, Kernel, Number, Reduce, Store, Swap, While


def shrink(kernel: Kernel, still_fails: Callable[[Kernel], bool], budget: int = 200) -> tuple[Kernel, int]:
    """(the smallest kernel found that still fails, checks spent)."""
    current, spent = kernel, 0
    progress = True
    while progress and spent < budget:
        progress = False
        for candidate in candidates(current):
            if _size(candidate) >= _size(current):
                continue
            spent += 1
            if still_fails(candidate):
                current, progress = candidate, True
                break
            if spent >= budget:
                break
    return current, spent


def _size(kernel: Kernel) -> tuple[int, int, int]:
    return (len(kernel.source()), kernel.n, kernel.m)


def candidates(kernel: Kernel) -> Iterator[Kernel]:
    """Every one-edit reduction of `kernel`, biggest cuts first."""
    for body in _edits(kernel.body):
        yield replace(kernel, body=body)
    for n in range(2, kernel.n):
        yield replace(kernel, n=n)
    for m in range(0, kernel.m):
        yield replace(kernel, m=m)


def _edits(statements: tuple) -> Iterator[tuple]:
    for index in range(len(statements)):
        yield statements[:index] + statements[index + 1:]
    for index, statement in enumerate(statements):
        for spliced in _replacements(statement):
            yield statements[:index] + spliced + statements[index + 1:]


def _replacements(statement) -> Iterator[tuple]:
    """Sequences of statements that may stand for `statement`, each smaller."""
    if isinstance(statement, If):
        yield statement.body
        yield statement.otherwise
        if statement.otherwise:
            yield (replace(statement, otherwise=()),)
        for body in _edits(statement.body):
            yield (replace(statement, body=body),)
        for otherwise in _edits(statement.otherwise):
            yield (replace(statement, otherwise=otherwise),)
        for condition in _simpler(statement.condition):
            yield (replace(statement, condition=condition),)
    elif isinstance(statement, (For, While)):
        if isinstance(statement, For) and statement.bound != "1":
            yield (replace(statement, bound="1"),)
        yield statement.body
        for body in _edits(statement.body):
            yield (replace(statement, body=body),)
        if isinstance(statement, While):
            for condition in _simpler(statement.condition):
                yield (replace(statement, condition=condition),)
    elif isinstance(statement, (Assign, Store)):
        if statement.augmented:
            yield (replace(statement, augmented=False),)
        for value in _simpler(statement.value):
            yield (replace(statement, value=value),)
    elif isinstance(statement, Exit):
        for condition in _simpler(statement.condition):
            yield (replace(statement, condition=condition),)
    elif isinstance(statement, (Swap, CallHelper)):
        return


def _simpler(expression) -> Iterator:
    """Smaller expressions to put in place of `expression`: its operands (and theirs), a literal."""
    if isinstance(expression, Apply):
        yield from expression.operands
        for position, operand in enumerate(expression.operands):
            for smaller in _simpler(operand):
                operands = expression.operands[:position] + (smaller,) + expression.operands[position + 1:]
                yield replace(expression, operands=operands)
    if isinstance(expression, (Apply, Reduce, Element)) or (
            not isinstance(expression, Number) and getattr(expression, "text", "") != "s"):
        yield Number(1.25)
    if isinstance(expression, (Apply, Reduce)):
        yield Element("x", "0")
