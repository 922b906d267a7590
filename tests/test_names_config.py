"""Model name rules (Ollama's) and settings from the environment."""

from __future__ import annotations

import pytest

from ollama_deck.config import normalize_ollama_host
from ollama_deck.config import settings_from_env
from ollama_deck.services.names import InvalidModelName
from ollama_deck.services.names import parse_model_name


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
