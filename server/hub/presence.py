"""Who is connected to this process and which cell each is on.

A user appears to others once they report a cursor; moves and departures go out as
small deltas, and a newcomer gets the current list in its welcome.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.codec import dumps_text


@dataclass
class Member:
    id: str
    name: str
    send: Callable[[str], None]
    cell: dict[str, Any] | None = None
    announced: bool = False

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "cell": self.cell}


class Presence:
    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self._ids = itertools.count(1)

    def join(self, name: str, send: Callable[[str], None]) -> Member:
        member = Member(f"u{next(self._ids)}", name, send)
        self._members[member.id] = member
        return member

    def others(self, member: Member) -> list[dict[str, Any]]:
        return [m.public() for m in self._members.values() if m.announced and m is not member]

    def move(self, member: Member, cell: dict[str, Any] | None) -> None:
        member.cell = cell
        member.announced = True
        self._broadcast(member, {"type": "presence", **member.public()})

    def leave(self, member: Member) -> None:
        self._members.pop(member.id, None)
        if member.announced:
            self._broadcast(member, {"type": "presence", **member.public(), "gone": True})

    def _broadcast(self, source: Member, message: dict[str, Any]) -> None:
        frame = dumps_text(message)
        for member in list(self._members.values()):
            if member is not source:
                member.send(frame)
