"""The curated catalog: the data file's completeness, validation, search and JSON."""

from __future__ import annotations

import pytest

from ollama_deck.services.catalog import catalog_entry_json
from ollama_deck.services.catalog import CatalogFamily
from ollama_deck.services.catalog import CatalogTag
from ollama_deck.services.catalog import CATEGORIES
from ollama_deck.services.catalog import load_catalog
from ollama_deck.services.catalog import parse_size
from ollama_deck.services.catalog import search_catalog
from ollama_deck.services.names import parse_model_name
from ollama_deck.services.vram import BITS_PER_WEIGHT
from ollama_deck.services.vram import estimate_vram
from ollama_deck.services.vram import parse_parameter_size

CATALOG = load_catalog()
BY_NAME = {family.name: family for family in CATALOG}


def test_catalog_is_large_and_covers_every_category():
    assert len(CATALOG) >= 30
    assert {family.category for family in CATALOG} == set(CATEGORIES)
    assert len(BY_NAME) == len(CATALOG)


@pytest.mark.parametrize("family", CATALOG, ids=lambda family: family.name)
def test_every_family_is_complete(family):
    assert family.description.strip()
    assert family.category in CATEGORIES
    assert family.tags
    assert family.recommended in {tag.name for tag in family.tags}
    assert family.homepage.startswith("https://")
    for tag in family.tags:
        parsed = parse_model_name(f"{family.name}:{tag.name}")
        assert parsed.display == f"{family.name}:{tag.name}"
        assert tag.size_bytes > 0
        assert tag.parameter_count > 0
        assert tag.parameter_size
        assert tag.quantization in BITS_PER_WEIGHT


@pytest.mark.parametrize("family", CATALOG, ids=lambda family: family.name)
def test_sizes_agree_with_parameters_and_quantization(family):
    """A download holds at least the weights: catches a params or size typo by 10x.

    Vision models also carry an image encoder, so their download may be well above it.
    """
    for tag in family.tags:
        weights = tag.parameter_count * BITS_PER_WEIGHT[tag.quantization] / 8
        assert 0.7 * weights <= tag.size_bytes <= 2.5 * weights, (family.name, tag.name)


def test_known_figures():
    tags = {tag.name: tag for tag in BY_NAME["llama3.2"].tags}
    assert tags["3b"] == CatalogTag(
        name="3b",
        parameter_count=3.2e9,
        parameter_size="3.2B",
        quantization="Q4_K_M",
        size_bytes=2_000_000_000,
    )
    assert BY_NAME["nomic-embed-text"].tags[0].size_bytes == 274_000_000
    assert BY_NAME["nomic-embed-text"].tags[0].quantization == "F16"
    assert BY_NAME["mxbai-embed-large"].tags[0].parameter_count == 334e6


def test_catalog_is_cached_and_hashable():
    assert load_catalog() is CATALOG
    assert len({tag for family in CATALOG for tag in family.tags}) > 0
    hash(CATALOG[0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.3GB", 1_300_000_000), ("274MB", 274_000_000), ("46 mb", 46_000_000), ("43GB", 43e9)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [None, "", "12", "1.3 GiB?", "big", "0MB"])
def test_parse_size_rejects_junk(text):
    assert parse_size(text) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("3.2B", 3.2e9), ("335M", 335e6), ("22m", 22e6), ("70.6B", 70.6e9)]
)
def test_parse_parameter_size(text, expected):
    assert parse_parameter_size(text) == pytest.approx(expected)


def _write(tmp_path, body: str):
    path = tmp_path / "catalog.toml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """
[[family]]
name = "tiny"
category = "chat"
description = "A test model."
recommended = "1b"
tags = [ { tag = "1b", params = "1.0B", quant = "Q4_K_M", size = "700MB" } ]
"""


def test_load_from_path(tmp_path):
    (family,) = load_catalog(_write(tmp_path, GOOD))
    assert family == CatalogFamily(
        name="tiny",
        description="A test model.",
        category="chat",
        recommended="1b",
        tags=(
            CatalogTag(
                name="1b",
                parameter_count=1e9,
                parameter_size="1.0B",
                quantization="Q4_K_M",
                size_bytes=700_000_000,
            ),
        ),
        capabilities=(),
        homepage="https://ollama.com/library/tiny",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('category = "chat"', 'category = "games"'), "category 'games'"),
        (('recommended = "1b"', 'recommended = "7b"'), "recommended tag '7b'"),
        (('description = "A test model."', 'description = " "'), "missing description"),
        (('quant = "Q4_K_M"', 'quant = "Q4_WHAT"'), "unknown quantization 'Q4_WHAT'"),
        (('size = "700MB"', 'size = "lots"'), "size 'lots'"),
        (('params = "1.0B"', 'params = "one"'), "params 'one'"),
        (('tag = "1b"', 'tag = "1 b"'), "not a valid model name"),
        (('name = "tiny"', 'name = "tiny/x/y/z"'), "not a valid model name"),
        (("tags = [", 'colour = "red"\ntags = ['), "unknown keys ['colour']"),
    ],
)
def test_bad_entries_name_the_family_and_the_fault(tmp_path, change, message):
    old, new = change
    body = GOOD.replace(old, new)
    assert body != GOOD
    with pytest.raises(ValueError) as caught:
        load_catalog(_write(tmp_path, body))
    assert "catalog family 'tiny" in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_family_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="listed twice"):
        load_catalog(_write(tmp_path, GOOD + GOOD))


def test_empty_catalog_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no \\[\\[family\\]\\] entries"):
        load_catalog(_write(tmp_path, "# nothing\n"))


def test_search_by_category():
    code = search_catalog(CATALOG, category="code", query=None)
    assert code
    assert all(family.category == "code" for family in code)
    assert "qwen2.5-coder" in {family.name for family in code}
    embedding = {f.name for f in search_catalog(CATALOG, category="embedding", query="")}
    assert {"nomic-embed-text", "mxbai-embed-large", "all-minilm"} <= embedding
    assert search_catalog(CATALOG, category=None, query=None) == list(CATALOG)


def test_search_by_query_words():
    names = [f.name for f in search_catalog(CATALOG, category=None, query="QWEN coder")]
    assert names == ["qwen2.5-coder"]
    # A tag name matches too, and every word must match somewhere.
    names = {f.name for f in search_catalog(CATALOG, category=None, query="llama 70b")}
    assert {"llama3.1", "llama3.3", "llama2", "codellama"} <= names
    assert "llama3.2" not in names
    # Description words match.
    vision = {f.name for f in search_catalog(CATALOG, category="vision", query="documents")}
    assert "granite3.2-vision" in vision
    assert search_catalog(CATALOG, category="chat", query="zzz-no-such-model") == []


def test_search_combines_category_and_query():
    found = search_catalog(CATALOG, category="reasoning", query="deepseek")
    assert [family.name for family in found] == ["deepseek-r1"]


def _fake_vram(tag: CatalogTag) -> dict:
    return {"total_bytes": tag.size_bytes + 1_000_000_000, "total_gb": 0.0, "assumptions": []}


def test_catalog_entry_json_installed_and_fits():
    family = BY_NAME["llama3.2"]
    entry = catalog_entry_json(
        family,
        installed={"llama3.2:3b", "mistral:7b"},
        vram_for=_fake_vram,
        gpu_total_bytes=2_500_000_000,
    )
    assert entry["name"] == "llama3.2"
    assert entry["category"] == "chat"
    assert entry["recommended"] == "3b"
    assert entry["installed"] is True
    tags = {tag["name"]: tag for tag in entry["tags"]}
    assert tags["3b"]["model"] == "llama3.2:3b"
    assert tags["3b"]["installed"] is True
    assert tags["1b"]["installed"] is False
    assert tags["3b"]["recommended"] is True
    assert tags["1b"]["recommended"] is False
    # 1b needs 2.3 GB here and fits 2.5 GB; 3b needs 3.0 GB and does not.
    assert tags["1b"]["fits"] is True
    assert tags["3b"]["fits"] is False
    assert tags["3b"]["vram"]["total_bytes"] == 3_000_000_000
    assert tags["3b"]["parameter_size"] == "3.2B"
    assert tags["3b"]["quantization"] == "Q4_K_M"
    assert tags["3b"]["size_bytes"] == 2_000_000_000


def test_catalog_entry_json_without_gpu_or_installs():
    entry = catalog_entry_json(
        BY_NAME["mistral"], installed=set(), vram_for=_fake_vram, gpu_total_bytes=None
    )
    assert entry["installed"] is False
    assert all(tag["fits"] is None for tag in entry["tags"])
    assert all(tag["installed"] is False for tag in entry["tags"])


def test_catalog_entry_json_fit_boundary_and_case():
    family = BY_NAME["mistral"]
    need = _fake_vram(family.tags[0])["total_bytes"]
    entry = catalog_entry_json(
        family, installed={"mistral:7b"}, vram_for=_fake_vram, gpu_total_bytes=need
    )
    assert entry["tags"][0]["fits"] is True
    assert entry["tags"][0]["installed"] is True


def test_every_tag_gets_a_real_estimate():
    """With the real estimator, a 24 GiB GPU takes 8B models but not 70B ones."""
    gpu = 24 * 1024**3

    def vram_for(tag: CatalogTag) -> dict:
        return estimate_vram(parameter_count=tag.parameter_count, quantization=tag.quantization)

    entry = catalog_entry_json(
        BY_NAME["llama3.1"], installed=set(), vram_for=vram_for, gpu_total_bytes=gpu
    )
    fits = {tag["name"]: tag["fits"] for tag in entry["tags"]}
    assert fits == {"8b": True, "70b": False}
