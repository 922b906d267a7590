"""Fleets on the page, in headless Chromium: "all hosts" on pull, update and delete, a
group's card with a line per host, and the Fleet tab's drift of a stored set with Apply.

Skipped, like test_browser.py, where Debian's chromium and chromium-driver are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .test_browser import card_of
from .test_browser import cards
from .test_browser import click_row_action
from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import page  # noqa: F401 - opens the page of a fresh app
from .test_browser import pull_through_box
from .test_browser import row
from .test_browser import status
from .test_browser import text_of
from .test_browser import wait

pytestmark = pytest.mark.browser
QUICK = PullScript(layers=[300_000, 1_429], step=30_000, interval=0.02)


@pytest.fixture
def second_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def chrome(driver):  # noqa: F811 - the imported fixture, by a name of this module's
    return driver


@pytest.fixture
def two_hosts(page, fake_ollama, second_ollama):  # noqa: F811 - the imported fixture
    def open_page(**config):
        hosts = {"gpu1": fake_ollama.url, "gpu2": second_ollama.url}
        return page(OLLAMA_DECK_OLLAMA_HOSTS=hosts, **config)

    return open_page


def children_of(card) -> dict[str, str]:
    """A group card's lines: host -> status."""
    lines = card.find_elements(By.CSS_SELECTOR, ".op-children .op-child")
    return {line.get_attribute("data-host"): line.get_attribute("data-status") for line in lines}


def test_pull_on_all_hosts_is_one_card_with_a_line_per_host(
    two_hosts, chrome, fake_ollama, second_ollama
):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("tiny:1b", QUICK)
    two_hosts()
    scope = css(chrome, "#pull-scope")
    assert scope.is_displayed()
    assert [o.text for o in scope.find_elements(By.TAG_NAME, "option")] == [
        "gpu1",
        "all hosts (2)",
    ]
    Select(scope).select_by_value("*")
    pull_through_box(chrome, "tiny:1b")
    card = card_of(chrome, "tiny:1b")
    assert card.get_attribute("data-kind") == "group"
    assert text_of(card.find_element(By.CSS_SELECTOR, ".op-host")) == "on gpu1, gpu2"
    wait(chrome, lambda d: status(card_of(d, "tiny:1b")) == "succeeded")
    card = card_of(chrome, "tiny:1b")
    assert children_of(card) == {"gpu1": "succeeded", "gpu2": "succeeded"}
    assert len(cards(chrome, "tiny:1b")) == 1  # the children show in it, not as cards
    assert fake_ollama.pull_count("tiny:1b") == second_ollama.pull_count("tiny:1b") == 1


def test_a_failed_child_says_why_on_its_line(two_hosts, chrome, fake_ollama, second_ollama):
    fake_ollama.allow_pull("tiny:1b", QUICK)
    second_ollama.allow_pull("tiny:1b", PullScript(layers=[300_000], step=30_000, error_after=2))
    two_hosts()
    Select(css(chrome, "#pull-scope")).select_by_value("*")
    pull_through_box(chrome, "tiny:1b")
    wait(chrome, lambda d: status(card_of(d, "tiny:1b")) == "failed")
    card = card_of(chrome, "tiny:1b")
    assert children_of(card) == {"gpu1": "succeeded", "gpu2": "failed"}
    failed = card.find_element(By.CSS_SELECTOR, '.op-child[data-host="gpu2"] .op-child-why')
    assert "max retries exceeded" in text_of(failed)
    assert not card.find_element(By.CSS_SELECTOR, '[data-action="retry"]').is_displayed()


def test_delete_from_all_hosts(two_hosts, chrome, fake_ollama, second_ollama):
    for fake in (fake_ollama, second_ollama):
        fake.add_model("old:1b")
    two_hosts()
    wait(chrome, lambda d: row(d, "old:1b") is not None)
    click_row_action(chrome, "old:1b", "delete")
    Select(css(chrome, "#delete-scope")).select_by_value("*")
    css(chrome, "#confirm-ok").click()
    wait(chrome, lambda d: status(card_of(d, "old:1b")) == "succeeded")
    assert children_of(card_of(chrome, "old:1b")) == {"gpu1": "succeeded", "gpu2": "succeeded"}
    assert fake_ollama.installed() == second_ollama.installed() == []
    wait(chrome, lambda d: row(d, "old:1b") is None)


def test_the_fleet_tab_shows_drift_and_applies_it(two_hosts, chrome, fake_ollama, second_ollama):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("embed:1", QUICK)
    fake_ollama.add_model("extra:1")
    live = two_hosts()
    css(chrome, "#tab-fleet").click()
    wait(chrome, lambda d: "No desired model set" in css(d, "#fleet-note").text)
    desired = {"all": {"models": ["embed:1"]}, "hosts": {"gpu1": {"prune": True}}}
    assert live.put("/api/desired-models", json=desired).ok
    css(chrome, "#fleet-refresh").click()
    gpu1 = wait(chrome, lambda d: css(d, '.fleet-host[data-host="gpu1"]'))
    marks = {
        li.get_attribute("data-model"): li.get_attribute("data-list")
        for li in gpu1.find_elements(By.CSS_SELECTOR, "li")
    }
    assert marks == {"embed:1": "missing", "extra:1": "delete"}
    assert gpu1.get_attribute("data-drift") == "true"
    css(chrome, "#fleet-apply").click()
    group = card_of(chrome, "apply: 2 to pull, 1 to delete")
    assert group.get_attribute("data-kind") == "group"
    wait(chrome, lambda d: "Every host matches" in css(d, "#fleet-note").text)
    assert css(chrome, "#fleet-apply").get_attribute("disabled") is not None
    # Read in one script: the tab may draw its hosts again between two element reads.
    drift = chrome.execute_script(
        "return Array.from(document.querySelectorAll('.fleet-host'), h => h.dataset.drift)"
    )
    assert drift == ["false", "false"]
    assert "extra:1" not in fake_ollama.installed()


def test_with_one_host_no_picker_shows(page, driver):  # noqa: F811 - the imported fixtures
    page()
    for picker in ("#pull-scope", "#update-scope", "#delete-scope"):
        assert not css(driver, picker).is_displayed()
