"""In headless Chromium: a read token's page shows everything and offers no change; a write
token's page offers them all; the Activity tab says who did what.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from ollama_deck.testing import PullScript

from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import row
from .test_browser import wait
from .test_browser_page import axe  # noqa: F401 - skips without axe-core
from .test_browser_page import axe_problems
from .test_tokens import AS_WRITER
from .test_tokens import READ
from .test_tokens import TOKENS
from .test_tokens import WRITE

pytestmark = pytest.mark.browser
# What changes something, as the page shows it: none of these for a read token.
CHANGES = [
    "#pull-form",
    "#update-all",
    "#tab-prompt",
    '[data-model="llama3.2:1b"] [data-action="update"]',
    '[data-model="llama3.2:1b"] .more',
]


@pytest.fixture
def locked(fake_ollama, make_app, serve, driver):  # noqa: F811
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("qwen3:8b", PullScript(layers=[2_000], step=1_000))
    live = serve(make_app(OLLAMA_DECK_TOKENS=TOKENS))
    yield live
    driver.get("about:blank")  # closes the page's event stream before the server stops


def unlock(driver, live, token: str, path: str = "/") -> None:  # noqa: F811
    driver.delete_all_cookies()
    driver.get(live.url + path)
    dialog = wait(driver, lambda d: css(d, "#token-dialog").get_attribute("open") is not None)
    assert dialog
    css(driver, "#token-input").send_keys(token)
    css(driver, "#token-submit").click()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    wait(driver, lambda d: row(d, "llama3.2:1b"))


def shown(driver, selector: str) -> bool:  # noqa: F811
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    assert found, f"nothing matches {selector}"
    return any(element.is_displayed() for element in found)


def test_a_read_token_page_hides_every_change(fake_ollama, locked, driver, axe):  # noqa: F811
    pulled = locked.post("/api/models/pull", json={"model": "qwen3:8b"}, headers=AS_WRITER)
    assert pulled.status_code == 202
    unlock(driver, locked, READ, "/#prompt")  # a change's tab asked for by the link
    assert driver.execute_script("return document.body.dataset.role") == "read"
    for selector in CHANGES:
        assert not shown(driver, selector), selector
    assert shown(driver, '[data-model="llama3.2:1b"] [data-action="details"]')
    assert css(driver, "#tab-installed").get_attribute("aria-selected") == "true"
    card = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-op-id]"))[0]
    assert not any(
        b.is_displayed() for b in card.find_elements(By.CSS_SELECTOR, "button[data-action]")
    )

    css(driver, "#tab-catalog").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".family"))
    pulls = driver.find_elements(By.CSS_SELECTOR, '#catalog-list [data-action="pull"]')
    assert pulls and not any(p.is_displayed() for p in pulls)

    css(driver, "#tab-activity").click()
    rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#activity-list tr"))
    actions = [(r.get_attribute("data-action"), r.text) for r in rows]
    assert actions[0][0] == "session.open" and "grafana" in actions[0][1]  # this login
    assert actions[1][0] == "pull" and "ops" in actions[1][1] and "qwen3:8b" in actions[1][1]
    assert axe_problems(driver) == [], "activity"


def test_a_write_token_page_offers_the_changes(locked, driver):  # noqa: F811
    unlock(driver, locked, WRITE)
    assert driver.execute_script("return document.body.dataset.role") == "write"
    for selector in CHANGES:
        assert shown(driver, selector), selector
