"""``ollama-deck plan``, ``apply`` and ``--hosts`` from a terminal, and the client's fleet
methods: against the werkzeug live server for the quick run, and the installed console
script against ``ollama-deck serve`` (marked ``gunicorn``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ollama_deck.cli import cli
from ollama_deck.client import DeckAPIError
from ollama_deck.client import DeckClient
from ollama_deck.client import read_desired_models
from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .harness import ServerProcess
from .helpers import free_port
from .processes import FAST_SETTINGS

QUICK = PullScript(layers=[200_000, 1_429], step=20_000)
FILE = """\
[all]                      # every configured host
models = ["nomic-embed-text"]

[hosts.gpu1]
models = ["qwen2.5:0.5b"]
prune = true               # delete what is installed there but not declared
"""


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.delenv("OLLAMA_DECK_URL", raising=False)
    monkeypatch.delenv("OLLAMA_DECK_TOKEN", raising=False)


@pytest.fixture
def second_ollama():
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture
def fleet_live(make_app, serve, fake_ollama, second_ollama):
    hosts = {"gpu1": fake_ollama.url, "gpu2": second_ollama.url}
    return serve(make_app(OLLAMA_DECK_OLLAMA_HOSTS=hosts))


@pytest.fixture
def desired_file(tmp_path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(FILE)
    return path


def ready(*fakes: FakeOllama) -> None:
    """What FILE declares can be pulled; gpu1 has a model FILE does not declare."""
    for fake in fakes:
        fake.allow_pull("nomic-embed-text", QUICK)
    fakes[0].allow_pull("qwen2.5:0.5b", QUICK)
    fakes[0].add_model("old:1")


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_plan_says_2_then_apply_then_plan_says_0(
    fleet_live, desired_file, fake_ollama, second_ollama
):
    ready(fake_ollama, second_ollama)
    url = ["--url", fleet_live.url]
    planned = invoke("plan", str(desired_file), *url)
    assert planned.exit_code == 2, planned.output
    lines = planned.output.splitlines()
    assert lines[0] == "gpu1 (prune)"
    assert any(line.split() == ["+", "qwen2.5:0.5b", "to", "pull"] for line in lines)
    assert any(line.split() == ["-", "old:1", "to", "delete"] for line in lines)
    assert lines[-1] == "Plan: 3 to pull, 1 to delete on 2 hosts."
    applied = invoke("apply", str(desired_file), "--yes", *url)
    assert applied.exit_code == 0, applied.output
    # The group's line and one per child (host first), each to its end.
    assert "gpu2: nomic-embed-text:latest  succeeded" in applied.output
    assert "gpu1: old:1  succeeded" in applied.output
    assert "apply: 3 to pull, 1 to delete on gpu1, gpu2  succeeded" in applied.output
    again = invoke("plan", str(desired_file), *url)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1].startswith("No changes: every host matches")
    assert "old:1" not in fake_ollama.installed()


def test_apply_asks_first(fleet_live, desired_file, fake_ollama, second_ollama):
    ready(fake_ollama, second_ollama)
    declined = invoke("apply", str(desired_file), "--url", fleet_live.url, input="n\n")
    assert declined.exit_code == 1
    assert "Apply these changes?" in declined.output and "Apply cancelled." in declined.output
    assert fake_ollama.pull_count("qwen2.5:0.5b") == 0 and "old:1" in fake_ollama.installed()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "cannot read"),
        ("[all\nmodels = 1", "is not TOML"),
        ('[all]\nmodels = ["bad name"]', "invalid model name"),
        ('[hosts.gpu9]\nmodels = ["m:1"]', "no Ollama host is called 'gpu9'"),
        ('[all]\nmodel = ["m:1"]', "all.model"),
    ],
)
def test_plan_exits_1_on_any_error(fleet_live, tmp_path, content, said):
    path = tmp_path / "set.toml"
    if content is not None:
        path.write_text(content)
    result = invoke("plan", str(path), "--url", fleet_live.url)
    assert result.exit_code == 1, result.output
    assert said in result.output


def test_plan_exits_1_for_a_usage_error_or_a_missing_deck(desired_file):
    assert invoke("plan").exit_code == 1  # no FILE: click would say 2, which means changes
    assert invoke("plan", str(desired_file), "--nope").exit_code == 1
    gone = invoke("plan", str(desired_file), "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.exit_code == 1 and "cannot reach the deck" in gone.output


def test_plan_of_a_host_that_does_not_answer_exits_1(fleet_live, desired_file, second_ollama):
    second_ollama.stop()
    result = invoke("plan", str(desired_file), "--url", fleet_live.url)
    assert result.exit_code == 1
    assert "gpu2: cannot plan:" in result.output


def test_pull_on_several_hosts_shows_a_line_per_host(fleet_live, fake_ollama, second_ollama):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", QUICK)
    result = invoke("pull", "m:1", "--hosts", "gpu1,gpu2", "--url", fleet_live.url)
    assert result.exit_code == 0, result.output
    finals = [line for line in result.output.splitlines() if "succeeded" in line]
    names = [line.split("  ")[0] for line in finals]
    # Each child ends in its own time; the group after both.
    assert sorted(names[:2]) == ["gpu1: m:1", "gpu2: m:1"] and names[2:] == ["m:1 on gpu1, gpu2"]
    assert fake_ollama.pull_count("m:1") == second_ollama.pull_count("m:1") == 1
    both = invoke("pull", "m:1", "--host", "gpu1", "--hosts", "*", "--url", fleet_live.url)
    assert both.exit_code == 2 and "not both" in both.output


def test_rm_on_every_host(fleet_live, fake_ollama, second_ollama):
    fake_ollama.add_model("old:1")
    second_ollama.add_model("old:1")
    result = invoke("rm", "old:1", "--hosts", "*", "--url", fleet_live.url)
    assert result.exit_code == 0, result.output
    assert fake_ollama.installed() == second_ollama.installed() == []


def test_the_client_stores_plans_and_applies(fleet_live, desired_file, fake_ollama, second_ollama):
    ready(fake_ollama, second_ollama)
    desired = read_desired_models(desired_file)
    with DeckClient(fleet_live.url) as deck:
        assert deck.desired_models().set is None
        stored = deck.store_desired_models(desired)
        assert stored.set == desired and stored.updated_at
        assert deck.plan().changes == 4  # the stored set
        applied = deck.apply()
        assert applied.group is not None and applied.group.kind == "group"
        final = deck.wait(applied.group.id, timeout=30)
        assert final.status == "succeeded" and len(final.children or []) == 4
        assert deck.plan().pending == 0
        assert deck.clear_desired_models().set is None
        with pytest.raises(DeckAPIError) as refused:
            deck.plan()
        assert refused.value.code == "no_desired_models"


# ---------------------------------------------------------------------- served (gunicorn)

SCRIPT = Path(sys.executable).with_name("ollama-deck")  # the venv's console script


@pytest.fixture(scope="module")
def served_fleet(tmp_path_factory) -> Iterator[tuple[ServerProcess, FakeOllama, FakeOllama]]:
    """``ollama-deck serve`` (gunicorn, gevent) over two fake Ollama hosts."""
    assert SCRIPT.exists(), f"no console script at {SCRIPT}: pip install -e '.[test]'"
    folder = tmp_path_factory.mktemp("fleet")
    with FakeOllama() as gpu1, FakeOllama() as gpu2:
        port = free_port()
        env = {**os.environ, **FAST_SETTINGS, "OLLAMA_HOSTS": f"gpu1={gpu1.url},gpu2={gpu2.url}"}
        command = [str(SCRIPT), "serve", "--port", str(port)]
        command += ["--database-url", f"sqlite:///{folder / 'deck.db'}"]
        server = ServerProcess(
            command, port=port, env=env, log=folder / "deck.log", ready_path="/healthz"
        )
        with server:
            yield server, gpu1, gpu2


def run_script(deck: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_DECK_URL": deck.url}
    env.pop("OLLAMA_DECK_TOKEN", None)
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.gunicorn
def test_the_console_script_plans_2_applies_and_plans_0(served_fleet, desired_file):
    deck, gpu1, gpu2 = served_fleet
    ready(gpu1, gpu2)
    planned = run_script(deck, "plan", str(desired_file))
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "Plan: 3 to pull, 1 to delete on 2 hosts." in planned.stdout
    applied = run_script(deck, "apply", str(desired_file), "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr + deck.output()
    assert gpu1.pull_count("qwen2.5:0.5b") == 1 and gpu2.pull_count("nomic-embed-text") == 1
    again = run_script(deck, "plan", str(desired_file))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes: every host matches" in again.stdout
