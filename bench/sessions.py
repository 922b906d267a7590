"""What a session costs per request, and how many answers a token guesser gets.

Serves the deck with a token (``ollama-deck serve``, one gevent worker, SQLite) and, on one
keep-alive connection each, times ``GET /api/session`` with the bearer token (no database
read) against the same request with the session cookie (one read by primary key),
alternating rounds in the same run. Then one connection sends wrong tokens for a few
seconds and counts the answers that looked at a token (401) against those turned away
unread (429). Ends with:
``sessions: cookie_vs_bearer=<ratio> bearer_ms=<ms> cookie_ms=<ms> guesses_per_s=<n>
 tries_per_s=<n>``

    python bench/sessions.py [--requests 2000] [--rounds 3] [--guess-seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TOKEN = "bench-token-0123456789"


def timed(conn: http.client.HTTPConnection, headers: dict[str, str], count: int) -> float:
    """Median milliseconds of ``count`` GET /api/session on ``conn``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", "/api/session", headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        if response.status != 200:
            raise SystemExit(f"/api/session answered {response.status}")
    return statistics.median(times) * 1000


def guess(port: int, seconds: float) -> tuple[int, int]:
    """(tokens looked at, tries) of one connection sending wrong tokens for ``seconds``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answered = tries = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("GET", "/api/session", headers={"Authorization": f"Bearer g{tries}"})
        response = conn.getresponse()
        response.read()
        tries += 1
        answered += response.status == 401
    conn.close()
    return answered, tries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--guess-seconds", type=float, default=5.0)
    args = parser.parse_args()

    fake = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.testing"], stdout=subprocess.PIPE, text=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="deck-sessions-"))
    server = None
    try:
        ollama = fake.stdout.readline().strip()
        port = common.free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "ollama_deck.cli", "serve", "--port", str(port)]
            + ["--ollama", ollama, "--database-url", f"sqlite:///{workdir / 'deck.db'}"],
            env=dict(os.environ, OLLAMA_DECK_TOKEN=TOKEN, OLLAMA_DECK_EVENT_BUS="local"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn.request("POST", "/api/session", headers=bearer)
                response = conn.getresponse()
                response.read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the deck did not start") from None
                conn.close()
                time.sleep(0.1)
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        if not cookie:
            raise SystemExit("no session cookie: is this a deck with sessions?")
        with_cookie = {"Cookie": cookie}
        timed(conn, bearer, 200)  # warm up both
        timed(conn, with_cookie, 200)
        ratios, bearers, cookies = [], [], []
        for _ in range(args.rounds):
            bearers.append(timed(conn, bearer, args.requests))
            cookies.append(timed(conn, with_cookie, args.requests))
            ratios.append(cookies[-1] / bearers[-1])
            print(f"round: bearer {bearers[-1]:.3f} ms, cookie {cookies[-1]:.3f} ms (median)")
        conn.close()
        answered, tries = guess(port, args.guess_seconds)
        print(f"guesser: {tries} tries, {answered} tokens looked at in {args.guess_seconds:g} s")
    finally:
        for process in (server, fake):
            if process is not None:
                process.terminate()
                process.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"sessions: cookie_vs_bearer={statistics.median(ratios):.2f} "
        f"bearer_ms={statistics.median(bearers):.3f} cookie_ms={statistics.median(cookies):.3f} "
        f"guesses_per_s={answered / args.guess_seconds:.1f} "
        f"tries_per_s={tries / args.guess_seconds:.0f}"
    )


if __name__ == "__main__":
    main()
