"""Typed keys for what the application holds (aiohttp's ``web.AppKey``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .config import Settings

if TYPE_CHECKING:
    from .engine import Engine
    from .facades.ops import CheckRuns
    from .generation import Catalog
    from .sandbox import Sandbox
    from .store import ImageStore
    from .upstream.tokens import TokenPool

SETTINGS = web.AppKey("settings", Settings)
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
CATALOG: web.AppKey[Catalog] = web.AppKey("catalog")
STORE: web.AppKey[ImageStore] = web.AppKey("store")
POOL: web.AppKey[TokenPool] = web.AppKey("pool")
SANDBOX: web.AppKey[Sandbox | None] = web.AppKey("sandbox")
CHECKS: web.AppKey[CheckRuns] = web.AppKey("checks")

#: Per request: its id (for logs) and the CORS origin to echo.
REQUEST_ID = web.RequestKey("request_id", str)
CORS_ORIGIN = web.RequestKey("cors_origin", str)
