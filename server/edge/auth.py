"""Tokens and roles: viewer (read, subscribe) < editor (+ edit, hold) < admin (+ import,
export). With no tokens configured the server runs open, and only on loopback."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError

ROLES = ("viewer", "editor", "admin")
OPEN_ROLE = "admin"  # everyone, in open mode (loopback only)


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    def require(self, role: str) -> None:
        if ROLES.index(self.role) < ROLES.index(role):
            raise ProtocolError(
                "forbidden", f"this needs the {role} role; {self.name} is a {self.role}"
            )


class TokenError(ValueError):
    """A tokens setting or file that does not parse."""


def parse_tokens(lines: list[str], source: str) -> dict[str, Identity]:
    """`name:role:token` entries (blank lines and # comments ignored)."""
    tokens: dict[str, Identity] = {}
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = entry.split(":", 2)
        if len(parts) != 3 or not all(parts):
            raise TokenError(f"{source} entry {number}: expected name:role:token")
        name, role, token = parts
        if role not in ROLES:
            raise TokenError(f"{source} entry {number}: role must be one of {', '.join(ROLES)}")
        if len(token) < 16:
            raise TokenError(f"{source} entry {number}: tokens need at least 16 characters")
        if token in tokens:
            raise TokenError(f"{source} entry {number}: duplicate token")
        tokens[token] = Identity(name, role)
    return tokens


def load_tokens(spec: str | None, path: Path | None) -> dict[str, Identity]:
    tokens: dict[str, Identity] = {}
    if spec:
        tokens.update(parse_tokens(spec.split(","), "DUCKSHEET_TOKENS"))
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TokenError(f"cannot read tokens file {path}: {exc.strerror}") from exc
        tokens.update(parse_tokens(text.splitlines(), str(path)))
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenModeRefused(SystemExit):
    pass


def refuse_open_mode(host: str, is_open: bool) -> None:
    """Stop a server that would let anyone edit from beyond this machine."""
    if is_open and not is_loopback(host):
        raise OpenModeRefused(
            f"refusing to serve {host} without tokens: anyone could edit. Add tokens "
            "with DUCKSHEET_TOKENS=name:role:token[,...] or --tokens-file FILE (one "
            "name:role:token a line; roles viewer, editor, admin), or bind 127.0.0.1."
        )


class Authenticator:
    def __init__(self, tokens: dict[str, Identity]) -> None:
        self._tokens = tokens

    @property
    def open(self) -> bool:
        return not self._tokens

    def overrides_holds(self, identity: Identity) -> bool:
        """May release anyone's hold: an admin by token. (In open mode names are chosen
        by the client, so no one is trusted more than the name they give.)"""
        return not self.open and identity.role == "admin"

    def identify(self, token: str | None, name: str = "anonymous") -> Identity:
        """Who holds `token` (open mode: anyone, under the name they chose)."""
        if self.open:
            return Identity(name, OPEN_ROLE)
        if not token:
            raise ProtocolError("unauthorized", "a token is required")
        found = None
        for known, identity in self._tokens.items():  # compare all: no timing hint
            if hmac.compare_digest(known.encode(), token.encode()):
                found = identity
        if found is None:
            raise ProtocolError("unauthorized", "unknown token")
        return found

    def identify_bearer(self, header: str | None) -> Identity:
        if self.open:
            return Identity("rest", OPEN_ROLE)
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ProtocolError("unauthorized", "send 'Authorization: Bearer <token>'")
        return self.identify(token.strip())
