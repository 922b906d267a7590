"""Take docs/screenshot.png: the page with a few models and a pull held mid-way.

Everything runs on 127.0.0.1: a FakeOllama, the app over a real socket, headless Chromium.

    python scripts/screenshot.py [--out docs/screenshot.png] [--width 1280 --height 900]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from pathlib import Path

import requests
from werkzeug.serving import make_server
from werkzeug.serving import WSGIRequestHandler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ollama_deck import create_app  # noqa: E402
from ollama_deck import OllamaDeck  # noqa: E402
from ollama_deck.testing import FakeOllama  # noqa: E402
from ollama_deck.testing import PullScript  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
MAX_BYTES = 300 * 1024
PULLED = "qwen2.5-coder:7b"
DONE = "qwen2.5-coder:0.5b"


def stock(fake: FakeOllama) -> None:
    """A handful of installed models with believable sizes and ages."""
    now = datetime.now(UTC)
    models = [
        ("llama3.2:3b", 2_019_393_189, "3.2B", "Q4_K_M", "llama", 2),
        ("qwen3:8b", 5_225_387_923, "8.2B", "Q4_K_M", "qwen3", 9),
        ("gemma3:4b", 3_338_801_804, "4.3B", "Q4_K_M", "gemma3", 21),
        ("phi4-mini:3.8b", 2_491_876_774, "3.8B", "Q4_K_M", "phi3", 40),
        ("nomic-embed-text:latest", 274_302_450, "137M", "F16", "nomic-bert", 75),
    ]
    for name, size, params, quant, family, days in models:
        fake.add_model(
            name,
            size=size,
            parameter_size=params,
            quantization=quant,
            family=family,
            modified_at=now - timedelta(days=days, hours=3),
            capabilities=["embedding"] if "embed" in name else ["completion", "tools"],
        )
    # A 4.7 GB pull that stops at ~42 % until released: 120 lines of 16.5 MB, ~300 MB/s.
    fake.allow_pull(
        PULLED,
        PullScript(
            layers=[4_683_087_332, 11_356, 1_429, 487],
            step=16_500_000,
            interval=0.05,
            hold_after=120,
        ),
        parameter_size="7.6B",
        family="qwen2",
    )
    # A small one that finishes first, so the picture has a finished card too.
    fake.allow_pull(
        DONE,
        PullScript(layers=[397_821_319, 1_429], step=40_000_000, interval=0.01),
        parameter_size="494M",
        family="qwen2",
    )


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # one line per request is noise here
        pass


def serve(app) -> tuple[str, object]:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def browser(width: int, height: int, profile: str):
    from selenium import webdriver

    os.environ["SE_OFFLINE"] = "1"  # never let Selenium Manager fetch a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )


def emulate(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def card_percent(driver) -> float | None:
    from selenium.webdriver.common.by import By

    cards = driver.find_elements(By.CSS_SELECTOR, "[data-op-id][data-status='running']")
    if not cards:
        return None
    return float(cards[0].get_attribute("data-percent") or 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (apt-get install chromium chromium-driver)")

    work = tempfile.mkdtemp(prefix="deck-shot-")
    fake = FakeOllama().start()
    stock(fake)
    app = create_app(
        {
            "OLLAMA_DECK_OLLAMA_HOST": fake.url,
            "OLLAMA_DECK_DATABASE_URL": f"sqlite:///{work}/deck.db",
        }
    )
    url, server = serve(app)
    driver = None
    try:
        requests.put(f"{url}/api/active-model", json={"model": "llama3.2:3b"}, timeout=10)
        driver = browser(args.width, args.height, os.path.join(work, "profile"))
        # Headless Chromium counts its window frame in --window-size and has a minimum
        # window width; a device-metrics override gives the page exactly the asked-for size.
        emulate(driver, args.width, args.height)
        driver.get(url + "/")
        wait_for(
            lambda: driver.execute_script("return document.body.dataset.ready === 'true'"),
            what="the page to load",
        )
        for name in (DONE, PULLED):
            response = requests.post(f"{url}/api/models/pull", json={"model": name}, timeout=10)
            response.raise_for_status()
            if name == DONE:
                op = response.json()
                wait_for(
                    lambda op=op: (
                        requests.get(url + op["urls"]["progress"], timeout=10).json()["status"]
                        == "succeeded"
                    ),
                    what="the small pull to finish",
                )
        wait_for(
            lambda: (p := card_percent(driver)) is not None and 20 <= p <= 80,
            what="the pull card to show 20-80 %",
        )
        # Show the running pull's log, then let the bar's width transition settle.
        driver.execute_script(
            "document.querySelector(\"[data-op-id][data-status='running'] .op-log\").open = true;"
        )
        wait_for(
            lambda: driver.execute_script(
                "return document.querySelectorAll('[data-status=running] .log-line').length > 2"
            ),
            what="log lines",
        )
        wait_for(
            lambda: driver.execute_script(
                "const f = document.querySelector('[data-op-id] .bar-fill');"
                "return f && f.getAnimations().filter(a => a.transitionProperty).length === 0;"
            ),
            what="the bar to settle",
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        size = out.stat().st_size
        width = args.width
        while size > MAX_BYTES and width > 800:  # smaller window, smaller file
            width -= 160
            emulate(driver, width, args.height)
            driver.save_screenshot(str(out))
            size = out.stat().st_size
        print(f"{out} ({size // 1024} KB, {width}x{args.height})")
    finally:
        if driver is not None:
            driver.quit()
        fake.release(PULLED)
        server.shutdown()
        server.server_close()
        OllamaDeck.shutdown(app)
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
