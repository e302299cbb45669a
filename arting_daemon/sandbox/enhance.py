"""Arting's image-enhance (upscale) API, as two public clients use it (§11).

* ``POST /api/image/image-enhance/create-task`` with ``{"image_url", "scale", "version"}``
  → ``data.task_id``
* ``GET /api/image/image-enhance/get-task-result?task_id=…`` → ``data.status``, an
  *integer*: ``1`` done with ``data.task_result.file_oss_path``, ``-1`` failed, anything
  else pending (the literals are switches in ``SandboxConfig``).

The result is the source image resized ``scale`` times with Lanczos, served from the
sandbox's storage (``/cdn/enhanced/<task_id>.png``), so a test can check its size and
that it shows the source.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from PIL import Image

from . import envelope as E
from .envelope import ApiError
from .models import SandboxConfig

RESULT_PREFIX = "enhanced/"


@dataclass
class EnhanceTask:
    task_id: str
    token: str | None
    source: bytes = field(repr=False)
    width: int
    height: int
    scale: int
    version: str
    created_at: float
    done_at: float | None
    polls: int = 0
    state: Literal["pending", "done", "failed", "never"] = "pending"
    fail_on_poll: bool = False
    result: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out["source"] = len(self.source)
        out["result"] = None if self.result is None else len(self.result)
        return out


@dataclass
class EnhanceSpec:
    image_url: str
    scale: int
    version: str


def parse_create(body: Any, config: SandboxConfig) -> EnhanceSpec:
    if not isinstance(body, dict):
        raise ApiError(E.BAD_BODY, "body must be a JSON object")
    image_url, scale = body.get("image_url"), body.get("scale")
    version = body.get("version", config.enhance_versions[0] if config.enhance_versions else "")
    if not isinstance(image_url, str) or not image_url:
        raise ApiError(E.BAD_TYPE, "image_url must be a string")
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise ApiError(E.BAD_TYPE, "scale must be an integer")
    if scale not in config.enhance_scales:
        raise ApiError(E.BAD_SCALE, "scale must be one of "
                                    + ", ".join(map(str, config.enhance_scales)))
    if not isinstance(version, str) or version not in config.enhance_versions:
        raise ApiError(E.BAD_VERSION, "version not supported")
    return EnhanceSpec(image_url, scale, version)


def source_size(data: bytes, config: SandboxConfig) -> tuple[int, int]:
    """The source's size; too large a source is refused. Blocking (Pillow)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    if max(width, height) > config.enhance_max_side:
        raise ApiError(E.BAD_SIZE, f"image sides must be at most {config.enhance_max_side}")
    return width, height


def status_of(task: EnhanceTask, config: SandboxConfig) -> int:
    return {"pending": config.enhance_pending_status, "never": config.enhance_pending_status,
            "done": config.enhance_done_status, "failed": config.enhance_failed_status}[
        task.state]


def render(task: EnhanceTask) -> bytes:
    """The upscaled PNG. Blocking: run it in an executor."""
    with Image.open(io.BytesIO(task.source)) as image:
        bigger = image.convert("RGB").resize((task.width * task.scale, task.height * task.scale),
                                             Image.Resampling.LANCZOS)
    out = io.BytesIO()
    bigger.save(out, "PNG")
    return out.getvalue()
