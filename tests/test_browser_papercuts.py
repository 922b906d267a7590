"""In headless Chromium: the small things a new user tripped over in the first hour.

The Prompt tab's default model, a stale pull error, a name typed while a pull is on its
way, a cancelled card's phase, the log's count, the Installed tab with Ollama down from the
start, and the phone layout with many finished operations.
"""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ollama_deck.testing import PullScript

from .test_browser import card_of
from .test_browser import cards
from .test_browser import css
from .test_browser import driver  # noqa: F401 - the module's Chromium
from .test_browser import page  # noqa: F401
from .test_browser import percent
from .test_browser import pull_through_box
from .test_browser import row
from .test_browser import status
from .test_browser import wait

pytestmark = pytest.mark.browser


def test_prompt_defaults_to_a_model_that_can_chat(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("llama3.2:1b")
    # Listed first (newest) and made active: still no default for a prompt.
    fake_ollama.add_model(
        "nomic-embed-text:latest", parameter_size="137M", capabilities=["embedding"]
    )
    live = page()
    answer = requests.put(
        live.url + "/api/active-model", json={"model": "nomic-embed-text:latest"}, timeout=10
    )
    assert answer.ok
    driver.refresh()
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
    css(driver, "#tab-prompt").click()
    select = Select(css(driver, "#prompt-model"))
    wait(driver, lambda d: len(select.options) == 2)
    assert select.first_selected_option.get_attribute("value") == "llama3.2:1b"
    embed = select.options[0]
    assert embed.get_attribute("value") == "nomic-embed-text:latest"
    assert not embed.is_enabled()  # it cannot answer a prompt: not offered
    assert "cannot chat" in embed.text

    css(driver, "#prompt-input").send_keys("Say hello")
    css(driver, "#prompt-send").click()
    wait(driver, lambda d: css(d, "#prompt-reply").text == fake_ollama.chat_reply)
    assert not css(driver, "#prompt-error").is_displayed()


def test_an_empty_submit_replaces_a_stale_pull_error(fake_ollama, page, driver):  # noqa: F811
    page()
    pull_through_box(driver, "bad name!")
    notice = css(driver, "#pull-error")
    wait(driver, lambda d: notice.is_displayed() and "bad name" in notice.text)

    box = css(driver, "#pull-input")
    box.clear()
    css(driver, "#pull-button").click()
    wait(driver, lambda d: "bad name" not in notice.text)
    assert notice.text == "Type the name of a model to pull, e.g. llama3.2:1b."


def test_a_name_typed_while_a_pull_is_on_its_way_stays(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.allow_pull("first:1b", PullScript(layers=[40_000, 100], step=5_000))
    page()
    box = css(driver, "#pull-input")
    button = css(driver, "#pull-button")
    # A slow network: the estimate and the pull take seconds each, so the second name is
    # typed while the first pull is still on its way (the button says so).
    driver.execute_cdp_cmd("Network.enable", {})
    slow = {"offline": False, "latency": 3000, "downloadThroughput": -1, "uploadThroughput": -1}
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", slow)
    try:
        box.clear()
        box.send_keys("first:1b")
        button.click()
        box.clear()
        box.send_keys("second:1b")
        assert not button.is_enabled()  # typed before the first pull was answered
        card_of(driver, "first:1b")
        wait(driver, lambda d: button.is_enabled())
    finally:  # the module's Chromium serves the next tests at full speed
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {**slow, "latency": 0})
        driver.execute_cdp_cmd("Network.disable", {})
    assert box.get_attribute("value") == "second:1b"  # not wiped by the first pull's answer


def test_a_cancelled_card_no_longer_says_downloading(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.allow_pull(
        "stuck:1b", PullScript(layers=[2_000_000, 1_429], step=100_000, hold_after=3)
    )
    page()
    pull_through_box(driver, "stuck:1b")
    card = card_of(driver, "stuck:1b")
    phase = card.find_element(By.CSS_SELECTOR, ".op-phase")
    wait(driver, lambda d: percent(card) > 0 and phase.text == "Downloading")

    card.find_element(By.CSS_SELECTOR, '[data-action="cancel"]').click()
    wait(driver, lambda d: status(card) == "cancelled")
    assert phase.text == ""
    assert "downloading" not in card.text.lower()
    fake_ollama.release("stuck:1b")


def test_ollama_down_from_the_start_says_one_true_thing(fake_ollama, page, driver):  # noqa: F811
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.stop()  # before the deck ever saw a list
    page()
    note = css(driver, "#installed-note")
    wait(driver, lambda d: note.is_displayed())
    assert "no earlier list" in note.text
    assert "last list seen" not in note.text
    assert not css(driver, "#installed-empty").is_displayed()  # not "No models installed"
    assert css(driver, "#stat-count").text == "–"
    banner = css(driver, "#ollama-banner-text")
    wait(driver, lambda d: "no earlier list" in banner.text)
    assert "last one seen" not in banner.text

    fake_ollama.start()  # same port: Ollama is back, and its list shows
    assert wait(driver, lambda d: row(d, "llama3.2:1b"))
    wait(driver, lambda d: not note.is_displayed())
    assert css(driver, "#stat-count").text == "1"


def test_log_count_is_the_servers_not_what_the_page_saw(fake_ollama, make_app, serve, driver):  # noqa: F811
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[40_000, 100], step=5_000))
    live = serve(make_app())
    op = live.post("/api/models/pull", json={"model": "llama3.2:1b"}).json()
    done = wait(
        driver,
        lambda d: (s := live.get(op["urls"]["progress"]).json())["status"] == "succeeded" and s,
    )
    assert done["log_count"] > 5
    try:
        driver.get(live.url + "/")  # opened after the pull: it saw none of the lines
        wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
        card = card_of(driver, "llama3.2:1b")
        count = card.find_element(By.CSS_SELECTOR, ".op-log-count")
        wait(driver, lambda d: count.get_attribute("textContent") == f"({done['log_count']})")
        card.find_element(By.CSS_SELECTOR, ".op-log summary").click()
        wait(
            driver,
            lambda d: len(card.find_elements(By.CSS_SELECTOR, ".log-line")) == done["log_count"],
        )
        assert count.get_attribute("textContent") == f"({done['log_count']})"
    finally:
        driver.get("about:blank")


def test_on_a_phone_finished_operations_fold_away_and_clear(
    fake_ollama,
    make_app,
    serve,
    driver,  # noqa: F811
):
    names = [f"tiny{i}:1b" for i in range(10)]
    for name in names:
        fake_ollama.allow_pull(name, PullScript(layers=[10_000], step=5_000))
    fake_ollama.allow_pull("held:1b", PullScript(layers=[900_000], step=10_000, hold_after=2))
    live = serve(make_app(OLLAMA_DECK_PULL_STALL_TIMEOUT=120.0))
    ops = [live.post("/api/models/pull", json={"model": name}).json() for name in names]
    for op in ops:
        wait(
            driver,
            lambda d, op=op: live.get(op["urls"]["progress"]).json()["status"] == "succeeded",
        )
    held = live.post("/api/models/pull", json={"model": "held:1b"}).json()
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        driver.get(live.url + "/")
        wait(driver, lambda d: d.execute_script("return document.body.dataset.ready"))
        wait(driver, lambda d: len(cards(d)) == 11)
        fold = css(driver, "#ops-finished")
        assert fold.get_attribute("open") is None
        assert css(driver, "#ops-finished summary").text == "Finished (10)"
        assert card_of(driver, "held:1b").is_displayed()  # what still runs stays in view
        # The tabs start on the first screen, not after ten old cards.
        top = driver.execute_script(
            "return document.querySelector('.tabs').getBoundingClientRect().top"
        )
        assert top < driver.execute_script("return window.innerHeight")

        css(driver, "#ops-finished summary").click()
        css(driver, "#clear-finished").click()
        wait(driver, lambda d: len(cards(d)) == 1)
        assert not fold.is_displayed()
        listed = live.get("/progress").json()["operations"]
        assert [op["id"] for op in listed] == [held["id"]]  # the active one stays
    finally:
        fake_ollama.release("held:1b")
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.get("about:blank")
