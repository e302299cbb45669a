"""The test harness around the emulated hosts: putting a host's modules into
``sys.modules`` for one test, loading the extension into it, and reading infotext back
the way SD-WebUI reads it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webui_stubs import Host

EXTENSION = Path(__file__).resolve().parents[2] / "sd_webui_extension"
OUR_PACKAGE = "arting_webui"

#: ui() controls, in the order run() receives them
CONTROL_NAMES = ("model", "nsfw", "lora1", "weight1", "lora2", "weight2", "lora3", "weight3",
                 "upscale")


def _ours(name: str) -> bool:
    return name == OUR_PACKAGE or name.startswith(OUR_PACKAGE + ".")


@contextmanager
def installed(host: Host) -> Iterator[Host]:
    """The host's modules in ``sys.modules``; afterwards, everything as it was (our
    package too, so the next test imports it afresh into its own host)."""
    names = list(host.modules)
    saved = {n: sys.modules[n] for n in names if n in sys.modules}
    stale = [n for n in sys.modules if _ours(n)]
    for name in stale:
        del sys.modules[name]
    sys.modules.update(host.modules)
    path = list(sys.path)
    try:
        yield host
    finally:
        for name in names:
            sys.modules.pop(name, None)
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path[:] = path


@dataclass
class Loaded:
    """The extension inside one host: its script in both tabs, ready to run."""

    host: Host
    script_class: type
    txt2img_script: Any
    txt2img_controls: list
    img2img_script: Any
    img2img_controls: list

    def args(self, **values: Any) -> list:
        """run()'s arguments: each control's default, or the value named here."""
        unknown = set(values) - set(CONTROL_NAMES)
        assert not unknown, unknown
        return [values.get(name, control.value)
                for name, control in zip(CONTROL_NAMES, self.txt2img_controls)]

    def point_at(self, url: str) -> None:
        """What a user does in Settings → Arting."""
        assert self.host.opts.set("arting_daemon_url", url)

    def txt2img(self, controls: dict | None = None, **fields: Any) -> Any:
        p = self.host.txt2img(**fields)
        return p, self.host.generate(self.txt2img_script, p, *self.args(**(controls or {})))

    def img2img(self, controls: dict | None = None, **fields: Any) -> Any:
        p = self.host.img2img(**fields)
        return p, self.host.generate(self.img2img_script, p, *self.args(**(controls or {})))


def load(host: Host, extension_dir: Path, monkeypatch) -> Loaded:
    """The extension loaded as the WebUI loads it: its scripts, then the upscaler list
    (made from ``Upscaler``'s subclasses once the scripts are in), then the UI."""
    classes = host.load_scripts(extension_dir)
    assert len(classes) == 1, classes
    host.load_upscalers()
    txt, txt_controls = host.create_ui(classes[0], is_img2img=False)
    img, img_controls = host.create_ui(classes[0], is_img2img=True)
    host.settings_ui()
    # polls are half a second apart for people; tests need not wait that long
    monkeypatch.setattr(sys.modules["arting_webui.remote"], "POLL_INTERVAL", 0.05)
    return Loaded(host, classes[0], txt, txt_controls, img, img_controls)


# --- infotext, read back the way SD-WebUI reads it ---------------------------------------

#: A1111's rule for one ``Key: value`` pair (a value may be JSON-quoted).
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")


def parse_infotext(text: str) -> dict[str, str]:
    """What PNG Info and "Send to img2img" get out of an infotext: the last line holds
    the parameters if it has at least three pairs; before it come the prompt and, from
    "Negative prompt:" on, the negative prompt; sizes split into ``-1``/``-2``."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    fields = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PARAM.findall(last):
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = json.loads(value)
        size = SIZE.match(value)
        if size:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.groups()
        else:
            fields[key] = value
    return fields


def paste(infotext_fields: list, fields: dict) -> dict[int, Any]:
    """What pasting parsed fields does to a script's controls (by ``id``), converting
    each value to the type of the control's current value, as the host does."""
    out = {}
    for component, key in infotext_fields:
        value = key(fields) if callable(key) else fields.get(key)
        if value is None:
            continue
        kind = type(component.value)
        if kind is bool and value == "False":
            value = False
        elif kind is int:
            value = float(value)
        else:
            value = kind(value)
        out[id(component)] = value
    return out
