"""Per-user undo and redo stacks (DESIGN §12): each entry is the step of an applied edit,
block edit or spread of that user, with every row it changed before and after.

A user's stacks keep `depth` steps; all stacks together hold at most `max_values`
changed row values (12 bytes each in memory where they fit 32 bits, else 24): past
that, the oldest step of whoever holds the most goes (a user's newest step always
stays)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from server.writer.changes import Step

Snapshot = tuple[tuple[Step, ...], tuple[Step, ...]]  # a user's (done, undone), oldest first


@dataclass
class Stack:
    done: deque[Step]  # undoable, newest last
    undone: deque[Step]  # redoable, newest last

    @property
    def values(self) -> int:
        return sum(s.values for s in self.done) + sum(s.values for s in self.undone)


@dataclass
class UndoStacks:
    depth: int = 100
    max_values: int = 4_000_000
    users: dict[str, Stack] = field(default_factory=dict)
    total: int = 0  # row values held by all stacks
    changed: set[str] = field(default_factory=set)  # users whose stacks are to persist

    def stack(self, user: str) -> Stack:
        found = self.users.get(user)
        if found is None:
            found = self.users[user] = Stack(deque(maxlen=self.depth), deque(maxlen=self.depth))
        return found

    def pushed(self, step: Step) -> None:
        """A new edit: undoable, and the user's redo steps are gone. The step is kept
        without its cells: undo needs only the rows (as steps loaded back from DuckDB
        hold them), and a paste's few thousand cells are objects that every full pass
        of the garbage collector would walk for as long as the step stays."""
        stack = self.stack(step.user)
        self._append(stack.done, step.without_cells())
        self.total -= sum(s.values for s in stack.undone)
        stack.undone.clear()
        self.changed.add(step.user)
        while self.total > self.max_values:
            heaviest = max(  # rare: only past the budget
                (u for u, s in self.users.items() if len(s.done) + len(s.undone) > 1),
                key=lambda u: (self.users[u].values, u),
                default=None,
            )
            if heaviest is None:
                return
            dropped = self.users[heaviest]
            oldest = dropped.done if dropped.done else dropped.undone
            self.total -= oldest.popleft().values
            self.changed.add(heaviest)

    def _append(self, steps: deque[Step], step: Step) -> None:
        if len(steps) == steps.maxlen:
            self.total -= steps[0].values  # the deque drops it
        steps.append(step)
        self.total += step.values

    def recount(self) -> None:
        self.total = sum(stack.values for stack in self.users.values())

    def top(self, user: str, redo: bool) -> Step | None:
        stack = self.users.get(user)
        if stack is None:
            return None
        steps = stack.undone if redo else stack.done
        return steps[-1] if steps else None

    def moved(self, user: str, redo: bool) -> None:
        """The top step was undone (redo=False) or redone: it moves to the other stack."""
        stack = self.stack(user)
        source, target = (stack.undone, stack.done) if redo else (stack.done, stack.undone)
        step = source.pop()
        self.total -= step.values
        self._append(target, step)
        self.changed.add(user)

    def listing(self, user: str) -> tuple[list[str], list[str]]:
        """The request ids of a user's (done, undone) steps, oldest first."""
        stack = self.stack(user)
        return [s.request for s in stack.done], [s.request for s in stack.undone]

    def take_changed(self) -> dict[str, Snapshot]:
        """The stacks of the users whose stacks changed since the last call, as tuples
        of steps (a copy at C speed; the persister lists their request ids)."""
        out = {}
        for user in sorted(self.changed):
            stack = self.users[user]
            out[user] = (tuple(stack.done), tuple(stack.undone))
        self.changed = set()
        return out
