"""The documentation: the README, and the MkDocs site built from ``docs/``.

The site is built once for the module with ``mkdocs build --strict`` (a broken link or
anchor, a page outside the nav, a missing image fails it), then read as a visitor's
browser would: nothing may come from another site, the configuration reference must be
the settings model's, and the OpenAPI document it carries must be the daemon's. Each
English page has its Simplified Chinese twin with the same headings. The README stays
short and every link in it (and in its Chinese twin) resolves.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from arting_daemon.app import create_app
from arting_daemon.config import Settings, env_names
from arting_daemon.openapi import document
from arting_daemon.provider_config import ProviderConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ZH = "zh-CN"


def english_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if not p.name.endswith(f".{ZH}.md"))


def twin(page: Path) -> Path:
    return page.with_name(f"{page.stem}.{ZH}.md")


def headings(path: Path) -> list[tuple[int, str]]:
    """The page's headings as (level, explicit anchor or ""), code blocks left out."""
    found, fence = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(("```", "~~~")):
            fence = not fence
        elif not fence and (m := re.match(r"^(#{1,6})\s+(.*?)\s*(\{#([\w-]+)\})?\s*$", line)):
            found.append((len(m[1]), m[4] or ""))
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


# --- the site -------------------------------------------------------------------------------

def test_the_site_builds_strictly_in_both_languages(site):
    assert (site / "index.html").is_file() and (site / ZH / "index.html").is_file()
    for page in english_pages():
        built = page.relative_to(DOCS).with_suffix(".html")
        assert (site / built).is_file(), built
        assert (site / ZH / built).is_file(), built
    zh = (site / ZH / "index.html").read_text(encoding="utf-8")
    assert '<html lang="zh"' in zh and "从哪里开始" in zh


class _Assets(HTMLParser):
    """What a page makes the browser fetch: scripts, style sheets, icons, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed"):
            self.fetched += [attrs.get("src") or "", *(attrs.get("srcset") or "").split(",")]
        elif tag == "link" and attrs.get("rel") not in ("alternate", "canonical"):
            self.fetched.append(attrs.get("href") or "")
        elif tag == "object":
            self.fetched.append(attrs.get("data") or "")


def test_the_site_fetches_nothing_from_another_site(site):
    """It works offline: no font, script, style sheet or image from a CDN or analytics.
    (Material's script can load two polyfills from a CDN, only for browsers without
    ResizeObserver or for pages with Mermaid diagrams: neither applies here.)"""
    remote = re.compile(r"^\s*(https?:)?//", re.I)
    pages = list(site.rglob("*.html"))
    assert len(pages) > 2 * len(english_pages())
    for page in pages:
        parser = _Assets()
        text = page.read_text(encoding="utf-8")
        parser.feed(text)
        assert [u for u in parser.fetched if remote.match(u)] == [], page
        assert not re.search(r"googletagmanager|google-analytics|fonts\.googleapis", text), page
    for sheet in site.rglob("*.css"):
        css = sheet.read_text(encoding="utf-8")
        assert not re.search(r"@import\s+(url\()?['\"]?(https?:)?//|url\(['\"]?(https?:)?//", css), sheet


class _Table(HTMLParser):
    """The rows of the first table after the heading with ``anchor``, cell texts."""

    def __init__(self, anchor: str) -> None:
        super().__init__()
        self.anchor, self.seen, self.inside = anchor, False, False
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        if dict(attrs).get("id") == self.anchor:
            self.seen = True
        elif self.seen and tag == "table" and not self.rows:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.inside, self.seen = False, False

    def handle_data(self, data):
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def reference(site: Path, lang: str = "") -> list[list[str]]:
    page = site / lang / "configuration" / "reference.html"
    table = _Table("settings")
    table.feed(page.read_text(encoding="utf-8"))
    return [[cell.strip() for cell in row] for row in table.rows[1:]]


def plain(markdown: str) -> str:
    """A table cell's text as the browser shows it (code spans and emphasis unmarked)."""
    return re.sub(r"[`*]", "", markdown).strip()


def test_the_configuration_reference_is_the_settings_model(site):
    rows = reference(site)
    assert [row[0] for row in rows] == list(Settings.model_fields)
    for (name, envs, default, meaning), field in zip(rows, Settings.model_fields.values()):
        assert envs == ", ".join(env_names(name)), name
        assert plain(meaning) == plain(field.description or ""), name
        if isinstance(field.default, (int, float, str)) and name not in ("user_agent",):
            assert default == str(field.default).lower() if isinstance(field.default, bool) \
                else default == str(field.default), name
    chinese = reference(site, ZH)
    assert [row[0] for row in chinese] == list(Settings.model_fields)
    assert all(re.search(r"[\u4e00-\u9fff]", row[3]) for row in chinese)


def test_every_setting_has_a_current_chinese_meaning():
    """A setting added, or its English meaning changed, needs its Chinese meaning
    (the site shows the English until then)."""
    translated = json.loads((DOCS / "configuration" / f"settings.{ZH}.json").read_text())
    assert sorted(translated) == sorted(Settings.model_fields), \
        f"docs/configuration/settings.{ZH}.json must list every setting, and only those"
    stale = [name for name, field in Settings.model_fields.items()
             if translated[name]["en"] != field.description]
    assert stale == [], "English meanings changed since their translation: translate again"


def test_the_providers_table_lists_every_key_of_a_provider():
    for page in (DOCS / "providers.md", DOCS / f"providers.{ZH}.md"):
        text = page.read_text(encoding="utf-8")
        keys = set(re.findall(r"^\| `(\w+)`(?:[、,]\s*`(\w+)`)?", text, re.M))
        listed = {k for pair in keys for k in pair if k}
        assert listed == set(ProviderConfig.model_fields), page.name


def test_the_site_carries_the_daemons_openapi_document(site):
    carried = json.loads((site / "api" / "openapi.json").read_text(encoding="utf-8"))
    assert carried == document(create_app(Settings()))


def test_the_nav_lists_every_page_with_its_chinese_title():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def walk(items):
        for item in items:
            for title, value in item.items():
                yield title, None if isinstance(value, list) else value
                if isinstance(value, list):
                    yield from walk(value)

    entries = list(walk(config["nav"]))
    pages = {page for _, page in entries if page}
    assert pages == {p.relative_to(DOCS).as_posix() for p in english_pages()}
    i18n = next(p["i18n"] for p in config["plugins"] if isinstance(p, dict) and "i18n" in p)
    chinese = next(lang for lang in i18n["languages"] if lang["locale"] == ZH)
    assert {title for title, _ in entries} <= set(chinese["nav_translations"])


# --- the two languages ------------------------------------------------------------------------

@pytest.mark.parametrize("page", english_pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_each_english_page_has_its_chinese_twin_with_the_same_headings(page):
    assert twin(page).is_file(), f"{twin(page).relative_to(ROOT)} is missing"
    english, chinese = headings(page), headings(twin(page))
    assert [level for level, _ in chinese] == [level for level, _ in english], \
        "the Chinese page's headings differ from the English page's"
    for (_, anchor), (_, theirs) in zip(english, chinese):
        assert not anchor or anchor == theirs
    text = twin(page).read_text(encoding="utf-8")
    assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 20, "the twin is not in Chinese"


def test_no_chinese_page_without_its_english_original():
    orphans = [p for p in DOCS.rglob(f"*.{ZH}.md")
               if not p.with_name(p.name.replace(f".{ZH}.md", ".md")).is_file()]
    assert orphans == []


# --- the README -------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\s*\{#[\w-]+\}\s*$", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found = set()
    for level_text in re.findall(r"^#{1,6}\s+(.+)$", path.read_text(encoding="utf-8"), re.M):
        found.add(slug(level_text))
        if explicit := re.search(r"\{#([\w-]+)\}", level_text):
            found.add(explicit[1])
    return found


@pytest.mark.parametrize("name", ["README.md", f"README.{ZH}.md", "CONTRIBUTING.md",
                                  "CHANGELOG.md"])
def test_the_readme_is_short_and_every_link_resolves(name):
    readme = ROOT / name
    text = readme.read_text(encoding="utf-8")
    if name.startswith("README"):
        assert len(text.splitlines()) <= 250
        assert len(re.findall(r"\]\(([^)\s]+)\)", text)) > 15
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"https?://", link):
            assert re.match(r"https://[\w.-]+\.[a-z]{2,}(/\S*)?$", link), link
            continue
        target, _, anchor = link.partition("#")
        path = (readme.parent / target) if target else readme
        assert path.exists(), f"{name}: {link} points at nothing"
        if anchor:
            assert anchor in anchors(path), f"{name}: {link}: no such heading"


def test_the_readmes_have_the_same_sections():
    english = [level for level, _ in headings(ROOT / "README.md")]
    assert [level for level, _ in headings(ROOT / f"README.{ZH}.md")] == english
