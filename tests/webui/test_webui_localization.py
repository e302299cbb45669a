"""The SD-WebUI extension's translations, in the WebUI's convention for extensions
(``localizations/<name>.json``: the English text of the page → its translation, merged
into the localization of that name the user picks; ``zh_CN`` is the name of the Chinese
localization most WebUIs have): well-formed, and covering every label, choice, button,
setting and note the extension puts on the page."""

from __future__ import annotations

import json
import re

import pytest
from webui_harness import EXTENSION, load

from arting_daemon import catalog

FILES = sorted((EXTENSION / "localizations").glob("*.json"))
#: What stays as it is in every language: names (the brand, models, LoRAs, upscale
#: factors, the WebUI's own "None") and labels made of them.
NAMES = {"Arting", "None", "2x", "4x", *catalog.MODELS, *catalog.LORAS,
         *(f"LoRA {slot}" for slot in (1, 2, 3))}
INFO = re.compile(r"<span class='info'>(.*?)</span>")


def page_texts(host) -> set[str]:
    """The texts of ours the WebUI shows: the script's title, its controls' labels,
    choices and button texts, and our settings' labels, section and notes (the status
    line is made anew on every load and not a fixed text)."""
    texts = {"Arting (remote)"}
    for block in host.gradio.created:
        if block.kind == "Markdown":
            continue
        texts |= {block.label} if block.label else set()
        texts |= set(block.choices or [])
        if block.kind == "Button":
            texts.add(block.value)
    for key, info in host.opts.data_labels.items():
        if key.startswith("arting_"):
            texts |= {info.label, info.section[1], *INFO.findall(info.comment_after)}
    return texts - {None, ""}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_the_translations_cover_every_text_of_ours(host, monkeypatch, path):
    load(host, EXTENSION, monkeypatch)
    table = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(table, dict) and all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in table.items())
    texts = page_texts(host)
    assert texts - NAMES - set(table) == set()           # nothing left in English
    assert set(table) - texts == set()                   # nothing that is not on the page


def test_the_language_files_are_where_both_installs_find_them():
    assert [p.name for p in FILES] == ["zh_CN.json"]
    root = EXTENSION.parent / "localizations"            # the repository as the extension
    assert (EXTENSION / "localizations").resolve() == root.resolve()
