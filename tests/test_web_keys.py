"""The web page's usage view and keys panel, driven in the headless Chromium of
``test_web_page.py`` against a daemon with an operator key: an admin makes a key, sees its
secret once and copies it, the key works, the list shows its usage, its limits change,
revoking it refuses it; a user key sees its own usage and quota, and no keys panel.
Screenshots at desktop and phone width go to ``artifacts/web-page/``.
"""

from __future__ import annotations

import time

import httpx

# ``browser`` is the module's one Chromium, which ``page`` uses.
from test_web_page import (browser, choose, css, css_all, fill, no_sideways_scroll,  # noqa: F401
                           open_page, page, save_key, screenshot, text, until,
                           until_running)

ADMIN = "admin-key-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_api(daemon, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{daemon.url}/arting/v1/{path}", headers=bearer(ADMIN),
                         timeout=10, **kw)


def pairs(driver, selector: str) -> dict[str, str]:
    """A definition list's terms and descriptions."""
    return driver.execute_script("""
        const out = {};
        for (const dt of document.querySelectorAll(arguments[0] + ' dt'))
          out[dt.textContent] = dt.nextElementSibling.textContent;
        return out;""", selector)


def active(driver):
    return driver.execute_script("return document.activeElement")


def requested(driver, part: str) -> list[str]:
    """The page's requests (since the last ``clearResourceTimings``) whose URL has ``part``."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(u => u.includes(arguments[0]))", part)


def unlabelled(driver) -> list[str]:
    return driver.execute_script("""
        return [...document.querySelectorAll('input, select, textarea, button')]
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.textContent.trim())
          .map(el => el.id || el.outerHTML);""")


def tick(driver, form: str, model: str) -> None:
    css(driver, f'{form} .model-checks input[value="{model}"]').click()


def test_an_admin_makes_a_key_sees_it_once_and_revokes_it(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(api_keys=[ADMIN])
    open_page(page, daemon)
    save_key(page, ADMIN)
    until(page, lambda d: css(d, "#keys").is_displayed(), what="the keys panel")
    until(page, lambda d: text(d, "#keys-state") == "No user keys yet: make the first one above.",
          what="the empty list")
    until(page, lambda d: css(d, "#usage").is_displayed(), what="the usage view")
    assert text(page, "#usage-who") == "The operator's key: no limits apply."

    # Make a key: name, limits, two models, an expiry. Enter in a field makes it.
    fill(page, "#new-key-name", "alice")
    fill(page, "#new-key-images_per_day", 3)
    fill(page, "#new-key-requests_per_minute", 10)
    fill(page, "#new-key-max_concurrent", 1)
    tick(page, "#key-create", "asyncsMIX_v7")
    tick(page, "#key-create", "oneFORALLAnime")
    choose(page, "#new-key-expires", "30")
    css(page, "#new-key-name").send_keys(Keys.ENTER)

    # The secret, this once, with the warning, and the focus on Copy.
    until(page, lambda d: css(d, "#key-secret").is_displayed(), what="the new key")
    secret = css(page, "#key-secret-value").get_attribute("value")
    assert secret.startswith("sk-arting-") and len(secret) >= 42
    assert text(page, "#key-secret-title") == "The key for “alice”"
    assert "Copy it now: you will not see it again." in text(page, "#key-secret")
    assert active(page) == css(page, "#key-secret-copy")
    assert css(page, "#new-key-name").get_attribute("value") == ""  # ready for the next one

    # The daemon has it as asked (and lists no secret); the page lists it too.
    [key] = admin_api(daemon, "GET", "admin/keys").json()["data"]
    assert "key" not in key and key["key_prefix"] == secret[:14]
    assert (key["name"], key["images_per_day"], key["requests_per_minute"],
            key["max_concurrent"], key["models"]) == ("alice", 3, 10, 1,
                                                      ["oneFORALLAnime", "asyncsMIX_v7"])
    assert abs(key["expires_at"] - (time.time() + 30 * 86400)) < 600
    card = f'#key-list li[data-key-id="{key["id"]}"]'
    until(page, lambda d: text(d, f"{card} .key-name") == "alice", what="the key's card")
    assert text(page, f"{card} .key-meta").startswith(f"{secret[:14]}… · made ")
    assert text(page, f"{card} .key-badge") == "active"
    assert pairs(page, card) == {
        "Images today": "0 of 3 · 3 left", "Requests today": "0", "Jobs today": "0 done",
        "Requests a minute": "10", "Jobs at once": "1", "Models": "oneFORALLAnime, asyncsMIX_v7"}
    assert text(page, "#keys-state") == "1 key, newest first."

    # Copy puts exactly the secret on the clipboard.
    page.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": daemon.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    css(page, "#key-secret-copy").click()
    until(page, lambda d: text(d, "#key-secret-copied") == "Copied.", what="the copy")
    assert page.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('! ' + e))") == secret
    assert no_sideways_scroll(page)
    screenshot(page, "desktop-keys-new.png")
    screenshot(page, "phone-keys-new.png", phone=True)
    assert no_sideways_scroll(page)
    page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert unlabelled(page) == []

    # Done: the secret is gone from the page, and was never stored or put in a URL.
    css(page, "#key-secret-done").click()
    assert not css(page, "#key-secret").is_displayed()
    assert active(page) == css(page, "#new-key-name")
    assert page.execute_script("""
        const values = [...document.querySelectorAll('input')].map(i => i.value);
        return values.concat([document.documentElement.outerHTML, document.body.innerText,
                              JSON.stringify(localStorage), JSON.stringify(sessionStorage),
                              location.href],
                             performance.getEntriesByType('resource').map(e => e.name))
          .filter(v => v.includes(arguments[0]))""", secret) == []
    assert page.execute_script("return localStorage.getItem('arting-2api.api-key')") == ADMIN

    # The key works (the job API), and after its job the list shows what it used.
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(secret),
                     json={"prompt": "a lighthouse", "n": 2, "model": "asyncsMIX_v7"})
    assert job.status_code == 202, job.text
    assert daemon.wait_job(job.json()["id"], headers=bearer(secret))["state"] == "succeeded"
    css(page, "#keys-refresh").click()
    until(page, lambda d: pairs(d, card)["Images today"] == "2 of 3 · 1 left",
          what="the key's usage")
    assert pairs(page, card) | {"Images today": ""} == {
        "Images today": "", "Requests today": "1", "Jobs today": "1 done",
        "Requests a minute": "10", "Jobs at once": "1", "Models": "oneFORALLAnime, asyncsMIX_v7"}

    # Change its limits in a dialog that holds them as they are; focus returns after.
    opener = css(page, f"{card} .key-change")
    assert opener.get_attribute("aria-label") == "Change the limits of “alice”"
    opener.click()
    until(page, lambda d: css(d, "#key-edit").is_displayed(), what="the dialog")
    assert active(page) == css(page, "#edit-key-name")
    assert text(page, "#key-edit-title") == "Change “alice”"
    assert [css(page, f"#edit-key-{f}").get_attribute("value") for f in (
        "name", "images_per_day", "requests_per_minute", "max_concurrent", "expires")] \
        == ["alice", "3", "10", "1", "keep"]
    assert [b.get_attribute("value") for b in css_all(page, "#key-edit .model-checks input:checked")] \
        == ["oneFORALLAnime", "asyncsMIX_v7"]
    fill(page, "#edit-key-images_per_day", -1)
    css(page, "#edit-key-name").send_keys(Keys.ENTER)
    assert text(page, "#edit-key-images_per_day-error") == \
        "Images per day: a whole number from 0 on, or empty for no limit."
    assert active(page) == css(page, "#edit-key-images_per_day")
    fill(page, "#edit-key-images_per_day", 10)
    fill(page, "#edit-key-requests_per_minute", "")
    tick(page, "#key-edit", "asyncsMIX_v7")
    tick(page, "#key-edit", "oneFORALLAnime")
    screenshot(page, "desktop-keys-change.png", full=False)
    css(page, "#key-edit button[type=submit]").click()
    until(page, lambda d: not css(d, "#key-edit").is_displayed(), what="the dialog to close")
    assert active(page) == opener
    until(page, lambda d: pairs(d, card)["Images today"] == "2 of 10 · 8 left",
          what="the new limits")
    assert (pairs(page, card)["Models"], pairs(page, card)["Requests a minute"]) == ("all", "no limit")
    assert text(page, "#keys-done") == "Saved the changes to “alice”."
    changed = admin_api(daemon, "GET", f"admin/keys/{key['id']}").json()
    assert (changed["images_per_day"], changed["requests_per_minute"], changed["max_concurrent"],
            changed["models"], changed["expires_at"]) == (10, None, 1, None, key["expires_at"])

    # Revoke asks first; "Keep it" (or Escape) keeps it, with the focus back on Revoke.
    css(page, f"{card} .key-revoke").click()
    assert css(page, f"{card} .key-confirm").is_displayed()
    assert "This cannot be undone." in text(page, f"{card} .key-confirm-text")
    assert active(page) == css(page, f"{card} .key-keep")
    active(page).send_keys(Keys.ESCAPE)
    assert not css(page, f"{card} .key-confirm").is_displayed()
    assert active(page) == css(page, f"{card} .key-revoke")
    outline = page.execute_script(
        "const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]")
    assert outline[0] != "none" and float(outline[1][:-2]) >= 2
    assert httpx.get(f"{daemon.url}/arting/v1/usage", headers=bearer(secret)).status_code == 200

    active(page).send_keys(Keys.ENTER)
    css(page, f"{card} .key-revoke-now").click()
    until(page, lambda d: css(d, card).get_attribute("data-state") == "revoked", what="the revoke")
    assert text(page, f"{card} .key-badge") == "revoked"
    assert not css(page, f"{card} .key-actions").is_displayed()
    assert text(page, "#keys-done") == "“alice” is revoked: the daemon refuses it from now on."
    refused = httpx.post(f"{daemon.url}/arting/v1/jobs", headers=bearer(secret), json={"prompt": "p"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]

    css(page, "#keys-refresh").click()
    until(page, lambda d: text(d, "#keys-state") == "1 key, 1 revoked, newest first.",
          what="the list again")
    assert no_sideways_scroll(page)
    screenshot(page, "desktop-keys.png")
    screenshot(page, "phone-keys.png", phone=True)
    assert no_sideways_scroll(page)


def test_a_user_key_sees_its_own_usage_and_quota_and_no_keys_panel(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(api_keys=[ADMIN])
    made = admin_api(daemon, "POST", "admin/keys", json={
        "name": "bob", "images_per_day": 3, "requests_per_minute": 5, "max_concurrent": 1,
        "models": ["asyncsMIX_v7"]}).json()
    admin_job = admin_api(daemon, "POST", "jobs", json={"prompt": "the admin's"}).json()
    daemon.wait_job(admin_job["id"], headers=bearer(ADMIN))

    # With the admin key the panel shows; with bob's key it goes, and the usage is bob's.
    open_page(page, daemon)
    save_key(page, ADMIN)
    until(page, lambda d: css(d, "#keys").is_displayed(), what="the keys panel")
    until(page, lambda d: text(d, "#keys-state") == "1 key, newest first.", what="the list")
    save_key(page, made["key"])
    until(page, lambda d: text(d, "#usage-who") ==
          f"Key “bob” ({made['key_prefix']}…), does not expire.", what="bob's usage")
    assert not css(page, "#keys").is_displayed()
    assert css_all(page, "#key-list li") == []
    # The status bar shows bob's own queue, and nothing of the tokens (least knowledge).
    until(page, lambda d: text(d, "#st-queue .chip-value") == "yours: 0 running, 0 waiting",
          what="bob's own queue")
    assert not css(page, "#st-tokens").is_displayed()
    assert pairs(page, "#usage") == {"Images today": "0 of 3 · 3 left",
                                     "Requests this minute": "0 of 5", "Jobs in flight": "0 of 1",
                                     "Models": "asyncsMIX_v7"}
    until(page, lambda d: text(d, "#gallery-state").startswith("No images yet"),
          what="bob's (empty) gallery")
    page.execute_script("performance.clearResourceTimings()")

    # Bob generates on the page: the view counts the images, the request, by model.
    choose(page, "#model", "asyncsMIX_v7")
    fill(page, "#n", 2)
    css(page, "#prompt").send_keys("a lighthouse", Keys.ENTER)
    until(page, lambda d: len(css_all(d, "#gallery li.result")) == 1, what="bob's result")
    until(page, lambda d: pairs(d, "#usage")["Images today"] == "2 of 3 · 1 left",
          what="the usage after the job")
    assert pairs(page, "#usage")["Requests this minute"] == "1 of 5"
    assert page.execute_script(
        "return [...document.querySelectorAll('#usage meter')].map(m => [m.value, m.max])") \
        == [[2, 3], [1, 5], [0, 1]]
    assert text(page, "#usage-summary") == "Last 7 days: 2 images from 1 job"
    css(page, "#usage-summary").click()
    rows = page.execute_script("""
        return [...document.querySelectorAll('#usage-history tr')].map(
          tr => [...tr.children].map(c => c.textContent));""")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert rows == [["Day (UTC)", "Images", "Jobs", "Requests"], [today, "2", "1 done", "1"],
                    ["asyncsMIX_v7", "2", "1 job", ""]]

    # Past the quota: refused in the daemon's words, at once, and nothing more is counted.
    css(page, "#prompt").send_keys(Keys.ENTER)
    until(page, lambda d: "images_per_day" in text(d, "#form-error"), what="the quota refusal")
    assert "so 1 more fit, and this asks for 2" in text(page, "#form-error")
    assert "Try again in " in text(page, "#form-error")
    until(page, lambda d: pairs(d, "#usage")["Requests this minute"] == "2 of 5",
          what="the refused request counted as a request")
    assert pairs(page, "#usage")["Images today"] == "2 of 3 · 1 left"
    # A model the key may not use: the daemon's refusal lands at the model field.
    choose(page, "#model", "oneFORALLAnime")
    fill(page, "#n", 1)
    css(page, "#prompt").send_keys(Keys.ENTER)
    until(page, lambda d: "may not use the model" in text(d, "#model-error"), what="the refusal")
    fill(page, "#n", 1)
    choose(page, "#model", "asyncsMIX_v7")
    css(page, "#prompt").send_keys(Keys.ENTER)
    until(page, lambda d: pairs(d, "#usage")["Images today"] == "3 of 3 · 0 left",
          what="the last image of the day")
    until(page, lambda d: text(d, "#usage-note").startswith(
        "No images left for today: the quota comes back at 00:00 UTC, in "), what="the warning")
    assert len(css_all(page, "#gallery li.result")) == 2  # bob's own; not the admin's job
    assert requested(page, "/admin/") == []
    assert no_sideways_scroll(page)
    screenshot(page, "desktop-usage.png")
    screenshot(page, "phone-usage.png", phone=True)
    assert no_sideways_scroll(page)
    page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Revoked: the page says so in the daemon's own words, and shows no usage.
    admin_api(daemon, "DELETE", f"admin/keys/{made['id']}")
    words = httpx.get(f"{daemon.url}/arting/v1/status", headers=bearer(made["key"])).json()
    open_page(page, daemon)
    until(page, lambda d: text(d, "#status-detail") == words["error"]["message"],
          what="the revocation")
    assert "was revoked on" in text(page, "#status-detail")
    assert css(page, "#key-panel").is_displayed()
    assert not css(page, "#usage").is_displayed()
    css(page, "#prompt").send_keys("a cat", Keys.ENTER)
    until(page, lambda d: text(d, "#form-error") == words["error"]["message"], what="the form")


def test_a_key_revoked_while_the_page_follows_its_job_says_so_on_the_card(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(api_keys=[ADMIN], sandbox_options={"generation_time": 60})
    made = admin_api(daemon, "POST", "admin/keys", json={"name": "carol"}).json()
    open_page(page, daemon)
    save_key(page, made["key"])
    until(page, lambda d: text(d, "#st-queue .chip-value").startswith("yours:"),
          what="carol's own status")
    css(page, "#prompt").send_keys("a slow one", Keys.ENTER)
    card = "#jobs li.job"
    until_running(page, card)             # followed over the page's WebSocket
    admin_api(daemon, "DELETE", f"admin/keys/{made['id']}")
    until(page, lambda d: "revoked" in text(d, f"{card} .job-state"),
          what="the revocation, in the daemon's words, on the card")
    [job] = admin_api(daemon, "GET", "jobs").json()["data"]
    job = daemon.wait_job(job["id"], ("cancelled",), headers=bearer(ADMIN))
    assert "revoked" in job["error"]["message"]


def test_without_keys_the_local_user_sees_usage_without_limits_and_no_keys_panel(page,
                                                                                make_daemon):
    daemon = make_daemon()
    open_page(page, daemon)
    until(page, lambda d: css(d, "#usage").is_displayed(), what="the usage view")
    assert text(page, "#usage-who").startswith("No API keys are set")
    assert pairs(page, "#usage") == {"Images today": "0 · no limit",
                                     "Jobs in flight": "0 · no limit", "Models": "all"}
    assert text(page, "#usage-history") == "Nothing in the last 7 days."
    assert not css(page, "#keys").is_displayed()
    assert requested(page, "/admin/") == []


def test_the_new_key_form_says_what_to_fix_and_a_picked_day_is_the_last_one(page, make_daemon):
    from selenium.webdriver.common.keys import Keys

    daemon = make_daemon(api_keys=[ADMIN])
    old = admin_api(daemon, "POST", "admin/keys",
                    json={"name": "last year", "expires_at": time.time() - 86400 * 365}).json()
    open_page(page, daemon)
    save_key(page, ADMIN)
    card = f'#key-list li[data-key-id="{old["id"]}"]'
    until(page, lambda d: text(d, f"{card} .key-badge") == "expired", what="the expired key")
    assert " · expired " in text(page, f"{card} .key-meta")
    assert css(page, f"{card} .key-revoke").is_displayed()  # an expired key can still be revoked

    # No name: said at the field, which gets the focus; nothing is made.
    css(page, "#key-create-submit").click()
    assert text(page, "#new-key-name-error") == "Give the key a name: who or what it is for."
    assert active(page) == css(page, "#new-key-name")
    assert css(page, "#new-key-name").get_attribute("aria-invalid") == "true"
    css(page, "#new-key-name").send_keys("brief")
    assert css(page, "#new-key-name").get_attribute("aria-invalid") is None

    # A day that is over is refused; a later one is the key's last day (this browser's time).
    assert not css(page, "#new-key-expires_on").is_displayed()
    choose(page, "#new-key-expires", "date")
    assert css(page, "#new-key-expires_on").is_displayed()
    set_date = ("const el = document.getElementById('new-key-expires_on'); el.value = arguments[0];"
                "el.dispatchEvent(new Event('input', {bubbles: true}))")
    page.execute_script(set_date, "2020-01-31")
    css(page, "#new-key-name").send_keys(Keys.ENTER)
    assert text(page, "#new-key-expires-error") == "That day is over: pick today or a later day."
    assert active(page) == css(page, "#new-key-expires_on")
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() + 3 * 86400))
    page.execute_script(set_date, day)
    assert not css(page, "#new-key-expires-error").is_displayed()
    css(page, "#new-key-name").send_keys(Keys.ENTER)
    until(page, lambda d: css(d, "#key-secret").is_displayed(), what="the new key")
    made = [k for k in admin_api(daemon, "GET", "admin/keys").json()["data"] if k["name"] == "brief"]
    last_second = page.execute_script(
        "return new Date(arguments[0] + 'T23:59:59').getTime() / 1000", day)
    assert made and made[0]["expires_at"] == last_second
    assert css(page, "#new-key-expires").get_attribute("value") == "never"  # the form is reset
    assert not css(page, "#new-key-expires_on").is_displayed()
