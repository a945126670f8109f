"""Listening sockets: the public one (bound here, or inherited from `ducksheet serve`)
and the data process's internal one (a unix socket in the data dir, else loopback)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from server.store.embedded_redis import socket_path_fits

DATA_SOCKET = "data-api.sock"
BACKLOG = 2048


def bind_public(host: str, port: int) -> socket.socket:
    """The public socket, bound and listening, to be shared with web processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def inherited(fd: int) -> socket.socket:
    """A listening socket handed down by the parent as file descriptor `fd`."""
    return socket.socket(fileno=fd)


def public_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_data_api(data_dir: Path, listen: str) -> tuple[socket.socket, str]:
    """The data process's internal socket and the URL web processes use to reach it.

    `listen` ("host:port") binds TCP, for web processes on other hosts; empty binds
    <data_dir>/data-api.sock (owner-only), or a loopback port when that path is too
    long for a unix socket. Call it once DuckDB's lock is held: a socket file left then
    is stale, since no other data process can be serving this data dir.
    """
    if listen:
        host, _, port = listen.rpartition(":")
        sock = bind_public(host.strip("[]") or "127.0.0.1", int(port))
        return sock, public_url(sock)
    path = (data_dir / DATA_SOCKET).absolute()
    if not socket_path_fits(path):
        sock = bind_public("127.0.0.1", 0)
        return sock, public_url(sock)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)  # the secret guards it too; this keeps other users off it
    sock.listen(BACKLOG)
    return sock, f"unix://{path}"
