"""The interactive docs (``/docs``) in a real headless Chromium, with the network closed.

The browser is set up as in ``test_web_page.py`` and, besides, can reach nothing but
this machine: every host name resolves to nothing (except 127.0.0.1) and any other
address goes to a proxy that is not there. The page must render every operation of the
document from the daemon's own files, *Authorize* must take the API key, and *Try it out*
must call the daemon with it. Every request the page made is read from the browser's
log and must have gone to the daemon. Screenshots go to ``artifacts/web-page/``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from test_web_page import css, css_all, screenshot, start_chromium, until

KEY = "docs-sesame-0123456789"
#: No network: names do not resolve, addresses go to a closed port (loopback is direct).
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
           "--proxy-server=http://127.0.0.1:9")


@pytest.fixture(scope="module")
def offline_browser(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("chromium-docs"), OFFLINE,
                            logs=("performance",))
    try:
        yield driver
    finally:
        driver.quit()


def requested(driver) -> list[str]:
    """Every URL the page asked for since the last call (from the DevTools log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def operations_shown(driver) -> int:
    return driver.execute_script("return document.querySelectorAll('.opblock').length")


def test_the_docs_render_offline_and_try_it_out_calls_the_daemon(offline_browser, make_daemon):
    driver = offline_browser
    daemon = make_daemon(api_keys=[KEY])
    doc = httpx.get(f"{daemon.url}/openapi.json").json()
    count = sum(len(item) for item in doc["paths"].values())
    driver.get_log("browser"), requested(driver)

    # The web page links to the docs.
    driver.get(daemon.url + "/")
    until(driver, lambda d: css_all(d, '#docs-link'), what="the link to the docs")
    css(driver, '#docs-link').click()
    until(driver, lambda d: operations_shown(d) == count, timeout=20,
          what=f"all {count} operations")
    assert driver.current_url == f"{daemon.url}/docs"
    shown = driver.execute_script(
        "return [...document.querySelectorAll('.opblock-summary-path')]"
        ".map(e => e.getAttribute('data-path'))")
    assert {"/v1/images/generations", "/sdapi/v1/txt2img", "/arting/v1/jobs/{id}/events",
            "/arting/v1/admin/keys", "/metrics"} <= set(shown)
    tags = driver.execute_script(
        "return [...document.querySelectorAll('.opblock-tag')].map(e => e.dataset.tag)")
    assert tags == [t["name"] for t in doc["tags"]]
    screenshot(driver, "docs-desktop.png")
    screenshot(driver, "docs-phone.png", phone=True, full=False)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Authorize with the key (the bearer scheme), then try GET /arting/v1/status.
    css(driver, ".btn.authorize").click()
    until(driver, lambda d: css_all(d, ".auth-container input"), what="the Authorize dialog")
    bearer = next(c for c in css_all(driver, ".auth-container")
                  if "bearer" in c.find_element("css selector", "h4").text)
    bearer.find_element("css selector", "input").send_keys(KEY)
    bearer.find_element("css selector", "button.authorize").click()
    until(driver, lambda d: "Logout" in bearer.text, what="the key taken")
    css(driver, ".btn-done").click()

    op = "#operations-Job_API-get_arting_v1_status"
    css(driver, f"{op} .opblock-summary-control").click()
    until(driver, lambda d: css_all(d, f"{op} .try-out__btn"), what="Try it out")
    css(driver, f"{op} .try-out__btn").click()
    until(driver, lambda d: css_all(d, f"{op} .execute"), what="Execute")
    css(driver, f"{op} .execute").click()
    status = until(driver, lambda d: d.execute_script(
        "const c = document.querySelector(arguments[0] + ' .live-responses-table "
        "tbody .response-col_status'); return c && c.textContent.trim()", op),
        what="the live answer")
    assert status.startswith("200")
    body = driver.execute_script(
        "return document.querySelector(arguments[0] + ' .live-responses-table "
        "tbody .response-col_description pre').textContent", op)
    assert json.loads(body)["caller"] == {"id": "admin", "name": "admin", "admin": True}
    driver.execute_script("document.querySelector(arguments[0] + ' .live-responses-table')"
                          ".scrollIntoView({block: 'center'})", op)
    screenshot(driver, "docs-try-it-out.png", full=False)

    # Nothing was loaded from, or sent to, anywhere but the daemon; no script error and
    # no CSP report in the console.
    urls = requested(driver)
    assert f"{daemon.url}/docs/swagger-ui-bundle.js" in urls
    assert f"{daemon.url}/arting/v1/status" in urls
    # (chrome:// is the browser's own start page loading its resources from itself, at
    # its own pace on a busy machine: nothing the docs asked for)
    assert [u for u in urls
            if not u.startswith((daemon.url + "/", "data:", "chrome://"))] == []
    problems = [e["message"] for e in driver.get_log("browser")
                if e["level"] in ("SEVERE", "WARNING") and e["source"] != "network"]
    assert problems == []
