"""Dominators, natural loops and reachability of a function's CFG.

Reverse mode mirrors the forward CFG: a loop runs backwards by counting its
iterations down, so every cycle must belong to a natural loop (a header that
dominates its body). Irreducible control flow is reported, not guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DifferentiationError
from ..ir import core


def reverse_post_order(entry: core.Block) -> list[core.Block]:
    """Blocks reachable from `entry`, each after all its predecessors except along back edges."""
    order, seen, stack = [], {entry}, [(entry, iter(entry.successors()))]
    while stack:
        block, successors = stack[-1]
        for successor in successors:
            if successor not in seen:
                seen.add(successor)
                stack.append((successor, iter(successor.successors())))
                break
        else:
            stack.pop()
            order.append(block)
    return order[::-1]


def predecessor_map(blocks: list[core.Block]) -> dict[core.Block, list[core.Block]]:
    """Each block's distinct predecessors, in block order."""
    predecessors: dict[core.Block, list[core.Block]] = {b: [] for b in blocks}
    for block in blocks:
        for successor in dict.fromkeys(block.successors()):
            if successor in predecessors:
                predecessors[successor].append(block)
    return predecessors


class Dominators:
    """Immediate dominators by Cooper, Harvey and Kennedy's iteration over reverse post-order."""

    def __init__(self, entry: core.Block, predecessors: dict[core.Block, list[core.Block]]):
        self.order = reverse_post_order(entry)
        position = {b: i for i, b in enumerate(self.order)}
        self.immediate: dict[core.Block, core.Block] = {entry: entry}
        changed = True
        while changed:
            changed = False
            for block in self.order[1:]:
                processed = [p for p in predecessors[block] if p in self.immediate]
                new = processed[0]
                for other in processed[1:]:
                    new = self._intersect(other, new, position)
                if self.immediate.get(block) is not new:
                    self.immediate[block] = new
                    changed = True
        self.entry = entry

    def _intersect(self, a, b, position):
        while a is not b:
            while position[a] > position[b]:
                a = self.immediate[a]
            while position[b] > position[a]:
                b = self.immediate[b]
        return a

    def dominates(self, a: core.Block, b: core.Block) -> bool:
        """Whether every path from the entry to `b` passes through `a`."""
        while True:
            if b is a:
                return True
            if b is self.entry or b not in self.immediate:
                return False
            b = self.immediate[b]


@dataclass(eq=False)
class Loop:
    """A natural loop: a header that dominates a body reaching back to it."""

    header: core.Block
    """The only block entered from outside the loop."""
    blocks: set[core.Block]
    """Header and body."""
    latches: list[core.Block] = field(default_factory=list)
    """Blocks inside the loop that branch back to the header."""
    entries: list[core.Block] = field(default_factory=list)
    """Predecessors of the header outside the loop."""
    parent: "Loop | None" = None
    """The innermost loop containing this one."""

    @property
    def depth(self) -> int:
        return 1 if self.parent is None else self.parent.depth + 1

    def __repr__(self) -> str:
        return f"Loop({self.header.name!r}, {len(self.blocks)} blocks)"


class LoopInfo:
    """The natural loops of a function's blocks, nested."""

    def __init__(self, blocks: list[core.Block], entry: core.Block, function_name: str = "?"):
        self.predecessors = predecessor_map(blocks)
        self.dominators = Dominators(entry, self.predecessors)
        by_header: dict[core.Block, Loop] = {}
        for block in self.dominators.order:
            for successor in dict.fromkeys(block.successors()):
                if self.dominators.dominates(successor, block):
                    loop = by_header.setdefault(successor, Loop(successor, {successor}))
                    loop.latches.append(block)
                    self._add_body(loop, block)
        self.loops = sorted(by_header.values(), key=lambda loop: len(loop.blocks), reverse=True)
        self.innermost: dict[core.Block, Loop] = {}
        for loop in self.loops:                  # outer loops first: inner ones overwrite
            for block in loop.blocks:
                enclosing = self.innermost.get(block)
                if block is loop.header and enclosing is not None:
                    loop.parent = enclosing
                self.innermost[block] = loop
            loop.entries = [p for p in self.predecessors[loop.header] if p not in loop.blocks]
        self._check_reducible(function_name)

    def _add_body(self, loop: Loop, latch: core.Block) -> None:
        work = [latch]
        while work:
            block = work.pop()
            if block in loop.blocks:
                continue
            loop.blocks.add(block)
            work.extend(self.predecessors[block])

    def _check_reducible(self, function_name: str) -> None:
        """Without back edges the CFG must be acyclic, or some cycle has no header."""
        back_edges = {(latch, loop.header) for loop in self.loops for latch in loop.latches}
        state: dict[core.Block, int] = {}
        for root in self.dominators.order:
            if root in state:
                continue
            stack = [(root, iter(root.successors()))]
            state[root] = 1
            while stack:
                block, successors = stack[-1]
                for successor in successors:
                    if (block, successor) in back_edges or successor not in self.predecessors:
                        continue
                    if state.get(successor) == 1:
                        raise DifferentiationError(
                            f"irreducible control flow (a cycle through block {successor.name!r} has no "
                            f"single entry) is not supported (function @{function_name})")
                    if successor not in state:
                        state[successor] = 1
                        stack.append((successor, iter(successor.successors())))
                        break
                else:
                    state[block] = 2
                    stack.pop()

    def loops_of(self, block: core.Block) -> tuple[Loop, ...]:
        """The loops containing `block`, outermost first."""
        chain = []
        loop = self.innermost.get(block)
        while loop is not None:
            chain.append(loop)
            loop = loop.parent
        return tuple(reversed(chain))

    def exits(self, loop: Loop) -> list[tuple[core.Block, core.Block]]:
        """Edges (inside, outside) leaving `loop`."""
        return [(block, successor) for block in loop.blocks
                for successor in dict.fromkeys(block.successors()) if successor not in loop.blocks]


def reachable_blocks(blocks: list[core.Block]) -> dict[core.Block, set[core.Block]]:
    """Blocks reachable from each block along at least one edge (itself only through a cycle)."""
    successors = {b: [s for s in dict.fromkeys(b.successors())] for b in blocks}
    reachable: dict[core.Block, set[core.Block]] = {}
    for block in blocks:
        seen: set[core.Block] = set()
        work = list(successors[block])
        while work:
            current = work.pop()
            if current in seen:
                continue
            seen.add(current)
            work.extend(successors.get(current, ()))
        reachable[block] = seen
    return reachable
