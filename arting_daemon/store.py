"""Content-addressed image store in the data directory.

Images are kept as PNG under ``images/<first two hex>/<sha256>.png``. Arting's
result URLs may expire; once an image is here it is ours, and the same bytes are
stored once however often they come back. All disk and Pillow work runs in a
thread so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import datadir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StoredImage:
    hash: str
    width: int
    height: int
    size: int


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, without decoding the image."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def to_png(data: bytes) -> bytes:
    """PNG bytes as they are; any other image format converted once."""
    if png_size(data):
        return data
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.save(out, "PNG")
        return out.getvalue()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "images"

    def path(self, digest: str) -> Path:
        if not _HASH.match(digest):
            raise ValueError("not an image hash")
        return self.root / digest[:2] / f"{digest}.png"

    def exists(self, digest: str) -> bool:
        try:
            return self.path(digest).is_file()
        except ValueError:
            return False

    async def put(self, data: bytes) -> StoredImage:
        """Store an image (converted to PNG if needed); returns its hash and size."""
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> StoredImage:
        png = to_png(data)
        digest = hashlib.sha256(png).hexdigest()
        path = self.path(digest)
        if not path.exists():
            datadir.subdir(path.parent)
            datadir.write(path, png)    # two jobs may store the same image at once
        width, height = png_size(png) or (0, 0)
        return StoredImage(digest, width, height, len(png))

    async def read(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.path(digest).read_bytes)
