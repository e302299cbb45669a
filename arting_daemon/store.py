"""Content-addressed image store in the data directory.

Images are kept as PNG under ``images/<first two hex>/<sha256>.png``. Arting's
result URLs may expire; once an image is here it is ours, and the same bytes are
stored once however often they come back. All disk and Pillow work runs in a
thread so the event loop never waits on it.

For a bounded store (``retention.py``) the store tells who listens (``on_put``) what it
stored, and notes in memory when an image was served (``touch``): no disk write per
request. ``remove`` never takes an image stored (or stored again) within ``fresh``
seconds, so an image a request has just been given cannot vanish under it.

A picture a provider marked with its origin (``provenance.py``) is also named by its
likeness under ``likeness/``, so the same pixels sent back by a client find it
(``marked_like``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import datadir, provenance

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HASH = re.compile(r"^[0-9a-f]{64}$")
#: Bytes read of an image being removed to see whether a provider marked it.
_HEAD = 64 * 1024


@dataclass(frozen=True)
class StoredImage:
    hash: str
    width: int
    height: int
    size: int
    #: False when the same bytes were in the store already.
    new: bool = True


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
        #: ``<likeness>`` → the hash of the marked picture with those pixels.
        self.likenesses = root / "likeness"
        #: Called (on the event loop) with every image ``put`` stored.
        self.on_put: Callable[[StoredImage], None] | None = None
        self._served: dict[str, float] = {}
        #: Held while a file is checked and kept (``_put``) or checked and removed.
        self._lock = threading.Lock()

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
        stored = await asyncio.to_thread(self._put, data)
        if self.on_put is not None:
            self.on_put(stored)
        return stored

    def _put(self, data: bytes) -> StoredImage:
        png = to_png(data)
        digest = hashlib.sha256(png).hexdigest()
        path = self.path(digest)
        width, height = png_size(png) or (0, 0)
        with self._lock:
            try:
                os.utime(path)          # there already: fresh again (see ``remove``)
                return StoredImage(digest, width, height, len(png), new=False)
            except FileNotFoundError:
                pass
        datadir.subdir(path.parent)
        datadir.write(path, png)        # two jobs may store the same image at once
        if provenance.origin(png) is not None:
            datadir.subdir(self.likenesses)
            datadir.write(self.likenesses / provenance.likeness(png), digest.encode())
        return StoredImage(digest, width, height, len(png))

    def marked_like(self, png: bytes) -> str | None:
        """The hash of the stored picture a provider marked that has the pixels of
        ``png``, if there is one. Blocking."""
        path = self.likenesses / provenance.likeness(png)
        try:
            digest = path.read_text()
        except FileNotFoundError:
            return None
        return digest if self.exists(digest) else None

    async def read(self, digest: str) -> bytes:
        return await asyncio.to_thread(self.path(digest).read_bytes)

    # --- for a bounded store ------------------------------------------------------------

    def touch(self, digest: str) -> None:
        """Note that an image was served now (in memory; see ``take_served``)."""
        self._served[digest] = time.time()

    def take_served(self) -> dict[str, float]:
        """When each image was last served since the previous call."""
        served, self._served = self._served, {}
        return served

    def served_since(self, digest: str, since: float) -> bool:
        """Whether the image was served after ``since`` (and not yet taken)."""
        return self._served.get(digest, 0.0) > since

    def remove(self, digest: str, fresh: float, now: float | None = None) -> bool:
        """Delete an image unless it was stored within ``fresh`` seconds of ``now`` (default:
        the time now) (blocking: call it in a thread). True when the image is gone."""
        path = self.path(digest)
        with self._lock:
            try:
                if path.stat().st_mtime > (time.time() if now is None else now) - fresh:
                    return False
                with path.open("rb") as file:       # the mark comes before the pixels
                    marked = provenance.origin(file.read(_HEAD)) is not None
                if marked:
                    likeness = provenance.likeness(path.read_bytes())
                    (self.likenesses / likeness).unlink(missing_ok=True)
                path.unlink()
            except FileNotFoundError:
                pass
        return True

    def scan(self) -> dict[str, tuple[int, float]]:
        """Every stored image: hash → (size in bytes, when it was stored). Blocking."""
        found: dict[str, tuple[int, float]] = {}
        if not self.root.is_dir():
            return found
        for folder in os.scandir(self.root):
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder.path):
                digest = entry.name.removesuffix(".png")
                if entry.name.endswith(".png") and _HASH.match(digest):
                    try:
                        info = entry.stat()
                    except FileNotFoundError:
                        continue
                    found[digest] = (info.st_size, info.st_mtime)
        return found
