"""The "Arting" settings section, and where the daemon's address comes from.

Precedence for the URL: the ``--arting-daemon-url`` flag (``preload.py``), then the
``ARTING_DAEMON_URL`` environment variable, then the setting, then the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import glue
from .daemon_client import DEFAULT_URL

SECTION = ("arting", "Arting")
URL_KEY = "arting_daemon_url"
TIMEOUT_KEY = "arting_timeout"
DEFAULT_TIMEOUT = 600
FLAG = "--arting-daemon-url"
ENV = "ARTING_DAEMON_URL"


@dataclass(frozen=True)
class DaemonConfig:
    url: str
    #: where ``url`` came from, for the status line
    source: str
    #: seconds one generation may take before it is given up
    timeout: float


def daemon_config() -> DaemonConfig:
    timeout = glue.opt(TIMEOUT_KEY, DEFAULT_TIMEOUT)
    try:
        timeout = float(timeout) if float(timeout) > 0 else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT
    for value, source in ((glue.cmd_opt("arting_daemon_url"), FLAG),
                          (os.environ.get(ENV), ENV),
                          (glue.opt(URL_KEY, ""), "settings")):
        url = str(value or "").strip().rstrip("/")
        if url:
            # people type "127.0.0.1:8090"; urllib needs the scheme
            return DaemonConfig(url if "://" in url else f"http://{url}", source, timeout)
    return DaemonConfig(DEFAULT_URL, "default", timeout)


def register() -> None:
    """``on_ui_settings`` callback: Settings → Arting."""
    import gradio as gr
    shared = glue.shared()
    info = shared.OptionInfo
    shared.opts.add_option(URL_KEY, _explain(info(
        DEFAULT_URL, "Arting daemon URL", gr.Textbox, section=SECTION),
        f"{FLAG} or {ENV} override this"))
    shared.opts.add_option(TIMEOUT_KEY, _explain(info(
        DEFAULT_TIMEOUT, "Seconds one generation may take before it is cancelled",
        gr.Slider, {"minimum": 30, "maximum": 3600, "step": 10}, section=SECTION),
        "queue time included"))


def _explain(option, text: str):
    add = getattr(option, "info", None)
    return add(text) if callable(add) else option
