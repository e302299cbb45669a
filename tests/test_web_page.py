"""The built-in web page, driven in a real headless Chromium against daemon + sandbox.

The browser is Debian's ``chromium`` with ``chromium-driver``, through Selenium (no
Selenium Manager: the driver's path is given, so nothing is downloaded). One browser
serves the whole module; each test opens its own daemon, whose new port is a new
origin, so no test sees another's stored key. Screenshots at desktop and phone width
go to ``artifacts/web-page/`` (not committed) for a person to look at.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "arting_daemon" / "static"
ARTIFACTS = ROOT / "artifacts" / "web-page"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: This machine's network is closed: without these, Chromium keeps dialling out.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")
KEY = "sesame-0123456789"
GOOD_TOKEN = "6c0d2e8f-1a3b-4c5d-8e7f-9a0b1c2d3e4f"
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


# --- the browser --------------------------------------------------------------------------

def start_chromium(profile: Path, flags: tuple[str, ...] = (), logs: tuple[str, ...] = (),
                   lang: str = "en-US"):
    """A headless Chromium driven through Selenium (skips the test without one), with
    ``CHROMIUM_FLAGS`` and ``flags``, speaking ``lang`` (``--lang``, and the languages it
    tells pages, which headless Chromium takes from its preferences only); its console
    log is kept, and the ``logs`` named."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} not "
                    "found): apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--lang={lang}")
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    options.set_capability("goog:loggingPrefs", dict.fromkeys(("browser", *logs), "ALL"))
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser):
    """The browser; after each test, back at desktop size, and its console must hold no
    script error or security (CSP) report: only refused requests, which are expected."""
    browser.get_log("browser")
    yield browser
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    problems = [e["message"] for e in browser.get_log("browser")
                if e["level"] in ("SEVERE", "WARNING") and e["source"] != "network"]
    assert problems == []


def until(driver, condition, timeout: float = 10.0, what: str = ""):
    """Poll ``condition(driver)`` until it is truthy; its value, or a failure saying what."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what or condition}") from None


def until_running(driver, card: str) -> None:
    """Until the job card shows a running job with some progress."""
    until(driver, lambda d: d.execute_script(
        "const c = document.querySelector(arguments[0]);"
        "return c && c.dataset.state === 'running' && c.querySelector('progress').value > 0",
        card), what="a running job with progress")


def css(driver, selector: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, selector)


def css_all(driver, selector: str):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text(driver, selector: str) -> str:
    return driver.execute_script(
        "const el = document.querySelector(arguments[0]); return el ? el.textContent : '';",
        selector)


def open_page(driver, daemon) -> None:
    driver.get(daemon.url + "/")
    until(driver, lambda d: d.execute_script(
        "return document.querySelectorAll('#model option').length") > 0, what="the catalog")


def screenshot(driver, name: str, phone: bool = False, full: bool = True) -> Path:
    """A PNG of the whole page (or of what the window shows) in artifacts/web-page/."""
    if phone:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        time.sleep(0.2)
    options = {"format": "png"}
    if full:
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        options |= {"captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


def save_key(driver, key: str) -> None:
    from selenium.webdriver.common.keys import Keys
    # The page opens the key panel itself when its first status is refused: wait for that
    # answer, or a click on the toggle may close the panel it has just opened.
    until(driver, lambda d: chip(d, "upstream") != "checking…", what="the first status")
    if not css(driver, "#key-panel").is_displayed():
        css(driver, "#key-toggle").click()
    field = css(driver, "#api-key")
    field.send_keys(key, Keys.ENTER)


def chip(driver, name: str) -> str:
    return text(driver, f"#st-{name} .chip-value")


def choose(driver, selector: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select
    Select(css(driver, selector)).select_by_value(value)


def fill(driver, selector: str, value) -> None:
    field = css(driver, selector)
    field.clear()
    field.send_keys(str(value))


def api(daemon, path: str, method: str = "GET", **kw):
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.request(method, f"{daemon.url}/arting/v1/{path}", headers=headers,
                         timeout=10, **kw)


def wait_jobs(daemon, n: int, timeout: float = 15) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = api(daemon, "jobs?limit=100").json()["data"]
        if len(jobs) >= n and all(j["state"] in ("succeeded", "failed", "cancelled")
                                  for j in jobs):
            return jobs
        time.sleep(0.05)
    raise AssertionError(f"{n} jobs did not finish")


# --- in the browser -----------------------------------------------------------------------

def test_generate_two_images_watch_progress_and_find_both_in_the_gallery(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(sandbox=True, sandbox_generation_time=1.5, expected_duration=2.0,
                         api_keys=[KEY])
    open_page(page, daemon)

    # The daemon wants a key: the page says so in words and offers the (empty) key field.
    until(page, lambda d: chip(d, "upstream") == "needs the API key", what="the key request")
    assert "needs an API key" in text(page, "#status-detail")
    assert css(page, "#key-panel").is_displayed()
    assert css(page, "#api-key").get_attribute("value") == ""
    save_key(page, KEY)
    until(page, lambda d: chip(d, "tokens") == "guest identity: 1 ok", what="the status")
    assert chip(page, "mode") == "sandbox (Arting emulator)"
    assert chip(page, "upstream") == "not tried yet"
    assert page.execute_script("return localStorage.getItem('arting-2api.api-key')") == KEY
    assert css(page, "#api-key").get_attribute("value") == ""
    assert not css(page, "#key-panel").is_displayed()

    # After a reload the key still works, is not pre-filled, and is in no URL.
    open_page(page, daemon)
    until(page, lambda d: chip(d, "tokens") == "guest identity: 1 ok", what="the status")
    css(page, "#key-toggle").click()
    assert css(page, "#api-key").get_attribute("value") == ""
    assert "saved" in text(page, "#key-state")
    css(page, "#key-toggle").click()

    fill(page, "#negative_prompt", "fog, people")
    choose(page, "#model", "asyncsMIX_v7")
    css(page, "#lora-add").click()
    choose(page, "#lora-list li:nth-child(1) select", "add_detail")
    fill(page, "#lora-list li:nth-child(1) input", "0.6")
    choose(page, "#size", "512x512")
    fill(page, "#n", 2)
    fill(page, "#seed", 1234)
    fill(page, "#steps", 30)
    fill(page, "#guidance", 6.5)
    choose(page, "#sampler", "DPM++ 2M Karras")
    css(page, "#nsfw").click()
    css(page, "#prompt").send_keys("a lighthouse at dawn", Keys.ENTER)

    # Progress, live from the job's events: a running bar, elapsed time and an ETA.
    card = "#jobs li.job"
    until_running(page, card)
    assert re.fullmatch(r"Generating… \d+ %", text(page, f"{card} .job-state"))
    assert re.fullmatch(r"Elapsed \d+ s · (about \d+ s left|almost done)",
                        text(page, f"{card} .job-times"))
    # ... over the page's WebSocket (its key in the first message, never in the URL).
    assert api(daemon, "status").json()["websocket_clients"] == 1
    assert text(page, f"{card} .job-prompt") == "a lighthouse at dawn"
    screenshot(page, "desktop-progress.png")

    # Then both images in the gallery, loaded, with the settings they were made with.
    result = "#gallery li.result"
    until(page, lambda d: d.execute_script(
        "const imgs = document.querySelectorAll(arguments[0] + ' img');"
        "return imgs.length === 2 && [...imgs].every(i => i.complete && i.naturalWidth === 512)",
        result), what="two loaded images in the gallery")
    alts = [img.get_attribute("alt") for img in css_all(page, f"{result} img")]
    assert alts == ["Image 1 of 2, seed 1234: a lighthouse at dawn",
                    "Image 2 of 2, seed 1235: a lighthouse at dawn"]
    settings = dict(zip([e.text for e in css_all(page, f"{result} dt")],
                        [e.text for e in css_all(page, f"{result} dd")]))
    assert settings | {"Made": ""} == {
        "Model": "asyncsMIX_v7", "Size": "512 × 512", "Seeds": "1234, 1235", "Steps": "30",
        "Guidance": "6.5", "Sampler": "DPM++ 2M Karras", "LoRAs": "add_detail (0.6)",
        "Negative": "fog, people", "NSFW": "allowed", "Made": ""}
    until(page, lambda d: not d.find_elements("css selector", card), what="the card to go")
    until(page, lambda d: chip(d, "upstream") == "reachable, last image just now",
          what="the upstream to count as reachable")
    assert text(page, "#gallery-state") == "1 result, newest first."

    # What the daemon got is what the form said.
    job = api(daemon, "jobs?limit=1").json()["data"][0]
    assert job["source"] == "web"
    assert {k: job["request"][k] for k in ("prompt", "negative_prompt", "model", "width",
                                          "height", "n", "seed", "steps", "guidance",
                                          "sampler", "loras", "nsfw")} == {
        "prompt": "a lighthouse at dawn", "negative_prompt": "fog, people",
        "model": "asyncsMIX_v7", "width": 512, "height": 512, "n": 2, "seed": 1234,
        "steps": 30, "guidance": 6.5, "sampler": "DPM++ 2M Karras",
        "loras": [{"id": "add_detail", "weight": 0.6}], "nsfw": True}

    # Everything came from the daemon itself, and the key never entered a URL.
    urls = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat([location.href])")
    assert urls and all(u.startswith(daemon.url + "/") for u in urls)
    assert not any(KEY in u for u in urls)

    assert no_sideways_scroll(page)
    screenshot(page, "desktop.png")
    screenshot(page, "phone.png", phone=True)
    assert no_sideways_scroll(page)
    assert css(page, "#generate").is_displayed()


def test_a_slow_job_shows_its_queue_place_and_can_be_cancelled(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(sandbox=True, sandbox_generation_time=60, max_active_jobs=1)
    open_page(page, daemon)
    css(page, "#prompt").send_keys("the first, slow one", Keys.ENTER)
    until(page, lambda d: len(css_all(d, "#jobs li.job")) == 1, what="the first card")
    fill(page, "#prompt", "the second, waiting")
    css(page, "#generate").click()

    second, first = "#jobs li.job:nth-child(1)", "#jobs li.job:nth-child(2)"
    until(page, lambda d: text(d, f"{second} .job-state") == "Waiting in the queue: position 1.",
          what="the queue position")
    until(page, lambda d: text(d, f"{first} .job-state").startswith("Generating…"),
          what="the first job to run")
    assert text(page, f"{first} .job-prompt") == "the first, slow one"
    until(page, lambda d: chip(d, "queue") == "1 running, 1 waiting", what="the queue chip")
    screenshot(page, "desktop-queue.png")
    screenshot(page, "phone-queue.png", phone=True)
    assert no_sideways_scroll(page)

    css(page, f"{first} .job-cancel").click()
    until(page, lambda d: text(d, f"{first} .job-state") == "Cancelled.", what="the cancel")
    assert css(page, f"{first} .job-dismiss").is_displayed()
    assert not css(page, f"{first} .job-cancel").is_displayed()
    # The slot is free: the waiting job runs now, and can be cancelled too.
    until(page, lambda d: text(d, f"{second} .job-state").startswith("Generating…"),
          what="the second job to run")
    css(page, f"{second} .job-cancel").click()
    until(page, lambda d: text(d, f"{second} .job-state") == "Cancelled.", what="the cancel")

    jobs = api(daemon, "jobs?limit=10").json()["data"]
    assert [j["state"] for j in jobs] == ["cancelled", "cancelled"]
    assert [j["error"]["code"] for j in jobs] == ["cancelled", "cancelled"]

    for _ in range(2):
        css(page, "#jobs li.job .job-dismiss").click()
    assert css_all(page, "#jobs li.job") == []
    assert css(page, "#jobs-empty").is_displayed()
    assert page.execute_script("return document.activeElement.id") == "prompt"
    assert text(page, "#gallery-state") == "No images yet: what you generate appears here."


def test_without_websockets_the_page_follows_jobs_over_their_event_streams(page,
                                                                          make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(sandbox=True, sandbox_generation_time=4, api_keys=[KEY])
    added = page.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                 {"source": "delete window.WebSocket;"})
    try:
        open_page(page, daemon)
        assert page.execute_script("return typeof WebSocket") == "undefined"
        save_key(page, KEY)
        css(page, "#prompt").send_keys("a lighthouse", Keys.ENTER)
        until_running(page, "#jobs li.job")
        assert api(daemon, "status").json()["websocket_clients"] == 0
        until(page, lambda d: len(css_all(d, "#gallery li.result img")) == 1,
              what="the image in the gallery")
    finally:
        page.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                             {"identifier": added["identifier"]})


def test_a_wrong_api_key_is_reported_in_words(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(api_keys=[KEY])
    open_page(page, daemon)
    save_key(page, "not-the-key")
    refused = "The API key was refused: this daemon does not know it. Enter your key (a user " \
              "key from the daemon's operator, or the operator's API_MASTER_KEY) under “API key”."
    until(page, lambda d: text(d, "#status-detail") == refused, what="the refusal")
    assert css(page, "#status-detail").is_displayed()
    assert css(page, "#key-panel").is_displayed()
    until(page, lambda d: text(d, "#gallery-state") == refused, what="the gallery's refusal")

    css(page, "#prompt").send_keys("a cat", Keys.ENTER)
    until(page, lambda d: text(d, "#form-error") == refused, what="the form's refusal")
    assert css(page, "#form-error").is_displayed()
    assert css_all(page, "#jobs li.job") == []
    screenshot(page, "desktop-wrong-key.png")
    screenshot(page, "phone-wrong-key.png", phone=True)
    assert no_sideways_scroll(page)
    assert api(daemon, "jobs").json()["data"] == []

    # The right key clears it: the live daemon's upstream is named, not "sandbox".
    save_key(page, KEY)
    until(page, lambda d: chip(d, "mode") == f"live: {daemon.settings.base_url[7:]}",
          what="the status with the right key")
    assert not css(page, "#status-detail").is_displayed()


def test_the_gallery_says_which_images_expired_and_which_came_from_the_cache(page,
                                                                            make_daemon):
    daemon = make_daemon(store_max_images=2, sandbox_options={"generation_time": 0.0})
    old = daemon.run_job(prompt="the old one", seed=1)
    daemon.run_job(prompt="the old one", seed=1)                  # a cache hit
    then = time.time() - 3600                                     # stored an hour ago
    for path in (daemon.settings.data_dir / "images").rglob("*.png"):
        os.utime(path, (then, then))
    daemon.run_job(prompt="new", seed=2)
    daemon.run_job(prompt="newer", seed=3)                        # over the cap: old goes
    deadline = time.monotonic() + 10
    while not api(daemon, f"jobs/{old['id']}").json()["images_expired"]:
        assert time.monotonic() < deadline, "the old image was never removed"
        time.sleep(0.05)

    open_page(page, daemon)
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 4, what="four results")
    results = css_all(page, "#gallery li.result")
    oldest = results[-1]
    assert oldest.find_element("css selector", ".thumb.expired").text == \
        "Image 1 (seed 1) has expired from the store."
    assert oldest.find_elements("css selector", "img") == []
    hit = results[-2]
    settings = dict(zip([e.text for e in hit.find_elements("css selector", "dt")],
                        [e.text for e in hit.find_elements("css selector", "dd")]))
    assert settings["Cache"] == "the same images as an earlier job, from the store"
    assert len(css_all(page, "#gallery li.result img")) == 2
    screenshot(page, "desktop-expired.png")


def test_gallery_pages_reuses_settings_and_gives_the_same_request_as_code(page, make_daemon,
                                                                          tmp_path):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon()
    for i in range(13):
        api(daemon, "jobs", "POST", json={"prompt": f"scene {i}", "seed": i, "size": "256x256"})
        time.sleep(0.01)  # distinct created_at, so the order is certain
    wait_jobs(daemon, 13)
    rich = {"prompt": "a lighthouse at dawn, it's 'quoted' & $HOME", "negative_prompt": "fog",
            "model": "asyncsMIX_v7", "size": "512x768", "n": 2, "seed": 77, "steps": 20,
            "guidance": 5.5, "sampler": "Euler", "nsfw": False,
            "loras": [{"id": "add_detail", "weight": 0.6}]}
    api(daemon, "jobs", "POST", json=rich)
    original = wait_jobs(daemon, 14)[0]
    hashes = [i["hash"] for i in original["images"]]

    open_page(page, daemon)
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 12, what="the first page")
    prompts = [e.text for e in css_all(page, "#gallery .result-prompt")]
    assert prompts == [rich["prompt"]] + [f"scene {i}" for i in range(12, 1, -1)]
    assert text(page, "#gallery-state") == "12 results so far, newest first."
    css(page, "#gallery-more").click()
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 14, what="the older page")
    assert [e.text for e in css_all(page, "#gallery .result-prompt")][-2:] == ["scene 1", "scene 0"]
    assert not css(page, "#gallery-more").is_displayed()
    assert page.execute_script("return document.activeElement.closest('li').dataset.jobId") \
        == css_all(page, "#gallery li.result")[12].get_attribute("data-job-id")

    # Open and download: the stored image, named by its seed.
    first = "#gallery li.result:nth-child(1)"
    opener = css(page, f"{first} a.open")
    assert opener.get_attribute("target") == "_blank"
    download = css(page, f"{first} a.download")
    assert download.get_attribute("download") == "arting-77.png"
    png = httpx.get(download.get_attribute("href")).content
    assert hashlib.sha256(png).hexdigest() == hashes[0]
    assert opener.get_attribute("href") == download.get_attribute("href")

    # "Use these settings": the form holds them, and generating again makes the same images.
    css(page, f"{first} .reuse").click()
    assert page.execute_script("return document.activeElement.id") == "prompt"
    values = page.execute_script("""
        const v = (id) => document.getElementById(id).value;
        return {prompt: v('prompt'), negative: v('negative_prompt'), model: v('model'),
                size: v('size'), n: v('n'), seed: v('seed'), steps: v('steps'),
                guidance: v('guidance'), sampler: v('sampler'),
                nsfw: document.getElementById('nsfw').checked,
                loras: [...document.querySelectorAll('#lora-list li')].map(
                    li => [li.querySelector('select').value, li.querySelector('input').value])};
    """)
    assert values == {"prompt": rich["prompt"], "negative": "fog", "model": "asyncsMIX_v7",
                      "size": "512x768", "n": "2", "seed": "77", "steps": "20",
                      "guidance": "5.5", "sampler": "Euler", "nsfw": False,
                      "loras": [["add_detail", "0.6"]]}
    css(page, "#prompt").send_keys(Keys.ENTER)
    again = wait_jobs(daemon, 15)[0]
    assert again["id"] != original["id"]
    assert again["request"] == original["request"]
    assert [i["hash"] for i in again["images"]] == hashes
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 15, what="the new result")

    # "Copy as code": three tabs, each the same request.
    clipboard = {"origin": daemon.url, "permissions": ["clipboardReadWrite",
                                                       "clipboardSanitizedWrite"]}
    page.execute_cdp_cmd("Browser.grantPermissions", clipboard)
    opener_button = css(page, "#gallery li.result:nth-child(2) .as-code")
    opener_button.click()
    until(page, lambda d: css(d, "#code-dialog").is_displayed(), what="the code dialog")
    assert page.execute_script("return document.activeElement.id") == "tab-curl"
    snippets = {"curl": text(page, "#code-text")}
    screenshot(page, "desktop-code.png", full=False)
    for kind in ("python", "a1111"):
        page.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
        until(page, lambda d, k=kind: css(d, "#code-text").get_attribute("data-kind") == k,
              what=f"the {kind} tab")
        snippets[kind] = text(page, "#code-text")
    assert css(page, "#tab-a1111").get_attribute("aria-selected") == "true"
    css(page, "#code-copy").click()
    until(page, lambda d: text(d, "#code-copied") == "Copied.", what="the copy")
    clipboard = page.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('! ' + e))")
    assert clipboard == snippets["a1111"]
    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    until(page, lambda d: not css(d, "#code-dialog").is_displayed(), what="the dialog to close")
    assert page.execute_script("return document.activeElement") == opener_button

    # curl: the OpenAI route, answered with links to the very same images.
    argv = shlex.split(snippets["curl"])
    assert argv[:3] == ["curl", "-s", f"{daemon.url}/v1/images/generations"]
    body = json.loads(argv[argv.index("-d") + 1])
    assert body == {"model": "asyncsMIX_v7", "prompt": rich["prompt"], "n": 2,
                    "size": "512x768", "negative_prompt": "fog", "seed": 77, "steps": 20,
                    "guidance": 5.5, "sampler": "Euler", "clip_skip": 2,
                    "loras": [{"id": "add_detail", "weight": 0.6}], "nsfw": False,
                    "response_format": "url"}
    answer = httpx.post(argv[2], json=body, timeout=30).json()
    assert [d["url"].rsplit("/", 1)[1] for d in answer["data"]] == [f"{h}.png" for h in hashes]

    # The OpenAI SDK snippet runs as it is and saves the same images.
    script = tmp_path / "snippet.py"
    script.write_text(snippets["python"])
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=60)
    saved = [hashlib.sha256((tmp_path / f"arting-{i}.png").read_bytes()).hexdigest()
             for i in (1, 2)]
    assert saved == hashes

    # A1111: txt2img with A1111's own field names, LoRAs as prompt tags; its pipe saves
    # the base64 images that txt2img answers with.
    argv = shlex.split(snippets["a1111"])
    assert argv[2] == f"{daemon.url}/sdapi/v1/txt2img"
    body = json.loads(argv[argv.index("-d") + 1])
    assert body == {"prompt": rich["prompt"] + " <lora:add_detail:0.6>",
                    "negative_prompt": "fog", "seed": 77, "steps": 20, "cfg_scale": 5.5,
                    "sampler_name": "Euler", "width": 512, "height": 768, "batch_size": 2,
                    "override_settings": {"sd_model_checkpoint": "asyncsMIX_v7",
                                          "CLIP_stop_at_last_layers": 2}}
    assert argv[argv.index("|") + 1:argv.index("|") + 3] == ["python3", "-c"]
    fake_answer = json.dumps({"images": [base64.b64encode(b"one").decode()]})
    subprocess.run([sys.executable, "-c", argv[-1]], input=fake_answer, text=True,
                   cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / "arting-1.png").read_bytes() == b"one"


def test_keyboard_labels_focus_and_field_errors(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon()
    open_page(page, daemon)

    unlabelled = page.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, button')]
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.textContent.trim())
          .map(el => el.id || el.outerHTML);
    """)
    assert unlabelled == []

    # Tab walks the page in reading order, and the focus can be seen.
    page.execute_script("document.activeElement.blur()")
    order = []
    for _ in range(17):
        page.switch_to.active_element.send_keys(Keys.TAB)
        el = page.switch_to.active_element
        order.append(el.get_attribute("id") or el.get_attribute("class"))
        outline = page.execute_script(
            "const s = getComputedStyle(document.activeElement);"
            "return [s.outlineStyle, parseFloat(s.outlineWidth)]")
        assert outline[0] != "none" and outline[1] >= 2, (order[-1], outline)
    assert order == ["skip", "docs-link", "check-run", "key-toggle", "prompt",
                     "negative_prompt", "model", "lora-add", "size", "n", "seed",
                     "seed-random", "steps", "guidance", "sampler", "nsfw", "generate"]

    # Shift+Enter is a new line; Enter with no prompt is an error in words, at the field.
    prompt = css(page, "#prompt")
    prompt.send_keys(Keys.SHIFT, Keys.ENTER, Keys.NULL)
    assert prompt.get_attribute("value") == "\n"
    prompt.send_keys(Keys.ENTER)
    assert text(page, "#prompt-error") == "Write a prompt first: it says what to draw."
    assert prompt.get_attribute("aria-invalid") == "true"

    # The daemon's own refusal lands at the field it names.
    prompt.send_keys("a cat")
    assert prompt.get_attribute("aria-invalid") is None
    fill(page, "#steps", 500)
    prompt.send_keys(Keys.ENTER)
    until(page, lambda d: text(d, "#steps-error") == "steps must be between 1 and 150.",
          what="the steps error")
    assert page.execute_script("return document.activeElement.id") == "steps"
    assert css(page, "#steps").get_attribute("aria-invalid") == "true"
    assert css_all(page, "#jobs li.job") == []


def test_custom_size_and_the_form_as_code(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon()
    open_page(page, daemon)
    assert not css(page, "#width").is_displayed()
    choose(page, "#size", "custom")
    fill(page, "#width", 640)
    fill(page, "#height", 448)
    css(page, "#prompt").send_keys("a wide valley")

    # "Show as code" writes the form as it stands: no seed yet, so it says it is random.
    css(page, "#form-code").click()
    until(page, lambda d: css(d, "#code-dialog").is_displayed(), what="the code dialog")
    body = json.loads(shlex.split(text(page, "#code-text"))[-1])
    assert (body["prompt"], body["size"], "seed" in body) == ("a wide valley", "640x448", False)
    assert "The seed is random" in text(page, "#code-note")
    css(page, "#code-close").click()

    css(page, "#prompt").send_keys(Keys.ENTER)
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 1, what="the result")
    job = api(daemon, "jobs?limit=1").json()["data"][0]
    assert (job["request"]["width"], job["request"]["height"]) == (640, 448)
    assert text(page, "#gallery .settings dd:nth-of-type(2)") == "640 × 448"

    # Reusing a size that is no preset brings the custom fields back with it.
    choose(page, "#size", "512x512")
    css(page, "#gallery .reuse").click()
    assert css(page, "#size").get_attribute("value") == "custom"
    assert (css(page, "#width").get_attribute("value"),
            css(page, "#height").get_attribute("value")) == ("640", "448")
    assert css(page, "#width").is_displayed()
    assert css(page, "#seed").get_attribute("value") == str(job["request"]["seed"])


def test_upstream_trouble_is_shown_in_words(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon()
    daemon.do(daemon.sandbox.add_fault, "token_expired", route="create")
    open_page(page, daemon)
    until(page, lambda d: chip(d, "upstream") == "not tried yet", what="the status")
    css(page, "#prompt").send_keys("a cat", Keys.ENTER)
    until(page, lambda d: text(d, "#jobs li.job .job-state").startswith("Failed: "),
          what="the failure")
    until(page, lambda d: chip(d, "upstream") == "token refused", what="the token state")
    assert chip(page, "tokens") == "guest identity: 1 invalid"
    detail = text(page, "#status-detail")
    assert "token" in detail.lower() and css(page, "#status-detail").is_displayed()
    screenshot(page, "desktop-upstream-trouble.png")


def test_the_status_area_runs_the_free_check_and_lists_its_findings(page, make_daemon):
    daemon = make_daemon(api_keys=[KEY], auth_tokens=["not-a-uuid", GOOD_TOKEN],
                         sandbox_options={"auth_mode": "uuid"})
    open_page(page, daemon)
    save_key(page, KEY)
    until(page, lambda d: chip(d, "tokens") == "2 ok", what="the status")
    assert not css(page, "#check-result").is_displayed()
    assert text(page, "#check-help") == "Asks Arting without making an image: it costs nothing."

    css(page, "#check-run").click()
    until(page, lambda d: text(d, "#check-summary").startswith("The daemon would not work"),
          what="the check's findings")
    assert text(page, "#check-summary") == "The daemon would not work as configured (1 problem)."
    assert css(page, "#check-summary").get_attribute("data-level") == "bad"
    findings = {li.find_element("css selector", "strong").text: li.get_attribute("data-level")
                for li in css_all(page, "#check-findings li")}
    assert findings == {"ok · reach:": "ok", "ok · cloudflare:": "ok",
                        "problem · token-1:": "bad", "ok · token-2:": "ok",
                        "note · client:": "info", "note · image-to-image:": "info",
                        "note · envelope:": "info"}
    refused = text(page, "#check-findings li:nth-child(3)")
    assert 'refused by Arting (HTTP 200, code 100401 "invalid token")' in refused
    lines = 'auth_tokens = ["<a fresh token: arting.ai, F12, Network, the Authorization ' \
            'header>", "<token-2>"]'
    assert text(page, "#check-findings li:nth-child(3) code:last-of-type") == lines
    assert text(page, "#check-findings li:nth-child(3) code") == "Authorization"  # `quoted`
    assert css(page, "#check-config").is_displayed() and text(page, "#check-lines") == lines
    assert page.execute_script("return document.activeElement.id") == "check-run"
    # No image was made: polls only.
    assert daemon.sandbox.requests_for("create") == []
    assert "not-a-uuid" not in page.page_source
    screenshot(page, "desktop-check.png")
    screenshot(page, "phone-check.png", phone=True)
    assert no_sideways_scroll(page)

    # After a reload the last findings are still there.
    page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    open_page(page, daemon)
    until(page, lambda d: len(css_all(d, "#check-findings li")) == 7, what="the last findings")

    # It is the operator's: a user key is not offered it, nor shown its findings.
    user = api(daemon, "admin/keys", "POST", json={"name": "a user"}).json()["key"]
    save_key(page, user)
    until(page, lambda d: not css(d, "#check-row").is_displayed(), what="the check to go")
    assert not css(page, "#check-result").is_displayed()


def test_several_providers_their_health_and_a_fallback_in_words(page, make_daemon):
    from a1111_standin import A1111StandIn
    from selenium.webdriver.common.keys import Keys

    studio = A1111StandIn(step_time=0.05).start()
    try:
        daemon = make_daemon(providers=[{"name": "studio", "kind": "a1111", "label": "Studio",
                                         "base_url": studio.url},
                                        {"name": "relay", "kind": "openai",
                                         "base_url": "http://127.0.0.1:9/v1",
                                         "models": ["relay-model"]}],
                             fallbacks={"oneFORALLAnime": ["studio/*"]})
        daemon.do(daemon.sandbox.add_fault, "cf_1020", route="create")
        studio.wait_until(lambda _: "studio/dreamshaper_8" in [
            m["id"] for m in httpx.get(daemon.v1 + "/models").json()["data"]])
        open_page(page, daemon)
        found = dict(page.execute_script(
            "return [...document.querySelectorAll('#model optgroup')].map(g => "
            "[g.label, [...g.children].map(o => o.value)])"))
        assert list(found) == ["Arting", "Studio", "relay"]
        assert found["Studio"] == ["studio/dreamshaper_8", "studio/realisticVisionV51"]
        assert found["relay"] == ["relay-model"] and "oneFORALLAnime" in found["Arting"]

        # One chip per provider, in words; the relay nobody runs is unknown until tried.
        provider_chip = "#st-providers li[data-provider='{}'] .chip-value"
        until(page, lambda d: text(d, provider_chip.format("studio")) == "ok",
              what="Studio's chip")
        assert text(page, "#st-providers li[data-provider='studio'] .chip-label") == "Studio"
        assert text(page, provider_chip.format("relay")) == "not tried yet"

        choose(page, "#model", "oneFORALLAnime")
        css(page, "#prompt").send_keys("a harbour", Keys.ENTER)
        card = "#jobs li.job"
        until(page, lambda d: "it moved to Studio" in text(d, f"{card} .job-route"),
              what="the fallback on the job's card")
        assert text(page, f"{card} .job-route").startswith(
            "Arting failed (Cloudflare blocked this machine's address")
        result = "#gallery li.result"
        until(page, lambda d: d.find_elements("css selector", f"{result} dd"),
              what="the result")
        settings = dict(zip([e.text for e in css_all(page, f"{result} dt")],
                            [e.text for e in css_all(page, f"{result} dd")]))
        assert settings["Provider"] == "Studio"
        assert settings["Fell back"].endswith("it moved to Studio.")
        until(page, lambda d: text(d, provider_chip.format("arting")) ==
              "Cloudflare is in the way", what="Arting's chip")
        assert chip(page, "upstream") == "Cloudflare is in the way"
        assert "Cloudflare blocked" in text(page, "#status-detail")
        screenshot(page, "desktop-providers.png")
        assert no_sideways_scroll(page)
    finally:
        studio.stop()


def test_the_sandbox_offers_midjourney_and_stability_ai_too(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(sandbox=True, sandbox_providers=["midjourney", "stability"],
                         sandbox_generation_time=8)
    open_page(page, daemon)
    until(page, lambda d: len(css_all(d, "#model optgroup")) == 3, what="three providers")
    found = dict(page.execute_script(
        "return [...document.querySelectorAll('#model optgroup')].map(g => "
        "[g.label, [...g.children].map(o => o.value)])"))
    assert list(found) == ["Arting", "Midjourney (emulator)", "Stability AI (emulator)"]
    assert found["Midjourney (emulator)"] == ["midjourney", "niji"]
    assert found["Stability AI (emulator)"] == ["core", "ultra", "sd3.5-large",
                                                "sd3.5-large-turbo", "sd3.5-medium"]
    until(page, lambda d: chip(d, "mode") == "sandbox (emulators)", what="the mode")

    # Stability AI: one image, and the credits it cost on its chip.
    choose(page, "#model", "core")
    choose(page, "#size", "768x512")
    css(page, "#prompt").send_keys("a harbour", Keys.ENTER)
    provider_chip = "#st-providers li[data-provider='{}'] .chip-value"
    until(page, lambda d: text(d, provider_chip.format("stability")) == "ok, balance 997",
          what="Stability's balance", timeout=20)

    # Midjourney: two quadrants of one grid, one seed; then U1 from the gallery.
    choose(page, "#model", "midjourney")
    fill(page, "#n", 2)
    fill(page, "#prompt", "a lighthouse")
    css(page, "#generate").click()
    card = "#jobs li.job"
    until(page, lambda d: text(d, f"{card} .job-state").startswith(
        "Generating on Midjourney (emulator)…"), what="the Midjourney job running")
    result = "#gallery li.result:nth-child(1)"
    until(page, lambda d: len(css_all(d, f"{result} img")) == 2 and "lighthouse" in text(
        d, f"{result} .result-prompt"), what="the grid's two pictures", timeout=30)
    settings = dict(zip([e.text for e in css_all(page, f"{result} dt")],
                        [e.text for e in css_all(page, f"{result} dd")]))
    assert settings["Provider"] == "Midjourney (emulator)"
    first, second = settings["Seeds"].split(", ")
    assert first == second
    made = api(daemon, "jobs?limit=1").json()["data"][0]
    css(page, f"{result} .upscale[data-scale='2']").click()
    upscaled = f"#gallery li.result:nth-child(1):not([data-job-id='{made['id']}'])"
    until(page, lambda d: d.find_elements("css selector", f"{upscaled} dd"),
          what="the upscale", timeout=30)
    settings = dict(zip([e.text for e in css_all(page, f"{upscaled} dt")],
                        [e.text for e in css_all(page, f"{upscaled} dd")]))
    assert settings["Upscaled"] == "2× with Midjourney (emulator)"
    assert settings["Size"] == "1248 × 832"              # 2× a 3:2 quadrant (624 × 416)

    # A fourth task at once waits in the proxy's queue, and the page says where.
    jobs = [api(daemon, "jobs", "POST", json={"prompt": f"p{i}", "model": "midjourney"}).json()
            for i in range(4)]
    open_page(page, daemon)                        # it follows the unfinished jobs it finds
    until(page, lambda d: any(e.text == "Waiting in Midjourney (emulator)'s queue: position 1."
                              for e in css_all(d, "#jobs li.job .job-state")),
          what="the place in Midjourney's queue")
    for job in jobs:
        api(daemon, f"jobs/{job['id']}", "DELETE")
    screenshot(page, "desktop-sandbox-providers.png")


# --- without a browser --------------------------------------------------------------------

def test_upscale_a_result_from_the_gallery(page, make_daemon):
    daemon = make_daemon(sandbox_options={"generation_time": 1.0, "balance_start": 100})
    daemon.do(daemon.sandbox.configure, generation_time=0)
    made = daemon.run_job(prompt="a small lighthouse", width=256, height=256)
    daemon.do(daemon.sandbox.configure, generation_time=1.0)
    open_page(page, daemon)
    result = f"#gallery li.result[data-job-id='{made['id']}']"
    until(page, lambda d: d.find_elements("css selector", f"{result} .upscale"),
          what="the result")
    # The balance Arting reported with the job's poll is on the Tokens chip.
    until(page, lambda d: chip(d, "tokens") == "guest identity: 1 ok, balance 99",
          what="the balance")
    buttons = css_all(page, f"{result} .upscale")
    assert [b.text for b in buttons] == ["Upscale 2×", "Upscale 4×"]
    assert all(b.is_displayed() for b in buttons)
    assert buttons[0].get_attribute("aria-label") == "Upscale this image 2× with Arting"
    buttons[0].click()

    # The upscale is a job like any other: a card with its progress, then a result.
    card = "#jobs li.job"
    until(page, lambda d: text(d, f"{card} .job-state").startswith("Upscaling…"),
          what="the upscale running")
    assert text(page, f"{card} .job-prompt") == "Upscaled 2×: 1 image"
    upscaled = "#gallery li.result:nth-child(1)"
    until(page, lambda d: d.execute_script(
        "const img = document.querySelector(arguments[0] + ' img');"
        "return img && img.complete && img.naturalWidth === 512", upscaled),
        what="the upscaled image in the gallery")
    assert text(page, f"{upscaled} .result-prompt") == "Upscaled 2×: 1 image"
    settings = dict(zip([e.text for e in css_all(page, f"{upscaled} dt")],
                        [e.text for e in css_all(page, f"{upscaled} dd")]))
    assert settings | {"Made": ""} == {"Upscaled": "2× with Arting (image-enhance v1.4)",
                                       "Size": "512 × 512", "Made": ""}
    assert not css(page, f"{upscaled} .reuse").is_displayed()
    assert not css(page, f"{upscaled} .as-code").is_displayed()
    assert css(page, f"{upscaled} img").get_attribute("alt") == \
        "Image 1 of 1, upscaled 2×: Upscaled 2×: 1 image"
    job = httpx.get(daemon.url + "/arting/v1/jobs?limit=1").json()["data"][0]
    assert (job["kind"], job["source"]) == ("upscale", "web")
    assert job["request"]["images"][0]["hash"] == made["images"][0]["hash"]
    until(page, lambda d: chip(d, "tokens") == "guest identity: 1 ok, balance 98",
          what="the balance after the upscale")
    screenshot(page, "desktop-upscaled.png")


def test_no_upscale_buttons_when_the_daemon_does_not_upscale(page, make_daemon):
    daemon = make_daemon(upscale=False)
    made = daemon.run_job(width=256, height=256)
    open_page(page, daemon)
    result = f"#gallery li.result[data-job-id='{made['id']}']"
    until(page, lambda d: d.find_elements("css selector", f"{result} .reuse"),
          what="the result")
    assert not any(b.is_displayed() for b in css_all(page, f"{result} .upscale"))


def test_a_balance_at_zero_is_a_warning_on_the_tokens_chip(page, make_daemon):
    daemon = make_daemon(sandbox_options={"balance_start": 1})
    daemon.run_job()
    open_page(page, daemon)
    until(page, lambda d: chip(d, "tokens") == "guest identity: 1 ok, balance 0",
          what="the balance")
    assert css(page, "#st-tokens").get_attribute("data-level") == "warn"
    assert "anonymous: ok, balance 0" in css(page, "#st-tokens").get_attribute("title")


def test_page_files_are_served_same_origin_only(daemon):
    index = httpx.get(daemon.url + "/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    csp = index.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert index.headers["x-content-type-options"] == "nosniff"
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
             ".html": "text/html", ".json": "application/json"}
    for path in STATIC.iterdir():
        if path.is_dir():       # swagger-ui/: Swagger UI's files, under /docs (test_openapi)
            continue
        resp = httpx.get(f"{daemon.url}/static/{path.name}")
        assert resp.status_code == 200, path.name
        assert resp.headers["content-type"].startswith(types[path.suffix])
        assert resp.headers["cache-control"] == "no-cache"
        # Nothing on the page is fetched from another origin (an SVG namespace is no fetch).
        body = resp.text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", body), path.name
    for bad in ("/static/..%2fapp.py", "/static/nope.js", "/static/app.py"):
        assert httpx.get(daemon.url + bad).status_code == 404, bad


def test_package_data_ships_every_page_file():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["arting_daemon"]
    for path in (p for p in STATIC.rglob("*") if p.is_file()):
        rel = path.relative_to(ROOT / "arting_daemon").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_catalog_defaults_are_what_a_job_gets(daemon):
    defaults = httpx.get(daemon.url + "/arting/v1/catalog").json()["defaults"]
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    assert {k: job["request"][k] for k in defaults} == defaults


def test_status_tells_when_jobs_last_succeeded_and_failed(daemon):
    def outcomes():
        return httpx.get(daemon.url + "/arting/v1/status").json()["last_outcomes"]

    assert outcomes() == {"succeeded_at": None, "failed_at": None, "failure": None}
    daemon.do(daemon.sandbox.add_fault, "fail", route="create", count=1)
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    _wait(daemon, job["id"])
    failed = outcomes()
    assert failed["succeeded_at"] is None and failed["failed_at"] > job["created_at"]
    assert failed["failure"]["code"] == "generation_failed"
    job = httpx.post(daemon.url + "/arting/v1/jobs", json={"prompt": "p"}).json()
    _wait(daemon, job["id"])
    both = outcomes()
    assert both["succeeded_at"] > both["failed_at"] == failed["failed_at"]


def _wait(daemon, job_id: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = httpx.get(f"{daemon.url}/arting/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")
