"""Arting tokens added at runtime (the admin API, ``arting-daemon tokens``, the page),
kept so that they survive restarts and reach every replica.

A vault holds entries: a label, the token, the Cloudflare cookies and User-Agent pasted
with it, and its pace (``daily_limit``, ``min_interval``). Tokens from the configuration
are not in it: they stay where the operator put them.

At rest the entries are either in ``tokens.json`` in the data directory, a file only the
daemon's user may read (``datadir``), or, with ``secret_key`` set, sealed with
libsodium's secret box (XSalsa20-Poly1305, through PyNaCl; the key derived from
``secret_key`` with scrypt) in that file or in Redis (``replicas/vault.py``; Redis needs
the key: a Redis server is not a private file). PyNaCl rather than ``cryptography``:
the same sealing for a tenth of the container image's bytes.

Entries are deduplicated by a *keyed* fingerprint (HMAC-SHA256 of the token, keyed with
``secret_key`` or, without one, a random salt kept in the file): exports and listings
show it, and it cannot be tested against guessed tokens by whoever reads them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ... import datadir, logs
from ...config import ConfigError
from ...errors import FeatureDisabled, InvalidRequest
from ...tasks import stop

log = logging.getLogger(__name__)

#: How often a running daemon looks whether another process changed the vault.
REFRESH = 0.5
FILE = "tokens.json"
#: The labels ``new_entry`` makes up; one taken meanwhile by another writer is renumbered.
AUTO = re.compile(r"added-\d+")
#: A label is part of the admin API's paths: letters, digits, ``.``, ``_``, ``-``.
LABEL = re.compile(r"[\w.-]{1,64}")


@dataclass(frozen=True)
class Entry:
    """One runtime token. ``fingerprint`` is the vault's keyed one."""

    label: str
    secret: str = field(repr=False)
    fingerprint: str = ""
    cookies: dict[str, str] = field(default_factory=dict, repr=False)
    user_agent: str | None = None
    daily_limit: int | None = None
    min_interval: float | None = None
    added_at: float = 0.0

    def public(self) -> dict[str, Any]:
        """What may be shown or exported: never the token, nor the cookies' values."""
        return {"label": self.label, "fingerprint": self.fingerprint,
                "source": "runtime", "cookies": sorted(self.cookies),
                "user_agent": self.user_agent, "daily_limit": self.daily_limit,
                "min_interval": self.min_interval, "added_at": self.added_at}

    def record(self) -> dict[str, Any]:
        return asdict(self)


def box_key(secret_key: str) -> bytes:
    """The secret box's key ``secret_key`` stands for (any string an operator may set;
    scrypt, so a guessable one is slow to guess)."""
    return hashlib.scrypt(secret_key.encode(), salt=b"arting-2api vault", n=2 ** 14, r=8,
                          p=1, dklen=32)


class Seal:
    """Encrypts and decrypts with ``secret_key``; fingerprints with it or a salt."""

    def __init__(self, secret_key: str | None, salt: bytes = b"") -> None:
        self.box = None
        if secret_key:
            from nacl.secret import SecretBox
            self.box = SecretBox(box_key(secret_key))
        self.mac_key = hashlib.sha256(b"arting-2api fingerprint\0" +
                                      (secret_key.encode() if secret_key else salt)).digest()

    def fingerprint(self, secret: str) -> str:
        return hmac.new(self.mac_key, secret.encode(), hashlib.sha256).hexdigest()[:16]

    def seal(self, data: bytes) -> str:
        assert self.box is not None
        return base64.urlsafe_b64encode(bytes(self.box.encrypt(data))).decode("ascii")

    def open(self, token: str) -> bytes:
        from nacl.exceptions import CryptoError
        if self.box is None:
            raise FeatureDisabled("The runtime tokens are sealed with a secret_key this "
                                  "daemon does not have: set the same `secret_key` "
                                  "(ARTING_SECRET_KEY) as the daemon that added them.")
        try:
            return bytes(self.box.decrypt(base64.urlsafe_b64decode(token.encode("ascii"))))
        except (CryptoError, ValueError):
            raise FeatureDisabled("The runtime tokens were sealed with another secret_key: "
                                  "set the one they were added with (ARTING_SECRET_KEY), or "
                                  "remove them and add them again.") from None


def new_entry(label: str | None, secret: str, taken: set[str], **extra: Any) -> Entry:
    """An entry for ``secret``; without a label, the first free ``added-N``."""
    secret = secret.strip()
    if len(secret) < 8 or any(c.isspace() for c in secret):
        raise InvalidRequest("That does not look like an Arting token: paste the `Authorization` "
                         "value of a request to arting.ai (or the whole cURL command).",
                         param="token")
    if label is None:
        label = free_label(taken)
    label = label.strip()
    if not LABEL.fullmatch(label):
        raise InvalidRequest("A token's label is 1-64 letters, digits, `.`, `_` or `-`.",
                             param="label")
    return Entry(label=label, secret=secret, added_at=time.time(), **extra)


def free_label(taken: set[str]) -> str:
    n = 1
    while f"added-{n}" in taken:
        n += 1
    return f"added-{n}"


def merge(held: dict[str, Entry], entries: list[Entry], mark: Callable[[str], str],
          reserved: frozenset[str] = frozenset()
          ) -> tuple[dict[str, Entry], list[Entry], list[str]]:
    """``entries`` added to ``held`` (the vault as it is now, not as the caller saw it):
    a token already there (by fingerprint) stays as it was; a made-up label
    (``added-N``) another writer took meanwhile is renumbered, a chosen one is refused.
    The new holding, the entries added, the labels of the duplicates."""
    held = dict(held)
    marks = {e.fingerprint: e.label for e in held.values()}
    added, seen = [], []
    for entry in entries:
        entry = replace(entry, fingerprint=mark(entry.secret))
        if entry.fingerprint in marks:
            seen.append(marks[entry.fingerprint])
            continue
        if entry.label in held:
            if not AUTO.fullmatch(entry.label):
                raise InvalidRequest(f"A token is labelled {entry.label} already: PATCH "
                                     f"/arting/v1/admin/tokens/{entry.label} (or `tokens "
                                     "remove`) replaces it.", param="label")
            entry = replace(entry, label=free_label(set(held) | reserved))
        held[entry.label] = entry
        marks[entry.fingerprint] = entry.label
        added.append(entry)
    return held, added, seen


class Vault(ABC):
    """The interface both vaults offer (entries in memory, changes written through)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.seal = Seal(None)
        #: Called (without arguments) after the entries changed, here or elsewhere.
        self.on_change: list[Callable[[], None]] = []

    @abstractmethod
    async def open(self) -> None:
        """Read the entries, and follow the changes others make."""

    @abstractmethod
    async def close(self) -> None: ...

    def fingerprint(self, secret: str) -> str:
        return self.seal.fingerprint(secret)

    def find(self, secret: str) -> Entry | None:
        mark = self.fingerprint(secret)
        return next((e for e in self.entries.values() if e.fingerprint == mark), None)

    @abstractmethod
    async def add(self, entries: list[Entry], reserved: frozenset[str] = frozenset()
                  ) -> tuple[list[Entry], list[str]]:
        """Add these entries in one change against what the vault holds by then (another
        process may have added some meanwhile): see ``merge``. The entries added, and the
        labels of the tokens that were there already."""

    @abstractmethod
    async def put(self, entries: list[Entry]) -> None:
        """Keep these entries (replacing those with the same labels)."""

    @abstractmethod
    async def remove(self, label: str) -> Entry | None:
        """Forget the entry labelled ``label``; the entry, or None if there was none."""

    def stamped(self, entry: Entry) -> Entry:
        logs.add_secrets(entry.secret, *entry.cookies.values())
        return replace(entry, fingerprint=self.fingerprint(entry.secret))

    def _loaded(self, records: list[dict[str, Any]]) -> None:
        entries = {}
        for rec in records:
            entry = self.stamped(Entry(**rec))
            entries[entry.label] = entry
        if entries != self.entries:
            self.entries = entries
            for call in self.on_change:
                call()


class FileVault(Vault):
    """``tokens.json`` in the data directory (mode 0600), sealed when ``secret_key`` is
    set. Every change is a read-modify-write under an exclusive lock (``flock`` on
    ``tokens.json.lock`` beside it, so the daemon and ``arting-daemon tokens`` writing at
    once lose nothing), written atomically and synced (a temporary file, then a rename).
    A running daemon reads the file again when its bytes change, within ``REFRESH``
    seconds of another process's change."""

    def __init__(self, data_dir: Path, secret_key: str | None) -> None:
        super().__init__()
        self.path = data_dir / FILE
        self.secret_key = secret_key
        self._raw: bytes | None = None      # the bytes last read (b"": no file)
        self._task: asyncio.Task | None = None

    def load(self) -> None:
        """Read the file (synchronously: it is small), if it changed."""
        raw = self._bytes()
        if raw == self._raw:
            return
        self._raw = raw                     # a broken file: said once
        salt, records = self._parse(raw)
        self.seal = Seal(self.secret_key, salt)
        self._loaded(records)

    def _bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""

    def _parse(self, raw: bytes) -> tuple[bytes, list[dict[str, Any]]]:
        """The salt and the records in the file's bytes."""
        if not raw:
            return b"", []
        doc = json.loads(raw)
        salt = base64.b64decode(doc["salt"]) if "salt" in doc else b""
        if "sealed" in doc:
            return salt, json.loads(Seal(self.secret_key, salt).open(doc["sealed"]))
        return salt, doc.get("tokens", [])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The writers' lock (released by the kernel if its holder dies)."""
        datadir.prepare(self.path.parent)
        fd = os.open(self.path.with_name(f"{FILE}.lock"), os.O_RDWR | os.O_CREAT,
                     datadir.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)            # and with it the lock

    def _change(self, change: Callable[[dict[str, Entry], Seal], dict[str, Entry] | None]
                ) -> None:
        """Read, change and write the file, under the lock (in a thread: the lock may
        be waited for). ``change`` returns the new entries, or None to leave it."""
        with self._locked():
            salt, records = self._parse(self._bytes())
            salt = salt or secrets.token_bytes(16)      # the fingerprints' key, kept
            seal = Seal(self.secret_key, salt)
            held = {r["label"]: replace(Entry(**r), fingerprint=seal.fingerprint(r["secret"]))
                    for r in records}
            kept = change(held, seal)
            if kept is None:
                return
            rows = [e.record() for e in kept.values()]
            doc: dict[str, Any] = {"version": 1, "salt": base64.b64encode(salt).decode()}
            if self.secret_key:
                doc["sealed"] = seal.seal(json.dumps(rows).encode())
            else:
                doc["tokens"] = rows
            datadir.write(self.path, json.dumps(doc, indent=1).encode(), sync=True)

    async def _write(self, change: Callable[[dict[str, Entry], Seal],
                                            dict[str, Entry] | None]) -> None:
        await asyncio.to_thread(self._change, change)
        self.load()

    async def open(self) -> None:
        try:
            self.load()
        except FeatureDisabled as exc:      # sealed with another key, or with none here
            raise ConfigError(f"{self.path}: {exc.message}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path} could not be read ({exc}); fix or remove it "
                              "(its tokens are then to be added again).") from None
        self._task = asyncio.create_task(self._watch(), name="token-vault")

    async def close(self) -> None:
        await stop(self._task)

    async def add(self, entries: list[Entry], reserved: frozenset[str] = frozenset()
                  ) -> tuple[list[Entry], list[str]]:
        logs.add_secrets(*(e.secret for e in entries),
                         *(v for e in entries for v in e.cookies.values()))
        outcome: list[tuple[list[Entry], list[str]]] = []

        def change(held: dict[str, Entry], seal: Seal) -> dict[str, Entry] | None:
            kept, added, seen = merge(held, entries, seal.fingerprint, reserved)
            outcome.append((added, seen))
            return kept if added else None
        await self._write(change)
        return outcome[0]

    async def put(self, entries: list[Entry]) -> None:
        logs.add_secrets(*(e.secret for e in entries),
                         *(v for e in entries for v in e.cookies.values()))
        await self._write(lambda held, seal: {
            **held, **{e.label: replace(e, fingerprint=seal.fingerprint(e.secret))
                       for e in entries}})

    async def remove(self, label: str) -> Entry | None:
        gone: list[Entry] = []

        def change(held: dict[str, Entry], seal: Seal) -> dict[str, Entry] | None:
            if label not in held:
                return None
            gone.append(held.pop(label))
            return held
        await self._write(change)
        return gone[0] if gone else None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                self.load()
            except (OSError, ValueError, FeatureDisabled) as exc:
                log.warning("the runtime tokens (%s) could not be read: %s", self.path,
                            getattr(exc, "message", exc))
