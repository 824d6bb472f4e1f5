"""Hugging Face config.json -> Config, checked against the registry.

Every case builds the transformers config of a published model from the facts of its config.json (the values are
written here, not read from our registry) and expects the registered architecture back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers

from litgpt.config import Config, name_to_config
from litgpt.errors import LitGPTError
from litgpt.hf_config import config_from_hf

REFERENCE = Path("/work/shared/reference")
LABELS = ("name", "hf_config")


def gemma3_layer_types(n_layer: int) -> list[str]:
    return ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layer)]


# name -> (transformers config of the published model, registry fields that knowingly differ from it: HF value)
# fmt: off
CASES = {
    "pythia-160m": (
        lambda: transformers.GPTNeoXConfig(
            vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048,
            layer_norm_eps=1e-5, use_parallel_residual=True,
        ),
        {},
    ),
    "Llama-2-7b-hf": (
        lambda: transformers.LlamaConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        ),
        {},
    ),
    "Llama-3.1-8B": (
        lambda: transformers.LlamaConfig(
            vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=8192),
        ),
        {},
    ),
    "Llama-3.2-1B": (
        lambda: transformers.LlamaConfig(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5,
            rope_theta=500000.0, tie_word_embeddings=True,
            rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=8192),
        ),
        {},
    ),
    "Mistral-7B-v0.1": (
        lambda: transformers.MistralConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0,
            sliding_window=4096,
        ),
        {"block_size": 32768},  # the registry keeps the 4096 context the model was trained at
    ),
    "Mixtral-8x7B-v0.1": (
        lambda: transformers.MixtralConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=1e6,
            num_local_experts=8, num_experts_per_tok=2, sliding_window=None,
        ),
        {},
    ),
    "phi-1_5": (
        lambda: transformers.PhiConfig(
            vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
            partial_rotary_factor=0.5, max_position_embeddings=2048, layer_norm_eps=1e-5, hidden_act="gelu_new",
            rope_theta=10000.0,
        ),
        {},
    ),
    "phi-2": (
        lambda: transformers.PhiConfig(
            vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
            partial_rotary_factor=0.4, max_position_embeddings=2048, layer_norm_eps=1e-5, hidden_act="gelu_new",
            rope_theta=10000.0,
        ),
        {},
    ),
    "Phi-3-mini-4k-instruct": (
        lambda: transformers.Phi3Config(
            vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, max_position_embeddings=4096, original_max_position_embeddings=4096,
            rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=2047,
        ),
        {"sliding_window_size": 2047},  # the registry counts the window as flash-attention did (2047 + 1)
    ),
    "Gemma-2b": (
        lambda: transformers.GemmaConfig(
            vocab_size=256000, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
            num_key_value_heads=1, head_dim=256, max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
            hidden_act="gelu", hidden_activation="gelu_pytorch_tanh",
        ),
        {"block_size": 8192, "norm_eps": 1e-6},
    ),
    "Gemma-2-2b": (
        lambda: transformers.Gemma2Config(
            vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
            num_key_value_heads=4, head_dim=256, max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
            query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
            hidden_activation="gelu_pytorch_tanh",
        ),
        {"norm_eps": 1e-6},
    ),
    "Gemma-2-9b": (
        lambda: transformers.Gemma2Config(
            vocab_size=256000, hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
            num_key_value_heads=8, head_dim=256, max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
            query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
            hidden_activation="gelu_pytorch_tanh",
        ),
        {"norm_eps": 1e-6},
    ),
    "Gemma-2-27b": (
        lambda: transformers.Gemma2Config(
            vocab_size=256000, hidden_size=4608, intermediate_size=36864, num_hidden_layers=46, num_attention_heads=32,
            num_key_value_heads=16, head_dim=128, max_position_embeddings=8192, rms_norm_eps=1e-6,
            rope_theta=10000.0, query_pre_attn_scalar=144, sliding_window=4096, attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh",
        ),
        {"norm_eps": 1e-6},
    ),
    "Gemma-3-1b-it": (
        lambda: transformers.Gemma3TextConfig(
            vocab_size=262144, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
            num_key_value_heads=1, head_dim=256, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
            rope_local_base_freq=10000.0, sliding_window=512, sliding_window_pattern=6, query_pre_attn_scalar=256,
            rope_scaling=None,
        ),
        {"block_size": 32768, "norm_eps": 1e-6},
    ),
    "Gemma-3-270m": (
        lambda: transformers.Gemma3TextConfig(
            vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
            num_key_value_heads=1, head_dim=256, max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1e6,
            rope_local_base_freq=10000.0, sliding_window=512, query_pre_attn_scalar=256,
            layer_types=gemma3_layer_types(18),
        ),
        {},
    ),
    "Gemma-3-4b-it": (  # multimodal: the language model's settings sit in text_config, the rest are defaults
        lambda: transformers.Gemma3Config(
            text_config=dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, sliding_window=1024,
                             rope_scaling={"rope_type": "linear", "factor": 8.0})
        ),
        {"norm_eps": 1e-6, "vocab_size": 262208, "padded_vocab_size": 262208},
    ),
    "Qwen2.5-7B": (
        lambda: transformers.Qwen2Config(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1e6,
            sliding_window=131072, use_sliding_window=False, max_window_layers=28,
        ),
        {},
    ),
    "Qwen3-8B": (
        lambda: transformers.Qwen3Config(
            vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
            num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1e6,
            use_sliding_window=False, sliding_window=None, max_window_layers=36,
        ),
        {},
    ),
    "Qwen3-30B-A3B": (
        lambda: transformers.Qwen3MoeConfig(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
            num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
            max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1e6, num_experts=128, num_experts_per_tok=8,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        ),
        {},
    ),
    "OLMo-1B-hf": (
        lambda: transformers.OlmoConfig(
            vocab_size=50304, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16,
            num_key_value_heads=16, max_position_embeddings=2048, rope_theta=10000.0, clip_qkv=None,
        ),
        {},
    ),
    "OLMo-2-1124-7B": (
        lambda: transformers.Olmo2Config(
            vocab_size=100352, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=500000.0,
        ),
        {},
    ),
    "falcon-7b": (
        lambda: transformers.FalconConfig(
            vocab_size=65024, hidden_size=4544, num_hidden_layers=32, num_attention_heads=71, multi_query=True,
            parallel_attn=True, new_decoder_architecture=False, bias=False, alibi=False, layer_norm_epsilon=1e-5,
        ),
        {},
    ),
    "falcon-40b": (
        lambda: transformers.FalconConfig(
            vocab_size=65024, hidden_size=8192, num_hidden_layers=60, num_attention_heads=128, num_kv_heads=8,
            new_decoder_architecture=True, parallel_attn=True, bias=False, alibi=False, layer_norm_epsilon=1e-5,
        ),
        {},
    ),
    "stablelm-3b-4e1t": (
        lambda: transformers.StableLmConfig(
            vocab_size=50304, hidden_size=2560, intermediate_size=6912, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, partial_rotary_factor=0.25, rope_theta=10000, max_position_embeddings=4096,
            layer_norm_eps=1e-5, use_qkv_bias=False, use_parallel_residual=False, qk_layernorm=False,
        ),
        {},
    ),
}
# fmt: on


def architecture(config: Config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in LABELS}


def assert_matches_registry(got: Config, name: str, known: dict) -> None:
    expected = {**architecture(Config.from_name(name)), **known}
    mine = architecture(got)
    assert {k: mine[k] for k in expected if mine[k] != expected[k]} == {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_published_config_maps_to_registry_entry(name):
    build, known = CASES[name]
    hf = build().to_dict()
    got = config_from_hf(hf)
    assert_matches_registry(got, name, known)
    # without a name in the config, a registered model of the same architecture lends its name
    if got.name:
        assert architecture(Config.from_name(got.name)) == architecture(Config.from_name(name))
    # with the repo id the published config.json carries, the name is exact
    repo = Config.from_name(name).hf_repo_id
    named = config_from_hf({**hf, "_name_or_path": repo})
    assert named.name == name and named.hf_config == name_to_config()[name]["hf_config"]
    assert_matches_registry(named, name, known)


def test_architecture_match_picks_the_registered_name():
    got = config_from_hf(CASES["Qwen3-30B-A3B"][0]().to_dict())
    assert got.name in {"Qwen3-30B-A3B", "Qwen3-30B-A3B-Base"}
    assert got.hf_config["org"] == "Qwen"
    got = config_from_hf(CASES["Gemma-3-1b-it"][0]().to_dict())  # loose: block_size / norm_eps differ
    assert got.name == "Gemma-3-1b-it" and got.block_size == 32768 and got.norm_eps == 1e-6


@pytest.mark.parametrize(
    "file, name",
    [
        ("SmolLM2-135M-Instruct.hf-config.json", "SmolLM2-135M-Instruct"),
        ("gemma-3-270m.hf-config.json", "Gemma-3-270m"),
    ],
)
def test_real_reference_configs(file, name, tmp_path):
    path = REFERENCE / file
    for source in (path, json.loads(path.read_text())):
        got = config_from_hf(source)
        assert architecture(got) == architecture(Config.from_name(name))
        # base and instruct variants share an architecture; either registered name is right
        assert architecture(Config.from_name(got.name)) == architecture(Config.from_name(name))
    # a checkpoint folder laid out as checkpoints/org/name names the model exactly
    repo = Config.from_name(name).hf_repo_id
    folder = tmp_path / repo
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(path.read_text())
    got = config_from_hf(folder)
    assert got.name == name and got.hf_repo_id == repo
    # or the caller names it
    got = config_from_hf(path, name=name)
    assert got.name == name and got.hf_repo_id == repo
    assert Config.from_checkpoint(folder).to_dict() == got.to_dict()
    assert Config.from_hf_config(folder).to_dict() == got.to_dict()


def test_symlinked_config_json_is_named_by_its_folder(tmp_path):
    """A folder of symlinks into a cache is named by its own path, not by where config.json points."""
    blobs = tmp_path / "cache" / "HuggingFaceTB" / "SmolLM2-135M"  # somewhere naming another model
    blobs.mkdir(parents=True)
    data = json.loads((REFERENCE / "SmolLM2-135M-Instruct.hf-config.json").read_text())
    data.pop("_name_or_path", None)
    (blobs / "config.json").write_text(json.dumps(data))
    folder = tmp_path / "checkpoints" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    folder.mkdir(parents=True)
    (folder / "config.json").symlink_to(blobs / "config.json")
    assert config_from_hf(folder).name == "SmolLM2-135M-Instruct"
    assert config_from_hf(folder / "config.json").name == "SmolLM2-135M-Instruct"


# -- the older config.json layout (rope_theta / rope_scaling / sliding_window_pattern, no layer_types) ------------


def test_older_layout_llama31():
    hf = dict(
        model_type="llama",
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        rope_theta=500000.0,
        attention_bias=False,
        mlp_bias=False,
        rope_scaling=dict(
            rope_type="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        ),
    )
    assert_matches_registry(config_from_hf(hf), "Llama-3.1-8B", {})


def test_older_layout_linear_rope_is_a_condense_ratio():
    hf = dict(
        model_type="llama",
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=32768,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        rope_scaling={"type": "linear", "factor": 8.0},
    )
    got = config_from_hf(hf)
    assert got.rope_condense_ratio == 8 and got.rope_adjustments is None
    assert_matches_registry(got, "LLaMA-2-7B-32K", {"block_size": 32768})


def test_older_layout_gemma3_and_gemma2():
    hf = dict(
        model_type="gemma3_text",
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_local_base_freq=10000.0,
        sliding_window=512,
        sliding_window_pattern=6,
        query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh",
        rope_scaling=None,
        _name_or_path="google/gemma-3-270m-it",
    )
    got = config_from_hf(hf)
    assert got.name == "Gemma-3-270m-it"
    assert_matches_registry(got, "Gemma-3-270m-it", {})
    hf = dict(
        model_type="gemma2",
        vocab_size=256000,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        query_pre_attn_scalar=256,
        sliding_window=4096,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        hidden_activation="gelu_pytorch_tanh",
    )
    assert_matches_registry(config_from_hf(hf), "Gemma-2-2b", {"norm_eps": 1e-6})


def test_older_layout_neox_and_first_falcon_uploads():
    hf = dict(
        model_type="gpt_neox",
        vocab_size=50304,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        rotary_pct=0.25,
        rotary_emb_base=10000,
        max_position_embeddings=2048,
        layer_norm_eps=1e-5,
        use_parallel_residual=True,
    )
    assert_matches_registry(config_from_hf(hf), "pythia-160m", {})
    hf = dict(
        model_type="RefinedWebModel",
        vocab_size=65024,
        hidden_size=4544,
        n_layer=32,
        n_head=71,
        multi_query=True,
        parallel_attn=True,
        bias=False,
        alibi=False,
        layer_norm_epsilon=1e-5,
    )
    assert_matches_registry(config_from_hf(hf), "falcon-7b", {})
    hf = dict(
        model_type="RefinedWeb",
        vocab_size=65024,
        hidden_size=8192,
        n_layer=60,
        n_head=128,
        n_head_kv=8,
        parallel_attn=True,
        bias=False,
        alibi=False,
        layer_norm_epsilon=1e-5,
    )
    assert_matches_registry(config_from_hf(hf), "falcon-40b", {})


def test_falcon_sequential_layout():
    hf = transformers.FalconConfig(num_hidden_layers=2, parallel_attn=False, multi_query=False).to_dict()
    got = config_from_hf(hf)
    assert not got.parallel_residual and not got.shared_attention_norm and got.n_query_groups == got.n_head


@pytest.mark.parametrize("cls", ["Qwen2Config", "Qwen3Config"])
def test_older_qwen_layout_slides_from_max_window_layers(cls):
    """Without layer_types (transformers < 4.53 wrote none), only the layers from max_window_layers on slide, and
    without use_sliding_window none does: what transformers rebuilds."""
    kwargs = dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    hf = getattr(transformers, cls)(use_sliding_window=True, sliding_window=8, max_window_layers=2, **kwargs)
    want = [int(t == "sliding_attention") for t in hf.layer_types]
    assert want == [0, 0, 1, 1]
    old = {k: v for k, v in hf.to_dict().items() if k != "layer_types"}
    got = config_from_hf({**old, "sliding_window": 8})
    assert got.sliding_window_size == 8 and got.sliding_window_indices == want
    old.pop("use_sliding_window")
    assert config_from_hf({**old, "sliding_window": 8}).sliding_window_size is None


# -- errors ---------------------------------------------------------------------------------------------------------


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_model_type_is_one_line_error():
    with pytest.raises(LitGPTError) as excinfo:
        config_from_hf({"model_type": "bert", "hidden_size": 8})
    message = _one_line(excinfo)
    assert "bert" in message and "llama" in message


def test_longrope_without_factors_is_one_line_error():
    hf = {**CASES["Phi-3-mini-4k-instruct"][0]().to_dict(), "rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}
    with pytest.raises(LitGPTError) as excinfo:
        config_from_hf(hf)
    assert "short_factor and long_factor" in _one_line(excinfo)


@pytest.mark.parametrize(
    "base, change, needle",
    [
        ("Qwen3-30B-A3B", {"norm_topk_prob": False}, "norm_topk_prob"),
        ("Qwen3-30B-A3B", {"decoder_sparse_step": 2}, "decoder_sparse_step"),
        ("Llama-2-7b-hf", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}, "yarn"),
        ("Llama-2-7b-hf", {"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}}, "dynamic"),
        ("Llama-2-7b-hf", {"attention_bias": True}, "attention_bias"),
        ("Llama-2-7b-hf", {"hidden_act": "gelu"}, "gelu"),
        ("OLMo-1B-hf", {"clip_qkv": 8.0}, "clip_qkv"),
        ("falcon-7b", {"alibi": True}, "alibi"),
        ("stablelm-3b-4e1t", {"qk_layernorm": True}, "qk_layernorm"),
        ("Gemma-2-2b", {"layer_types": ["chunked_attention"] * 26}, "chunked_attention"),
    ],
)
def test_unsupported_settings_say_what(base, change, needle):
    hf = {**CASES[base][0]().to_dict(), **change}
    with pytest.raises(LitGPTError) as excinfo:
        config_from_hf(hf)
    message = _one_line(excinfo)
    assert needle in message and "not supported" in message


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(LitGPTError, match="does not exist"):
        config_from_hf(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LitGPTError, match="not valid JSON"):
        config_from_hf(tmp_path)


def test_model_type_from_architectures_and_overrides():
    hf = CASES["Llama-2-7b-hf"][0]().to_dict()
    del hf["model_type"]
    hf["architectures"] = ["LlamaForCausalLM"]
    got = config_from_hf(hf, block_size=128, n_layer=2)
    assert got.block_size == 128 and got.n_layer == 2 and got.n_embd == 4096
    with pytest.raises(LitGPTError, match="n_layers"):
        config_from_hf(hf, n_layers=2)


def test_unregistered_architecture_keeps_its_own_name():
    hf = transformers.LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    ).to_dict()
    assert config_from_hf(hf).name == ""
    got = config_from_hf({**hf, "_name_or_path": "someone/tiny-llama-test"})
    assert got.name == "tiny-llama-test" and got.hf_config == {"org": "someone", "name": "tiny-llama-test"}
    assert got.vocab_size == got.padded_vocab_size == 1000 and got.n_query_groups == 2 and got.head_size == 16


def test_first_gemma_uploads_say_gelu_but_mean_tanh():
    hf = CASES["Gemma-2b"][0]().to_dict()
    del hf["hidden_activation"]
    assert config_from_hf(hf).gelu_approximate == "tanh"


def test_malformed_rope_parameters_are_a_litgpt_error():
    hf = {**CASES["Llama-3.1-8B"][0]().to_dict(), "rope_parameters": {"rope_type": "llama3", "factor": 8.0}}
    with pytest.raises(LitGPTError, match="cannot read config.json"):
        config_from_hf(hf)
