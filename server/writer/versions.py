"""One Decider per version (DESIGN §13): each version's working state, undo stacks and
summary cell ids, loaded from its schema; requests go to the decider of the version
they name. Every decider's `published` is the one seq chain of response_duck."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from protocol.actions import action_version
from protocol.errors import ProtocolError
from protocol.versions import ACTUAL
from server.store.versions import Version, in_version, read_versions
from server.writer.batch import Conn, Limits
from server.writer.cell_ids import CellIds
from server.writer.decide import Decider, Request
from server.writer.effects import Effects
from server.writer.history import load_stacks
from server.writer.state import load

BARRIER_IN_VERSION = (
    "a version other than actual is edited cell by cell (summary cells, sales rows by "
    "sale_id, block edits); condition edits and imports change actual"
)


@dataclass
class Loaded:
    """What one version needs: its decider and its summary's cell ids."""

    version: Version
    decider: Decider
    cell_ids: CellIds


def load_versions(
    con: Conn, limits: Limits, kept: dict[str, Loaded] | None = None, reload: bool = True
) -> dict[str, Loaded]:
    """Every version's state as DuckDB holds it now; the undo stacks of `kept` versions
    stay (they are the writer's, persisted as they change). With reload=False the
    states of `kept` versions stay too (a version was created or locked: nothing else
    changed), and only new versions are loaded."""
    kept = kept or {}
    out = {}
    for name, version in read_versions(con).items():
        previous = kept.get(name)
        if previous is not None and not reload:
            out[name] = Loaded(version, previous.decider, previous.cell_ids)
            continue
        with in_version(con, version.schema):
            state = load(con)
            cell_ids = CellIds.load(con)
            if previous is not None:
                decider = previous.decider
                decider.state = state
            else:
                decider = Decider(state, limits, load_stacks(con, limits.undo_depth))
        out[name] = Loaded(version, decider, cell_ids)
    for name, loaded in out.items():  # a `like` spread may take another version's mix
        loaded.decider.version = name
        loaded.decider.reference_state = lambda other: (
            out[other].decider.state if other in out else None
        )
    return out


def runs_by_version(requests: list[Request]) -> Iterator[tuple[str, list[Request]]]:
    """Consecutive requests of one version, in order."""
    run: list[Request] = []
    for request in requests:
        if run and action_version(request.action) != action_version(run[0].action):
            yield action_version(run[0].action), run
            run = []
        run.append(request)
    if run:
        yield action_version(run[0].action), run


def refusal(loaded: dict[str, Loaded], version: str) -> ProtocolError | None:
    """Why requests of `version` cannot be decided (none when they can)."""
    found = loaded.get(version)
    if found is None:
        return ProtocolError("unknown_version", f"there is no version {version!r}")
    if found.version.locked:
        return ProtocolError("locked", f"version {version!r} is locked; an admin can unlock it")
    return None


def decider_for(loaded: dict[str, Loaded], version: str) -> Loaded:
    """The decider of `version`; actual's for a version that does not exist (whose
    requests are rejected, see `refusal`)."""
    return loaded.get(version) or loaded[ACTUAL]


def set_published(loaded: dict[str, Loaded], seq: str | None) -> None:
    for each in loaded.values():
        each.decider.published = seq


def decide_in(
    loaded: Loaded,
    requests: list[Request],
    failed: dict[str, ProtocolError],
    defer: bool = False,
) -> tuple[dict[str, Any], Effects]:
    """Decide a run of one version: the payload and each of its rows name the version
    (unless actual; a row without one is actual's), the effects its schema (with
    `defer`, complete once the decider's `finish` ran)."""
    payload, effects = loaded.decider.decide(requests, failed, defer)
    if loaded.version.schema is not None:
        name = loaded.version.name
        payload["version"] = name
        for row in (*payload["rows"], *payload["base"], *payload["holds"]):
            row["version"] = name  # frames merge entries of several versions
        effects.schema = loaded.version.schema
    return payload, effects
