"""Everything the pack needs from ComfyUI, imported only when a node runs.

Importing ``comfy.model_management`` initialises torch devices, and outside ComfyUI
these modules do not exist at all; so each adapter imports lazily and falls back to
doing nothing, which keeps the pack importable (and testable) anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn


class Interrupted(Exception):
    """Stands in for ComfyUI's ``InterruptProcessingException`` outside ComfyUI."""


def _model_management():
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm


def interrupted() -> bool:
    """Whether the user pressed Cancel (or a client POSTed /interrupt)."""
    mm = _model_management()
    return bool(mm and mm.processing_interrupted())


def raise_interrupted() -> NoReturn:
    """End the node the way ComfyUI expects: its prompt then ends as "interrupted",
    not as an error. Clears ComfyUI's flag, as ComfyUI's own check does."""
    mm = _model_management()
    if mm is None:
        raise Interrupted("Cancelled.")
    mm.throw_exception_if_processing_interrupted()
    raise mm.InterruptProcessingException()


class _NoProgress:
    def update_absolute(self, value, total=None, preview=None) -> None:
        pass


def progress_bar(total: int, node_id: str | None):
    """ComfyUI's progress bar for this node (a no-op outside ComfyUI).

    Updating it also checks for an interrupt: in a running ComfyUI the update hook
    raises ``InterruptProcessingException`` when the user cancelled."""
    try:
        from comfy.utils import ProgressBar
    except ImportError:
        return _NoProgress()
    try:
        return ProgressBar(total, node_id=node_id)
    except TypeError:  # ComfyUI before the node_id argument
        return ProgressBar(total)


def progress_text(text: str, node_id: str | None) -> None:
    """Status text under the node (ComfyUI 0.3.34 and later; silently skipped before)."""
    if node_id is None:
        return
    try:
        from server import PromptServer
    except ImportError:
        return
    send = getattr(getattr(PromptServer, "instance", None), "send_progress_text", None)
    if send is not None:
        send(text, node_id)


def models_file() -> Path | None:
    """Where the pack remembers the daemon's models between starts (ComfyUI's user
    directory), or None outside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    user = getattr(folder_paths, "get_user_directory", None)
    return Path(user()) / "arting-2api" / "models.json" if callable(user) else None
