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
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
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
        n = 1
        while f"added-{n}" in taken:
            n += 1
        label = f"added-{n}"
    label = label.strip()
    if not LABEL.fullmatch(label):
        raise InvalidRequest("A token's label is 1-64 letters, digits, `.`, `_` or `-`.",
                             param="label")
    return Entry(label=label, secret=secret, added_at=time.time(), **extra)


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
    set. Another process's change (``arting-daemon tokens``) is noticed within
    ``REFRESH`` seconds."""

    def __init__(self, data_dir: Path, secret_key: str | None) -> None:
        super().__init__()
        self.path = data_dir / FILE
        self.secret_key = secret_key
        self._stamp: tuple[int, int] | None = None
        self._task: asyncio.Task | None = None

    def load(self) -> None:
        """Read the file (synchronously: it is small), if it changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.seal = Seal(self.secret_key, self._salt({}))
            self._loaded([])
            return
        if self._stamp == (st.st_mtime_ns, st.st_size):
            return
        self._stamp = (st.st_mtime_ns, st.st_size)      # a broken file: said once
        doc = json.loads(self.path.read_text())
        self.seal = Seal(self.secret_key, self._salt(doc))
        if "sealed" in doc:
            records = json.loads(self.seal.open(doc["sealed"]))
        else:
            records = doc.get("tokens", [])
        self._loaded(records)

    def _salt(self, doc: dict[str, Any]) -> bytes:
        return base64.b64decode(doc["salt"]) if "salt" in doc else b""

    def save(self, entries: dict[str, Entry]) -> None:
        datadir.prepare(self.path.parent)
        salt = self._salt(json.loads(self.path.read_text())) if self.path.exists() else b""
        if not salt:
            salt = secrets.token_bytes(16)
            if not self.secret_key:     # the fingerprints change with the salt
                self.seal = Seal(None, salt)
                entries = {k: self.stamped(e) for k, e in entries.items()}
        records = [e.record() for e in entries.values()]
        doc: dict[str, Any] = {"version": 1, "salt": base64.b64encode(salt).decode()}
        if self.secret_key:
            doc["sealed"] = Seal(self.secret_key).seal(json.dumps(records).encode())
        else:
            doc["tokens"] = records
        datadir.write(self.path, json.dumps(doc, indent=1).encode())
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

    async def put(self, entries: list[Entry]) -> None:
        self.load()
        self.save({**self.entries, **{e.label: self.stamped(e) for e in entries}})

    async def remove(self, label: str) -> Entry | None:
        self.load()
        gone = self.entries.get(label)
        if gone is not None:
            self.save({k: e for k, e in self.entries.items() if k != label})
        return gone

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(REFRESH)
            try:
                self.load()
            except (OSError, ValueError, FeatureDisabled) as exc:
                log.warning("the runtime tokens (%s) could not be read: %s", self.path,
                            getattr(exc, "message", exc))

