"""``python -m ollama_deck.testing``: a fake Ollama in its own process; prints its URL."""

from __future__ import annotations

import argparse
import threading

from . import demo
from . import FakeOllama
from . import PullScript


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ollama_deck.testing", description="Run a fake Ollama on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--demo", action="store_true", help="some models; any name pulls")
    parser.add_argument(
        "--bench-lines", type=int, default=0, help="make bench:latest a pull of N lines"
    )
    # A scriptable pull for tests that run the fake in its own process (to stop or kill it).
    parser.add_argument(
        "--allow", action="append", default=[], metavar="NAME", help="NAME can be pulled"
    )
    parser.add_argument("--model", action="append", default=[], metavar="NAME", help="installed")
    parser.add_argument(
        "--layers", default="2000000,1429", help="pull layer sizes in bytes, comma-separated"
    )
    parser.add_argument("--step", type=int, default=100_000, help="bytes per progress line")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between lines")
    args = parser.parse_args(argv)
    fake = FakeOllama(args.port)
    if args.demo:
        demo(fake)
    if args.bench_lines:
        fake.bench_pull("bench:latest", args.bench_lines)
    for name in args.model:
        fake.add_model(name)
    layers = [int(size) for size in args.layers.split(",") if size.strip()]
    for name in args.allow:
        fake.allow_pull(name, PullScript(layers=layers, step=args.step, interval=args.interval))
    fake.start()
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
