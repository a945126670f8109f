"""Import uploads: the CSV body of `POST /import/{table}`, saved where the writer reads it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from protocol.actions import IMPORT_ID
from protocol.errors import ProtocolError

MAX_UPLOAD_BYTES = 512 << 20  # largest import body


def uploads_dir(data_dir: Path) -> Path:
    return data_dir.absolute() / "imports"


def upload_path(data_dir: Path, import_id: str) -> Path:
    if not IMPORT_ID.match(import_id):
        raise ValueError(f"bad import id {import_id!r}")
    return uploads_dir(data_dir) / f"{import_id}.csv"


async def save_upload(
    chunks: AsyncIterator[bytes],
    data_dir: Path,
    import_id: str,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> Path:
    """Write an uploaded CSV body to <data_dir>/imports/<import_id>.csv (via a .part file,
    so a partial upload is never seen); too_big (413) above `max_bytes`, nothing kept."""
    path = upload_path(data_dir, import_id)
    part = path.with_suffix(".part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    file = await asyncio.to_thread(part.open, "wb")
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise ProtocolError("too_big", f"the import file is larger than {max_bytes} bytes")
            await asyncio.to_thread(file.write, chunk)
    except BaseException:
        await asyncio.to_thread(file.close)
        part.unlink(missing_ok=True)
        raise
    await asyncio.to_thread(file.close)
    if size == 0:
        part.unlink(missing_ok=True)
        raise ProtocolError(
            "invalid_import", "the request body is empty: send the CSV file as the body", line=1
        )
    part.replace(path)
    return path
