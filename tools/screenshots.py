"""The documentation's screenshots, taken from the real page in headless Chromium.

    .venv/bin/python tools/screenshots.py

Starts ``arting-daemon --sandbox`` (the real command, on a free port, with an admin key
and a data directory of its own), makes a result, a user key and a running job, runs the
check, and photographs the page in English and in Simplified Chinese into
``docs/assets/screenshots/`` (``name.png`` and ``name.zh-CN.png``: the docs' i18n plugin
shows each language its own). Needs Debian's chromium and chromium-driver, as the page's
tests do, and a Chinese font (fonts-wqy-microhei). Run it again when the page changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "assets" / "screenshots"
KEY = "docs-admin-key-0123456789"
sys.path.insert(0, str(ROOT / "tests"))

from test_web_page import css, save_key, start_chromium, until  # noqa: E402


def start_daemon(data: Path) -> tuple[subprocess.Popen, str]:
    """The daemon as a user starts it; its address from the line it prints."""
    env = {**os.environ, "API_MASTER_KEY": KEY, "ARTING_DATA_DIR": str(data),
           "ARTING_SANDBOX_GENERATION_TIME": "4"}
    log = data.parent / "daemon.log"
    proc = subprocess.Popen([sys.executable, "-m", "arting_daemon", "--sandbox", "--port", "0"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"listening on (http://\S+)", log.read_text())
        if found:
            return proc, found[1]
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the daemon did not start:\n{log.read_text()}")


def prepare(url: str) -> None:
    """A finished result and a user key, made through the API."""
    headers = {"Authorization": f"Bearer {KEY}"}
    job = httpx.post(f"{url}/arting/v1/jobs", headers=headers, timeout=10,
                     json={"prompt": "a lighthouse at dawn, watercolour", "seed": 7,
                           "size": "512x768", "loras": [{"id": "add_detail", "weight": 0.6}]}).json()
    while httpx.get(f"{url}/arting/v1/jobs/{job['id']}", headers=headers).json()["state"] \
            != "succeeded":
        time.sleep(0.2)
    httpx.post(f"{url}/arting/v1/admin/keys", headers=headers, timeout=10,
               json={"name": "alice", "images_per_day": 50, "requests_per_minute": 10,
                     "models": ["asyncsMIX_v7"]})


def shoot(driver, url: str, suffix: str) -> None:
    driver.get(url + "/")
    until(driver, lambda d: d.execute_script(
        "return document.querySelectorAll('#model option').length") > 0, what="the catalog")
    save_key(driver, KEY)
    until(driver, lambda d: d.find_elements("css selector", "#gallery li.result img"),
          what="the result")
    css(driver, "#check-run").click()
    until(driver, lambda d: d.find_elements("css selector", "#check-findings li"),
          what="the check")
    css(driver, "header.top").screenshot(str(OUT / f"check{suffix}.png"))
    css(driver, "#prompt").send_keys("a harbour at night, oil painting")
    css(driver, "#generate").click()
    until(driver, lambda d: d.execute_script(
        "const c = document.querySelector('#jobs li.job');"
        "return c && c.dataset.state === 'running'"), what="a running job")
    driver.execute_script("document.querySelector('#check-result').hidden = true; scrollTo(0, 0)")
    time.sleep(1.0)
    driver.save_screenshot(str(OUT / f"web-page{suffix}.png"))
    driver.execute_script("document.querySelector('#gallery li.result .as-code').click()")
    until(driver, lambda d: css(d, "#code-dialog").is_displayed(), what="the code dialog")
    css(driver, "#code-dialog").screenshot(str(OUT / f"code{suffix}.png"))
    driver.execute_script("document.getElementById('code-dialog').close()")
    driver.execute_script("document.getElementById('keys').scrollIntoView()")
    until(driver, lambda d: d.find_elements("css selector", "#key-list li"), what="the keys")
    css(driver, "#keys").screenshot(str(OUT / f"keys{suffix}.png"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_daemon(Path(tmp) / "data")
        try:
            prepare(url)
            for lang, suffix in (("en-US", ""), ("zh-CN", ".zh-CN")):
                driver = start_chromium(Path(tmp) / f"chromium-{lang}", lang=lang)
                try:
                    shoot(driver, url, suffix)
                finally:
                    driver.quit()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"screenshots in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
