"""The web page in English and Simplified Chinese.

Every string the page shows comes from one catalogue per language
(``arting_daemon/static/lang-<code>.json``): the catalogues must hold the same keys, with
the same placeholders, and every key must be used; the markup and the scripts must hold
no words of their own. Then the page is opened in a real headless Chromium speaking
``zh-CN`` and ``en-US``, in a state that shows most of it (a result, a running job, the
check's findings, the keys panel, the usage view), and every text node and every
translatable attribute on it is matched against the catalogue of its language: only
what the page marks as data (``translate="no"``: prompts, model ids, names, code, the
daemon's English words) and what ``Intl`` formats (``<time>``) may be anything else.
Screenshots of both go to ``artifacts/web-page/``.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from test_web_page import (ARTIFACTS, KEY, chip, css, css_all, fill, open_page, save_key,
                           screenshot, start_chromium, text, until)

STATIC = Path(__file__).resolve().parent.parent / "arting_daemon" / "static"
PLACEHOLDER = re.compile(r"\{(\w+)\}")
TAGS = re.compile(r"</?(code|kbd|strong)>")
#: Literals of the scripts that are no words for people: class names, CSS selectors and
#: a message for the developer's console. (snippets.js writes code, not words: its notes
#: are catalogue keys; it is left out of the scan.)
NOT_WORDS = {"button small", "select, input", ".model-checks input",
             ".model-checks input:checked", "no words for ${key} in lang-${lang}.json"}


#: Parameters the page passes that the English words leave out (English needs no
#: "verdict" before the check's own summary, nor an explanation beside an English error).
UNSHOWN_IN_ENGLISH = {"check.summary": {"verdict"}, "error.shown": {"explanation"}}


def languages() -> dict[str, str]:
    return json.loads((STATIC / "languages.json").read_text())


def catalogue(code: str) -> dict:
    return json.loads((STATIC / f"lang-{code}.json").read_text())


def variants(value) -> list[str]:
    """A catalogue value's texts: the string, or each of its plural forms."""
    return list(value.values()) if isinstance(value, dict) else [value]


def scripts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(STATIC.glob("*.js"))}


# --- the catalogues ------------------------------------------------------------------------

def test_both_languages_are_offered_each_in_its_own_words():
    assert languages() == {"en": "English", "zh-CN": "简体中文"}


def test_the_catalogues_have_the_same_keys_placeholders_and_markup():
    english = catalogue("en")
    for code in languages():
        words = catalogue(code)
        assert sorted(words) == sorted(english), f"lang-{code}.json: keys differ from English"
        for key, value in words.items():
            texts, originals = variants(value), variants(english[key])
            assert all(isinstance(text, str) and text.strip() for text in texts), (code, key)
            if isinstance(value, dict):
                assert "other" in value, f"{code} {key}: a plural needs its 'other' form"
            names = {name for text in texts for name in PLACEHOLDER.findall(text)}
            shown = {name for text in originals for name in PLACEHOLDER.findall(text)}
            given = shown | UNSHOWN_IN_ENGLISH.get(key, set()) | {"n"}
            assert shown - {"n"} <= names <= given, (code, key, names, shown)
            assert {tuple(TAGS.findall(t)) for t in texts} <= {
                tuple(TAGS.findall(t)) for t in originals} | {()}, (code, key)


def all_markup() -> str:
    return "\n".join(path.read_text() for path in sorted(STATIC.glob("*.html")))


def test_every_key_is_used_and_every_key_used_exists():
    english = catalogue("en")
    markup = all_markup()
    code = "\n".join(scripts().values())
    unused = [key for key in english if f'"{key}"' not in markup + code]
    assert unused == [], "keys nothing uses (remove them from every catalogue)"
    named = set(re.findall(r'data-i18n(?:-[a-z-]+)?="([^"]+)"', markup))
    named |= set(re.findall(r'\b(?:t|nodes)\(\s*"([^"]+)"', code))
    assert sorted(named - set(english)) == [], "keys the page uses that no catalogue has"


# --- no words outside the catalogues --------------------------------------------------------

class _Markup(HTMLParser):
    """The words of index.html that no data-i18n attribute fills, nor translate="no" keeps."""

    VOID = {"meta", "link", "input", "br", "img", "hr", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.loose: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        kept = attrs.get("translate") == "no" or tag in ("title", "script", "style")
        for name in ("placeholder", "title", "aria-label", "alt", "label"):
            if re.search(r"[^\W\d_]", attrs.get(name) or ""):
                self.loose.append(f"<{tag} {name}={attrs[name]!r}>")
        if tag not in self.VOID:
            self.stack.append((tag, kept or any(k for _, k in self.stack)))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        if re.search(r"[^\W\d_]", data) and not (self.stack and self.stack[-1][1]):
            self.loose.append(data.strip())


@pytest.mark.parametrize("page", ["index.html", "docs.html"])
def test_the_markup_holds_no_words_of_its_own(page):
    parser = _Markup()
    parser.feed((STATIC / page).read_text())
    assert parser.loose == []


def _literals(source: str) -> list[str]:
    """The string literals of a script (comments dropped first)."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = "\n".join(re.sub(r"(^|\s)//\s.*$", "", line) for line in source.splitlines())
    pattern = r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'|`((?:[^`\\]|\\.)*)`'
    return [next(g for g in m.groups() if g is not None) for m in re.finditer(pattern, source)]


def test_the_scripts_hold_no_words_of_their_own():
    prose = re.compile(r"[A-Za-z]{2,}[ ,:;]+[A-Za-z]{2,}|[A-Za-z]{3,}(…|[.!?])$")
    found = [(name, literal) for name, source in scripts().items() if name != "snippets.js"
             for literal in _literals(source)
             if prose.search(literal) and literal not in NOT_WORDS]
    assert found == [], "words in a script: put them in the catalogues"


# --- in the browser ---------------------------------------------------------------------------

#: Everything on the page that is text for people: each text node (with the text of its
#: element around it, where other elements stand in as U+0001), and the translatable
#: attributes, one line at a time. Skipped: what is marked translate="no", <time>
#: (formatted by Intl), scripts and styles. <template>s are read too.
WALK = r"""
const out = [];
const SKIP = (el) => el.closest('[translate="no"], time, script, style, head');
const INLINE = new Set(["CODE", "KBD", "STRONG"]);
function own(el) {
  let text = "";
  for (const node of el.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) text += node.data;
    else if (node.nodeType === Node.ELEMENT_NODE)
      text += INLINE.has(node.tagName) && !SKIP(node) ? own(node) : "\u0001";
  }
  return text;
}
function walk(root) {
  const it = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = it.nextNode(); node; node = it.nextNode()) {
    const parent = node.parentElement;
    if (!parent || SKIP(parent) || !node.data.trim()) continue;
    const around = [own(parent)];
    if (INLINE.has(parent.tagName) && parent.parentElement) around.push(own(parent.parentElement));
    out.push({text: node.data.trim(), around: around.map((s) => s.trim()),
              where: parent.outerHTML.slice(0, 120)});
  }
  for (const el of root.querySelectorAll("[placeholder], [title], [aria-label], [alt], optgroup[label]")) {
    if (SKIP(el)) continue;
    for (const name of ["placeholder", "title", "aria-label", "alt", "label"]) {
      const value = el.getAttribute(name);
      if (!value || (name === "label" && el.tagName !== "OPTGROUP")) continue;
      for (const line of value.split("\n")) {
        if (line.trim()) out.push({text: line.trim(), around: [], where: `${name} of ${el.outerHTML.slice(0, 80)}`});
      }
    }
  }
  for (const template of root.querySelectorAll("template")) walk(template.content);
}
walk(document.body);
return out;
"""


class Words:
    """Does a text come from this catalogue? Each value (each plural form) is a pattern
    where a {placeholder} stands for anything; a value with no letters of its own (say
    "{label}: {state}") counts only when what fills it counts too (or has no letters)."""

    def __init__(self, words: dict, data: set[str]) -> None:
        self.data = data
        self.patterns = []
        for value in words.values():
            for variant in variants(value):
                plain = TAGS.sub("", variant).strip()
                parts = PLACEHOLDER.split(plain)
                pattern = "".join(re.escape(p) if i % 2 == 0 else "(.*?)"
                                  for i, p in enumerate(parts))
                literal = "".join(parts[::2])
                self.patterns.append((re.compile(pattern, re.S), bool(_letters(literal))))

    def knows(self, text: str, depth: int = 0) -> bool:
        text = text.strip()
        if not _letters(text) or text in self.data or re.fullmatch(r"https?://\S+", text):
            return True
        if depth > 3:
            return False
        for pattern, worded in self.patterns:
            match = pattern.fullmatch(text)
            if not match:
                continue
            if worded:
                return True
            parts = [g for g in match.groups() if g.strip()]
            if parts and all(p.strip() != text for p in parts) \
                    and all(self.knows(p, depth + 1) for p in parts):
                return True
        return False


def _letters(text: str) -> bool:
    return bool(re.search(r"[^\W\d_]", text.replace("\u0001", "")))


@pytest.fixture(scope="module", params=["zh-CN", "en-US"])
def speaking(request, tmp_path_factory):
    """A browser whose languages are ``zh-CN`` (then ``en-US``)."""
    driver = start_chromium(tmp_path_factory.mktemp(f"chromium-{request.param}"),
                            lang=request.param)
    try:
        yield request.param, driver
    finally:
        driver.quit()


def _rich_page(driver, daemon) -> None:
    """The page with an admin key, a result, a running job, a user key and the check."""
    headers = {"Authorization": f"Bearer {KEY}"}
    made = daemon.run_job(prompt="a lighthouse at dawn", seed=5, headers=headers)
    assert made["state"] == "succeeded"
    httpx.post(f"{daemon.url}/arting/v1/admin/keys", headers=headers, timeout=10,
               json={"name": "alice", "images_per_day": 3, "expires_at": 4102444800})
    daemon.do(daemon.sandbox.configure, generation_time=60)
    open_page(driver, daemon)
    save_key(driver, KEY)
    until(driver, lambda d: css(d, "#keys").is_displayed(), what="the keys panel")
    until(driver, lambda d: css_all(d, "#key-list li"), what="alice's card")
    until(driver, lambda d: css_all(d, "#gallery li.result img"), what="the result")
    css(driver, "#check-run").click()
    until(driver, lambda d: css_all(d, "#check-findings li"), what="the check's findings")
    fill(driver, "#prompt", "a slow harbour")
    css(driver, "#generate").click()
    until(driver, lambda d: d.execute_script(
        "const c = document.querySelector('#jobs li.job');"
        "return c && c.dataset.state === 'running'"), what="a running job")
    css(driver, "#form-code").click()
    until(driver, lambda d: css(d, "#code-dialog").is_displayed(), what="the code dialog")


def test_the_page_speaks_the_browsers_language_and_nothing_bypasses_the_catalogue(
        speaking, make_daemon):
    lang, driver = speaking
    code = "zh-CN" if lang == "zh-CN" else "en"
    daemon = make_daemon(api_keys=[KEY], sandbox_options={"generation_time": 0.0})
    _rich_page(driver, daemon)

    words = catalogue(code)
    assert driver.execute_script("return document.documentElement.lang") == code
    assert text(driver, "#gen-title") == words["form.title"]
    assert text(driver, "#generate") == words["form.generate"]
    assert chip(driver, "mode") == words["status.mode.live_at"].format(
        host=daemon.settings.base_url.removeprefix("http://"))
    assert text(driver, "#usage-who") == words["usage.who.admin"]
    if code == "zh-CN":
        assert text(driver, "#gallery-title") == "作品"
        assert re.fullmatch(r"生成中… \d+%", text(driver, "#jobs li.job .job-state"))
        assert "年" in text(driver, "#key-list li .key-meta")      # a date, in Chinese
        assert text(driver, "#check-summary").startswith(("一切正常：", "可以使用，但有警告："))
    else:
        assert text(driver, "#gallery-title") == "Gallery"
        assert re.fullmatch(r"Generating… \d+ %", text(driver, "#jobs li.job .job-state"))

    data = {"a lighthouse at dawn", "a slow harbour", "alice", "anonymous", "token-1"}
    known = Words(words, data)
    found = driver.execute_script(WALK)
    assert len(found) > 150
    stray = [f for f in found
             if not known.knows(f["text"]) and not any(known.knows(a) for a in f["around"])]
    assert stray == [], f"text on the {lang} page that is not in lang-{code}.json"
    driver.execute_script("document.getElementById('code-dialog').close()")
    path = screenshot(driver, f"i18n-{lang}.png")
    assert path.stat().st_size > 10_000 and path.parent == ARTIFACTS


def test_the_language_control_switches_and_is_remembered(make_daemon, tmp_path):
    driver = start_chromium(tmp_path / "chromium", lang="zh-CN")
    try:
        daemon = make_daemon()
        open_page(driver, daemon)
        assert text(driver, "#generate") == "生成"
        from selenium.webdriver.support.ui import Select
        Select(css(driver, "#language")).select_by_value("en")
        until(driver, lambda d: text(d, "#generate") == "Generate", what="the page in English")
        assert driver.execute_script("return document.documentElement.lang") == "en"
        assert driver.execute_script(
            "return localStorage.getItem('arting-2api.language')") == "en"
        open_page(driver, daemon)                                     # a reload keeps it
        until(driver, lambda d: chip(d, "mode").startswith("live: "), what="the status in English")
        assert text(driver, "#generate") == "Generate"
        assert css(driver, "#language").get_attribute("value") == "en"
        Select(css(driver, "#language")).select_by_value("zh-CN")
        until(driver, lambda d: text(d, "#generate") == "生成", what="the page in Chinese")
    finally:
        driver.quit()


def test_a_refusal_keeps_the_daemons_english_beside_its_chinese_explanation(make_daemon,
                                                                           tmp_path):
    from selenium.webdriver.common.keys import Keys

    driver = start_chromium(tmp_path / "chromium", lang="zh-CN")
    try:
        daemon = make_daemon()
        open_page(driver, daemon)
        fill(driver, "#steps", 500)
        css(driver, "#prompt").send_keys("a cat", Keys.ENTER)
        until(driver, lambda d: text(d, "#steps-error"), what="the steps error")
        words = catalogue("zh-CN")
        assert text(driver, "#steps-error") == words["error.shown"].format(
            explanation=words["error.invalid_request"],
            message="steps must be between 1 and 150.")
        # The page's own checks are in Chinese from the start.
        fill(driver, "#prompt", "")
        css(driver, "#prompt").send_keys(Keys.ENTER)
        assert text(driver, "#prompt-error") == words["form.error.prompt"]
    finally:
        driver.quit()
