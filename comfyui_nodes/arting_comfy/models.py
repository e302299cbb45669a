"""The models the plugins list: Arting's built-in ids, then every other provider's models
as the daemon's catalog last listed them, each with its provider (``studio/dreamshaper_8``,
``relay/relay-model``; the daemon takes these names as they are).

Neither host may wait for the daemon while it builds its lists (ComfyUI's
``INPUT_TYPES`` runs on every ``/object_info``; SD-WebUI builds its UI at start-up), so a
catalog the plugin read anyway — after a job, or when the user asks to refresh — is
remembered here, and in a small JSON file when the host has a place for one, so the next
start lists the same. Standard library only; shared by both plugins (the SD-WebUI
extension links this file, as it does ``catalog.py`` and ``daemon_client.py``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from . import catalog

#: The provider whose ids the plugins list as they are (the daemon's own Arting).
ARTING = "arting"


def listed_name(entry: Any) -> str | None:
    """A catalog model as the plugins list it: Arting's (and any id that already starts
    with its provider's name) as its id, any other as ``<provider>/<id>``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        return None
    model_id, provider = entry["id"], entry.get("provider")
    if not isinstance(provider, str) or provider in ("", ARTING) or \
            model_id.lower().startswith(provider.lower() + "/"):
        return model_id
    return f"{provider}/{model_id}"


class KnownModels:
    """The built-in ids, and the models a daemon's catalog added to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: list[str] = []
        self._file: Path | None = None

    def keep_in(self, path: Path | None) -> None:
        """Remember across starts in ``path`` (read now if it exists)."""
        with self._lock:
            self._file = path
            if path is None:
                return
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return
            if isinstance(saved, list) and not self._learned:
                self._learned = [m for m in saved if isinstance(m, str) and m]

    def names(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys([*catalog.MODELS, *self._learned]))

    def learn(self, daemon_catalog: Any) -> list[str]:
        """Take the models of a ``GET /arting/v1/catalog`` answer; returns ``names()``."""
        entries = daemon_catalog.get("models") if isinstance(daemon_catalog, dict) else None
        if not isinstance(entries, list):
            return self.names()
        found = [n for n in map(listed_name, entries) if n and n not in catalog.MODELS]
        with self._lock:
            changed = found != self._learned
            self._learned = found
            path = self._file
        if changed and path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(found), encoding="utf-8")
            except OSError:
                pass        # remembered for this run only
        return self.names()


KNOWN = KnownModels()
