"""Per-user undo and redo stacks (DESIGN §12): each entry is the step of an applied edit,
block edit or spread of that user, with every row it changed before and after.

A user's stacks keep `depth` steps, and fewer when their steps hold more than
`max_rows` changed row values (about 24 bytes each in memory): then the oldest go."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from server.writer.changes import Step


@dataclass
class Stack:
    done: deque[Step]  # undoable, newest last
    undone: deque[Step]  # redoable, newest last


@dataclass
class UndoStacks:
    depth: int = 100
    max_rows: int = 2_000_000
    users: dict[str, Stack] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)  # users whose stacks are to persist

    def stack(self, user: str) -> Stack:
        found = self.users.get(user)
        if found is None:
            found = self.users[user] = Stack(deque(maxlen=self.depth), deque(maxlen=self.depth))
        return found

    def pushed(self, step: Step) -> None:
        """A new edit: undoable, and the user's redo steps are gone."""
        stack = self.stack(step.user)
        stack.done.append(step)
        stack.undone.clear()
        held = sum(s.values for s in stack.done)
        while held > self.max_rows and len(stack.done) > 1:
            held -= stack.done.popleft().values
        self.changed.add(step.user)

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
        target.append(source.pop())
        self.changed.add(user)

    def listing(self, user: str) -> tuple[list[str], list[str]]:
        """The request ids of a user's (done, undone) steps, oldest first."""
        stack = self.stack(user)
        return [s.request for s in stack.done], [s.request for s in stack.undone]

    def take_changed(self) -> dict[str, tuple[list[str], list[str]]]:
        out = {user: self.listing(user) for user in sorted(self.changed)}
        self.changed = set()
        return out
