"""The web page's Arting tokens panel, in the headless Chromium of ``test_web_page.py``: an
admin pastes a "Copy as cURL" command, the token joins (its cookies named, never shown),
the operator events are listed, a refused token is probed, and a runtime token removed
after a confirmation."""

from __future__ import annotations

import httpx

# ``browser`` is the module's one Chromium, which ``page`` uses.
from test_web_page import (browser, css, fill, open_page, page, save_key, screenshot,  # noqa: F401
                           text, until)
from test_token_vault import BASH_CURL, GOOD

ADMIN = "admin-key-0123456789"


def cards(driver) -> dict[str, str]:
    """Each card's label → its state."""
    return driver.execute_script("""
        const out = {};
        for (const li of document.querySelectorAll('#token-list li'))
          out[li.dataset.label] = li.dataset.state;
        return out;""")


def test_an_admin_adds_a_token_by_paste_probes_and_removes_it(page, make_daemon):
    daemon = make_daemon(api_keys=[ADMIN], auth_tokens=["not-a-uuid-token"],
                         sandbox_options={"auth_mode": "uuid"}, token_probe_backoff=1800)
    job = httpx.post(f"{daemon.url}/arting/v1/jobs", json={"prompt": "p"},
                     headers={"Authorization": f"Bearer {ADMIN}"}).json()
    daemon.wait_job(job["id"], headers={"Authorization": f"Bearer {ADMIN}"})
    open_page(page, daemon)
    save_key(page, ADMIN)
    until(page, lambda d: css(d, "#tokens").is_displayed(), what="the tokens panel")
    until(page, lambda d: cards(d) == {"token-1": "invalid"}, what="the refused token")
    until(page, lambda d: "token refused" in text(d, "#tokens-events"), what="the event")
    assert "no usable token" in text(page, "#tokens-events")
    assert css(page, '#token-list li[data-label="token-1"] .token-actions').is_displayed() \
        is False                                      # a configuration token stays

    # Paste a whole cURL command: the token joins, its cookies are named, never shown.
    page.execute_script("document.getElementById('token-paste').value = arguments[0]", BASH_CURL)
    fill(page, "#token-label", "alice")
    css(page, "#token-add-submit").click()
    until(page, lambda d: cards(d).get("alice") == "ok", what="the added token")
    assert text(page, "#tokens-done") == "Added alice."
    assert css(page, "#token-paste").get_attribute("value") == ""
    facts = text(page, '#token-list li[data-label="alice"] .token-facts')
    assert "added at runtime" in facts and "__cf_bm, cf_clearance" in facts
    assert GOOD not in page.page_source and "clear-abc" not in page.page_source
    screenshot(page, "tokens-panel.png")

    # Probe the refused one: still refused.
    css(page, "#tokens-probe").click()
    until(page, lambda d: text(d, "#tokens-done") == "Probed: token-1: failed.",
          what="the probe's result")

    # Remove alice, after saying yes.
    css(page, '#token-list li[data-label="alice"] .token-remove').click()
    assert "New jobs stop using it at once" in text(
        page, '#token-list li[data-label="alice"] .token-confirm-text')
    css(page, '#token-list li[data-label="alice"] .token-remove-now').click()
    until(page, lambda d: "alice" not in cards(d), what="alice gone")
    assert text(page, "#tokens-done") == "Removed alice."
    view = httpx.get(f"{daemon.url}/arting/v1/admin/tokens",
                     headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [t["label"] for t in view["tokens"]] == ["token-1"]
