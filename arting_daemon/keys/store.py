"""User API keys, kept in ``keys.sqlite3`` in the data directory, only as hashes.

A key is ``sk-arting-`` and 32 random URL-safe characters (192 bits): the prefix says
what it is (to a person, and to secret scanners), and the rest cannot be guessed, so a
plain SHA-256 of it is a safe thing to keep. The secret is shown once, when the key is
made; afterwards a key is known by its id (``key_…``), its name and the first
characters of the secret.

``KeyFile`` is the file itself, synchronous: the command line (``arting-daemon keys``)
uses it whether or not a daemon runs, and the daemon uses it from one worker thread.
Requests are counted per key and day here too, for the usage report.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import EllipsisType
from typing import Any

from .. import datadir
from .limits import NO_LIMITS, KeyLimits

PREFIX = "sk-arting-"
SHOWN = len(PREFIX) + 4          # characters of the secret a listing shows

TABLES = (
    """CREATE TABLE IF NOT EXISTS keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        shown TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        expires_at REAL,
        revoked_at REAL,
        limits TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS requests (
        key_id TEXT NOT NULL,
        day TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, day))""",
)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    shown: str
    hash: str = field(repr=False)
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    limits: KeyLimits = NO_LIMITS

    def refusal(self, now: float) -> str | None:
        """Why this key may not be used now (revoked, expired), or None."""
        if self.revoked_at is not None:
            return (f"This API key ({self.shown}…, “{self.name}”) was revoked on "
                    f"{_date(self.revoked_at)}; ask the operator for a new one.")
        if self.expires_at is not None and now >= self.expires_at:
            return (f"This API key ({self.shown}…, “{self.name}”) expired on "
                    f"{_date(self.expires_at)}; ask the operator for a new one.")
        return None

    def record(self) -> dict[str, Any]:
        """Everything about the key (the hash included), as kept in Redis."""
        return {**self.public(), "hash": self.hash}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ApiKey:
        limits = KeyLimits.model_validate({name: rec.get(name) for name in KeyLimits.model_fields})
        return cls(rec["id"], rec["name"], rec["key_prefix"], rec["hash"], rec["created_at"],
                   rec.get("expires_at"), rec.get("revoked_at"), limits)

    def public(self) -> dict[str, Any]:
        """What may be shown of the key: never the secret, nor its hash."""
        limits = self.limits.model_dump(mode="json")
        return {"id": self.id, "name": self.name, "key_prefix": self.shown,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "revoked_at": self.revoked_at, **limits}


def new_key(name: str, limits: KeyLimits, expires_at: float | None) -> tuple[ApiKey, str]:
    """A new key and its secret, wherever it is to be kept."""
    if not name.strip():
        raise ValueError("A key needs a name (who or what it is for).")
    secret = PREFIX + secrets.token_urlsafe(24)
    return ApiKey(id="key_" + secrets.token_hex(6), name=name.strip(), shown=secret[:SHOWN],
                  hash=digest(secret), created_at=time.time(), expires_at=expires_at,
                  limits=limits), secret


def changed(key: ApiKey, name: str | None, limits: KeyLimits | None,
            expires_at: float | None | EllipsisType) -> ApiKey:
    """The key with a new name, limits or expiry (``...``: the expiry as it is)."""
    return replace(key, name=name.strip() if name else key.name,
                   limits=limits if limits is not None else key.limits,
                   expires_at=key.expires_at if expires_at is ... else expires_at)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _date(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _key(row: tuple[Any, ...]) -> ApiKey:
    kid, name, shown, hashed, created, expires, revoked, limits = row
    return ApiKey(kid, name, shown, hashed, created, expires, revoked,
                  KeyLimits.model_validate_json(limits))


class KeyFile:
    COLUMNS = "id, name, shown, hash, created_at, expires_at, revoked_at, limits"

    def __init__(self, path: Path) -> None:
        datadir.prepare(path.parent)
        datadir.touch(path)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                  timeout=10)
        self.db.execute("PRAGMA journal_mode=WAL")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for statement in TABLES:
                self.db.execute(statement)

    def close(self) -> None:
        self.db.close()

    def create(self, name: str, limits: KeyLimits = NO_LIMITS,
               expires_at: float | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret (which is not kept)."""
        key, secret = new_key(name, limits, expires_at)
        self.db.execute(f"INSERT INTO keys ({self.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (key.id, key.name, key.shown, key.hash, key.created_at,
                         key.expires_at, None, _limits_json(limits)))
        return key, secret

    def all(self) -> list[ApiKey]:
        return [_key(r) for r in self.db.execute(
            f"SELECT {self.COLUMNS} FROM keys ORDER BY created_at")]

    def get(self, key_id: str) -> ApiKey | None:
        row = self.db.execute(f"SELECT {self.COLUMNS} FROM keys WHERE id = ?",
                              (key_id,)).fetchone()
        return _key(row) if row else None

    def update(self, key_id: str, *, name: str | None = None,
               limits: KeyLimits | None = None,
               expires_at: float | None | EllipsisType = ...) -> ApiKey | None:
        """Change a key's name, limits or expiry (``...``: leave the expiry as it is)."""
        key = self.get(key_id)
        if key is None:
            return None
        key = changed(key, name, limits, expires_at)
        self.db.execute("UPDATE keys SET name = ?, limits = ?, expires_at = ? WHERE id = ?",
                        (key.name, _limits_json(key.limits), key.expires_at, key_id))
        return key

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key for good (it stays listed, so a refusal can say why)."""
        self.db.execute("UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                        (time.time(), key_id))
        return self.get(key_id)

    def version(self) -> int:
        """Changes when another connection (another process) committed to the file."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def add_requests(self, counts: dict[tuple[str, str], int]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO requests (key_id, day, count) VALUES (?, ?, ?) ON CONFLICT "
                "(key_id, day) DO UPDATE SET count = count + excluded.count",
                [(k, d, n) for (k, d), n in counts.items()])

    def requests(self, since_day: str) -> dict[tuple[str, str], int]:
        return {(k, d): n for k, d, n in self.db.execute(
            "SELECT key_id, day, count FROM requests WHERE day >= ?", (since_day,))}


def _limits_json(limits: KeyLimits) -> str:
    return limits.model_dump_json()
