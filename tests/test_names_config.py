"""Model name rules (Ollama's) and settings from the environment."""

from __future__ import annotations

import pytest

from ollama_deck.config import normalize_ollama_host
from ollama_deck.config import settings_from_env
from ollama_deck.services.names import check_registry
from ollama_deck.services.names import InvalidModelName
from ollama_deck.services.names import parse_model_name
from ollama_deck.services.names import REGISTRIES_SETTING
from ollama_deck.services.names import RegistryNotAllowed


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("llama3.2:1b", "llama3.2:1b"),
        ("library/llama3.2:1b", "llama3.2:1b"),
        ("registry.ollama.ai/library/llama3.2", "llama3.2:latest"),
        ("jmorgan/custom:v1", "jmorgan/custom:v1"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", None),
        ("localhost:5000/team/model:tag", None),
        ("https://registry.example.com/ns/m:t", "registry.example.com/ns/m:t"),
        ("  qwen2.5-coder:7b  ", "qwen2.5-coder:7b"),
    ],
)
def test_valid_names(text, display):
    assert parse_model_name(text).display == (display or text)


def test_key_is_case_insensitive():
    assert parse_model_name("Llama3.2").key == parse_model_name("llama3.2:LATEST").key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a/b/c/d",
        "my.namespace/model",
        "-starts-with-dash",
        "model:",
        "/model",
        "has space",
        "<img src=x onerror=alert(1)>",
        "m" * 81,
        "model:" + "t" * 81,
    ],
)
def test_invalid_names(text):
    with pytest.raises(InvalidModelName):
        parse_model_name(text)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("example.com", "http://example.com:11434"),
        ("example.com:1234", "http://example.com:1234"),
        (":8080", "http://127.0.0.1:8080"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com/ollama/", "https://example.com:443/ollama"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("::", "http://[::1]:11434"),
    ],
)
def test_ollama_host_forms(value, url):
    assert normalize_ollama_host(value) == url


def test_bad_ollama_host_is_a_clear_error():
    with pytest.raises(ValueError, match="scheme"):
        normalize_ollama_host("ftp://example.com")


def test_settings_from_env_parses_and_defaults():
    values = settings_from_env({"OLLAMA_HOST": "box:9999", "OLLAMA_DECK_MAX_CONCURRENT_PULLS": "3"})
    assert values["OLLAMA_DECK_OLLAMA_HOST"] == "http://box:9999"
    assert values["OLLAMA_DECK_MAX_CONCURRENT_PULLS"] == 3
    assert values["OLLAMA_DECK_LOG_LINES"] == 300
    assert values["OLLAMA_DECK_DATABASE_URL"] is None


def test_settings_from_env_names_the_bad_variable():
    with pytest.raises(ValueError, match="OLLAMA_DECK_MAX_CONCURRENT_PULLS"):
        settings_from_env({"OLLAMA_DECK_MAX_CONCURRENT_PULLS": "two"})


# ---------------------------------------------------------------- registries

# Names that make Ollama fetch from a host of the requester's choosing.
FOREIGN = [
    "169.254.169.254/latest/meta-data",
    "169.254.169.254/library/x:1",
    "127.0.0.1:6379/a/b",
    "evil.example:8080/ns/model:tag",
    "https://evil.example/ns/model:tag",
    "localhost:11434/library/llama3.2:1b",
    "registry.ollama.ai:8080/library/llama3.2",  # the right name on another port
    "hf.co.evil.example/ns/m",
]
OWN = [
    "llama3.2:1b",
    "library/llama3.2",
    "jmorgan/custom:v1",
    "registry.ollama.ai/library/llama3.2:1b",
    "REGISTRY.OLLAMA.AI/library/llama3.2",
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
    "huggingface.co/bartowski/Llama-3.2-1B-Instruct-GGUF",
]


@pytest.mark.parametrize("name", FOREIGN)
def test_names_of_other_registries_are_refused_naming_the_setting(name):
    with pytest.raises(RegistryNotAllowed, match=REGISTRIES_SETTING) as refused:
        check_registry(parse_model_name(name))
    assert refused.value.status == 400 and refused.value.code == "registry_not_allowed"


@pytest.mark.parametrize("name", OWN)
def test_ollama_and_hugging_face_names_are_pulled(name):
    check_registry(parse_model_name(name))


def test_allowed_registries_are_added_by_the_setting():
    settings = settings_from_env({REGISTRIES_SETTING: " Registry.Example:5000 , hub.internal "})
    extra = settings["OLLAMA_DECK_ALLOWED_REGISTRIES"]
    assert extra == ("registry.example:5000", "hub.internal")
    check_registry(parse_model_name("registry.example:5000/team/m:1"), extra)
    check_registry(parse_model_name("hub.internal/team/m"), extra)
    with pytest.raises(RegistryNotAllowed):  # another port is another server
        check_registry(parse_model_name("registry.example/team/m"), extra)
    with pytest.raises(ValueError, match=REGISTRIES_SETTING):
        settings_from_env({REGISTRIES_SETTING: "not a host/"})


@pytest.mark.parametrize("name", FOREIGN[:4])
def test_pull_load_and_update_refuse_other_registries(fake_ollama, live, name):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model(name)  # even one Ollama has already: an update fetches again
    answers = [
        live.post("/api/models/pull", json={"model": name}),
        live.post(f"/api/models/{name}/load"),
        live.post("/api/models/update", json={"models": ["llama3.2:1b", name]}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "registry_not_allowed"
        assert REGISTRIES_SETTING in error["message"]
    assert live.get("/progress").json()["operations"] == []
    assert fake_ollama.pull_count(name) == 0


def test_update_of_everything_leaves_out_other_registries(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model("evil.example:8080/ns/model:tag")
    queued = live.post("/api/models/update")
    assert queued.status_code == 202, queued.text
    assert [op["model"] for op in queued.json()["operations"]] == ["llama3.2:1b"]


def test_a_private_registry_in_the_setting_is_pulled(fake_ollama, make_app, serve):
    from ollama_deck.testing import PullScript

    name = "registry.example:5000/team/m:1"
    fake_ollama.allow_pull(name, PullScript(layers=[1_000], step=1_000))
    live = serve(make_app(OLLAMA_DECK_ALLOWED_REGISTRIES="registry.example:5000"))
    pulled = live.post("/api/models/pull", json={"model": name})
    assert pulled.status_code == 202, pulled.text
    assert live.post("/api/models/pull", json={"model": "other.example/t/m"}).status_code == 400
