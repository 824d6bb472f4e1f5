"""The model registry and Config: names, derived fields, parameter counts, files and the listing commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

import litgpt.__main__ as cli
from litgpt.config import Config, config_names, name_to_config, repo_ids
from litgpt.errors import LitGPTError
from litgpt.model import GPT

REGISTRY = name_to_config()


def test_registry_size_and_repo_ids():
    names = config_names()
    assert len(names) >= 237
    assert {"Gemma-3-270m", "Gemma-3-270m-it", "pythia-160m", "tiny-llama-1.1b", "SmolLM2-135M-Instruct"} <= set(names)
    for name, entry in REGISTRY.items():
        org, repo = entry["hf_config"]["org"], entry["hf_config"]["name"]
        assert org and repo and "/" not in org and "/" not in repo, name
    assert len(set(repo_ids())) == len(names)


@pytest.mark.parametrize("name", config_names())
def test_every_entry_builds_consistently(name):
    c = Config.from_name(name)
    assert c.name == name and c.hf_repo_id
    assert c.n_head % c.n_query_groups == 0
    assert c.padded_vocab_size >= c.vocab_size > 0
    assert c.attn_qkv_size == (c.n_head + 2 * c.n_query_groups) * c.head_size
    # heads span the embedding unless the family sets head_dim itself (Gemma, Qwen3)
    if c.n_head * c.head_size != c.n_embd:
        assert c.mlp_class_name == "GemmaMLP" or c.norm_qk, name
    assert c.rope_n_elem == int(c.rotary_percentage * c.head_size)
    assert 0 < c.rope_n_elem <= c.head_size and c.rope_n_elem % 2 == 0
    assert c.intermediate_size and c.intermediate_size > 0
    if c.mlp_class_name == "LLaMAMoE":
        assert 0 < c.n_expert_per_token <= c.n_expert
    else:
        assert c.n_expert == 0
    for key in ("sliding_window_indices", "rope_indices"):
        value = getattr(c, key)
        assert value is None or (len(value) == c.n_layer and set(value) <= {0, 1}), key
    if c.sliding_window_size is not None:
        assert c.sliding_window_indices is not None and any(c.sliding_window_indices)
    if c.rope_indices is not None:
        assert c.rope_local_base_freq is not None
    assert c.norm_unit_offset == (c.mlp_class_name == "GemmaMLP")
    assert Config(**c.to_dict()).to_dict() == c.to_dict()  # derived fields are stable


def param_count(config: Config) -> int:
    """Parameters of a meta-device GPT; every layer has the same count, so two small models give the exact total."""

    def count(n_layer: int) -> int:
        layer_config = Config(
            **{**config.to_dict(), "n_layer": n_layer, "sliding_window_indices": None, "rope_indices": None}
        )
        with torch.device("meta"):
            return sum(p.numel() for p in GPT(layer_config).parameters())

    one, two = count(1), count(2)
    return one + (config.n_layer - 1) * (two - one)


# name -> (published parameter count, whether lm_head shares the embedding and so counts once)
SIZES = {
    "pythia-160m": (162e6, False),
    "pythia-14m": (14e6, False),
    "Llama-2-7b-hf": (6.74e9, False),
    "Llama-3.1-8B": (8.03e9, False),
    "Llama-3.2-1B": (1.24e9, True),
    "tiny-llama-1.1b": (1.1e9, False),
    "phi-2": (2.78e9, False),
    "Phi-3-mini-4k-instruct": (3.82e9, False),
    "Mistral-7B-v0.1": (7.24e9, False),
    "Mixtral-8x7B-v0.1": (46.7e9, False),
    "Gemma-2b": (2.51e9, True),
    "Gemma-2-9b": (9.24e9, True),
    "Gemma-3-1b-it": (1.0e9, True),
    "Gemma-3-270m": (268e6, True),
    "Qwen2.5-7B": (7.62e9, False),
    "Qwen3-8B": (8.19e9, False),
    "Qwen3-30B-A3B": (30.5e9, False),
    "OLMo-2-1124-7B": (7.3e9, False),
    "falcon-7b": (7.0e9, True),
    "falcon-40b": (40e9, True),
    "stablelm-3b-4e1t": (2.8e9, False),
    "SmolLM2-135M": (135e6, True),
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_count_matches_published_size(name):
    published, tied = SIZES[name]
    config = Config.from_name(name)
    total = param_count(config)
    if tied:
        total -= config.n_embd * config.padded_vocab_size
    assert abs(total - published) / published < 0.10, f"{name}: {total / 1e9:.3f}B vs {published / 1e9:.3f}B"


def test_param_count_shortcut_equals_full_build():
    config = Config.from_name("pythia-160m")
    assert param_count(config) == config.estimated_params()


@pytest.mark.parametrize(
    "query, name",
    [
        ("pythia-160m", "pythia-160m"),
        ("Pythia-160M", "pythia-160m"),
        ("EleutherAI/pythia-160m", "pythia-160m"),
        ("eleutherai/PYTHIA-160M", "pythia-160m"),
        ("meta-llama/Meta-Llama-3.1-8B", "Llama-3.1-8B"),
        ("Meta-Llama-3.1-8B", "Llama-3.1-8B"),  # the bare Hugging Face name, as the established tool accepts
        ("google/gemma-3-270m-it", "Gemma-3-270m-it"),
        ("gemma-3-270m", "Gemma-3-270m"),  # the spelling of earlier releases still resolves
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tiny-llama-1.1b-chat"),
    ],
)
def test_from_name_by_short_name_or_repo_id(query, name):
    assert Config.from_name(query).name == name


def test_from_name_overrides_and_unknown_names():
    c = Config.from_name("pythia-160m", n_layer=2, block_size=64)
    assert (c.n_layer, c.block_size, c.n_embd) == (2, 64, 768)
    with pytest.raises(LitGPTError) as excinfo:
        Config.from_name("pythia-160")
    message = str(excinfo.value)
    assert "pythia-160" in message and "pythia-160m" in message and "Did you mean" in message
    with pytest.raises(LitGPTError, match="meta-llama/Llama-2-7b-hf"):
        Config.from_name("meta-llama/llama-2-7b")


def test_from_file_rejects_unknown_field(tmp_path):
    path = tmp_path / "model_config.yaml"
    path.write_text(yaml.safe_dump({**Config.from_name("pythia-14m").to_dict(), "n_layers": 3}))
    with pytest.raises(LitGPTError) as excinfo:
        Config.from_file(path)
    assert "n_layers" in str(excinfo.value) and "n_layer" in str(excinfo.value)
    with pytest.raises(LitGPTError, match="does not exist"):
        Config.from_file(tmp_path / "missing.yaml")


def test_from_file_with_only_a_name(tmp_path):
    path = tmp_path / "model_config.yaml"
    path.write_text("name: pythia-14m\n")
    assert Config.from_file(path, n_layer=1).to_dict() == Config.from_name("pythia-14m", n_layer=1).to_dict()


@pytest.mark.parametrize(
    "name", ["pythia-14m", "Llama-3.1-8B", "gemma-3-270m", "Qwen3-30B-A3B", "Phi-3-mini-4k-instruct"]
)
def test_from_checkpoint_round_trips_save(name, tmp_path):
    config = Config.from_name(name)
    config.save(tmp_path / "model_config.yaml")
    loaded = Config.from_checkpoint(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.rope_n_elem == config.rope_n_elem


@pytest.mark.parametrize("name", [n for n in config_names() if REGISTRY[n].get("sliding_window_size")])
def test_from_name_with_fewer_or_more_layers_keeps_the_layer_pattern(name):
    """An n_layer override rebuilds per-layer lists (sliding windows, local rope) by repeating their period."""
    registered = Config.from_name(name)
    for n_layer in (2, registered.n_layer + 3):
        config = Config.from_name(name, n_layer=n_layer)
        for key in ("sliding_window_indices", "rope_indices"):
            full = getattr(registered, key)
            if full is not None:
                got = getattr(config, key)
                assert len(got) == n_layer and got[: min(n_layer, len(full))] == full[:n_layer], (key, got)
    config = Config.from_name("Gemma-3-270m", n_layer=8)
    assert config.sliding_window_indices == config.rope_indices == [1, 1, 1, 1, 1, 0, 1, 1]
    assert Config.from_name("Gemma-2-2b", n_layer=3, sliding_window_indices=[0, 0, 1]).sliding_window_indices == [0, 0, 1]


def test_from_checkpoint_without_files(tmp_path):
    assert Config.from_checkpoint(tmp_path / "pythia-14m").name == "pythia-14m"
    with pytest.raises(LitGPTError, match="convert_to_litgpt"):
        Config.from_checkpoint(tmp_path)


# -- the listing commands -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["pretrain"], ["pretrain", "list"]])
def test_pretrain_lists_sorted_names(argv, capsys):
    cli.main(argv)
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(lines) == config_names()


def test_download_lists_repo_ids(capsys):
    cli.main(["download"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(lines) == repo_ids()
    tiny = [line for line in lines if "TinyLlama" in line]
    assert "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T" in tiny
    assert "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in tiny


def test_cli_listing_exits_zero():
    """`litgpt download | grep TinyLlama`, as the tutorial runs it (one subprocess: starting Python costs seconds)."""
    out = subprocess.run([sys.executable, "-m", "litgpt", "download"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == repo_ids()
    assert {"TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"} <= {
        line for line in lines if "TinyLlama" in line
    }
