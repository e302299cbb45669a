"""MkDocs hooks: the parts of the documentation site that are made from the code.

* ``<!-- settings-table -->`` on a page becomes the table of every setting, made from
  ``arting_daemon.config.Settings`` (names, environment variables, defaults, meanings), so
  the reference cannot drift from the code. A Chinese page takes each meaning from
  ``docs/configuration/settings.zh-CN.json``, which keeps the English it translates: a
  meaning changed in the code, or a setting added, fails the tests until it is translated.
* ``api/openapi.json``: the daemon's OpenAPI document, as ``GET /openapi.json`` serves it,
  so the site carries it for reading offline.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

from arting_daemon.config import Settings, env_names

DOCS = Path(__file__).resolve().parent.parent / "docs"
MARK = "<!-- settings-table -->"
TRANSLATIONS = {"zh-CN": DOCS / "configuration" / "settings.zh-CN.json"}

#: The table's own words, per language.
WORDS = {
    "en": {"head": "| TOML key | Environment | Default | Meaning |", "empty": "(empty)",
           "unset": "(unset)", "data_dir": "the platform's data directory (see Configuration)",
           "user_agent": "Chrome 141 on Windows"},
    "zh-CN": {"head": "| TOML 键 | 环境变量 | 默认值 | 含义 |", "empty": "（空）",
              "unset": "（未设置）", "data_dir": "各平台的数据目录（见“配置”）",
              "user_agent": "Windows 上的 Chrome 141"},
}


def meanings(lang: str) -> dict[str, str]:
    """Each setting's meaning in ``lang``: the model's own in English, else the
    translation file's (for a translation missing or out of date: the English)."""
    english = {name: field.description or "" for name, field in Settings.model_fields.items()}
    path = TRANSLATIONS.get(lang)
    if path is None:
        return english
    translated = json.loads(path.read_text(encoding="utf-8"))
    return {name: translated[name]["meaning"]
            if name in translated and translated[name]["en"] == text else text
            for name, text in english.items()}


def shown_default(name: str, lang: str) -> str:
    words = WORDS[lang]
    default = Settings.model_fields[name].default
    if name in ("data_dir", "user_agent"):
        return words[name]
    if isinstance(default, (list, dict)):
        return ", ".join(f"`{v}`" for v in default) or words["empty"]
    if default is None:
        return words["unset"]
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def settings_table(lang: str = "en") -> str:
    """The configuration reference: one row per setting, in ``lang``."""
    rows = [WORDS[lang]["head"], "| --- | --- | --- | --- |"]
    meaning = meanings(lang)
    for name in Settings.model_fields:
        envs = ", ".join(f"`{e}`" for e in env_names(name))
        rows.append(f"| `{name}` | {envs} | {shown_default(name, lang)} | {meaning[name]} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARK not in markdown:
        return markdown
    lang = getattr(page.file, "locale", None) or "en"
    return markdown.replace(MARK, settings_table(lang if lang in WORDS else "en"))


def openapi_document() -> str:
    from arting_daemon.app import create_app
    from arting_daemon.openapi import document

    return json.dumps(document(create_app(Settings())), indent=1, ensure_ascii=False)


def on_files(files: Files, config) -> Files:
    # A file on disk (not in memory): the i18n plugin sorts files by their source path.
    path = Path(tempfile.mkdtemp(prefix="arting-docs-")) / "openapi.json"
    path.write_text(openapi_document(), encoding="utf-8")
    files.append(File.generated(config, "api/openapi.json", abs_src_path=str(path),
                                inclusion=InclusionLevel.INCLUDED))
    return files
