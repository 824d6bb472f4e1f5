"""Hugging Face <-> litgpt conversion: logits parity with transformers for every supported family, in both
directions, KV-cache decoding, sharded and .bin checkpoints, safe loading, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError
from litgpt.model import GPT

transformers = pytest.importorskip("transformers")

SEQ = 12  # longer than every sliding window below
COMMON = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
GQA = dict(num_key_value_heads=2)

# family -> (transformers config class, its arguments beyond COMMON)
FAMILIES = {
    "pythia": ("GPTNeoXConfig", dict(rotary_pct=0.25, hidden_act="gelu", use_parallel_residual=True)),
    "llama-2": ("LlamaConfig", dict(GQA)),
    "llama-3.1": (
        "LlamaConfig",
        dict(
            GQA,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
    ),
    "mistral": ("MistralConfig", dict(GQA, sliding_window=4)),
    "mixtral": ("MixtralConfig", dict(GQA, num_local_experts=4, num_experts_per_tok=2)),
    "phi-1.5": ("PhiConfig", dict(partial_rotary_factor=0.5, hidden_act="gelu_new")),
    "phi-2": ("PhiConfig", dict(hidden_size=80, partial_rotary_factor=0.4, hidden_act="gelu_new")),
    "phi-3": ("Phi3Config", dict(GQA, sliding_window=6)),
    "gemma": ("GemmaConfig", dict(GQA, head_dim=16, hidden_act="gelu_pytorch_tanh")),
    "gemma-2": (
        "Gemma2Config",
        dict(
            GQA,
            num_hidden_layers=3,
            head_dim=16,
            sliding_window=4,
            query_pre_attn_scalar=24,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        ),
    ),
    "gemma-3": (
        "Gemma3TextConfig",
        dict(
            GQA,
            num_hidden_layers=3,
            head_dim=16,
            sliding_window=4,
            query_pre_attn_scalar=16,
            attn_logit_softcapping=50.0,  # in Gemma3TextConfig, but its attention never applies it
            final_logit_softcapping=30.0,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        ),
    ),
    "qwen2.5": ("Qwen2Config", dict(GQA)),
    "qwen3": ("Qwen3Config", dict(GQA, head_dim=16)),
    "qwen3-moe": (
        "Qwen3MoeConfig",
        dict(GQA, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True),
    ),
    "olmo": ("OlmoConfig", dict(GQA)),
    "olmo-2": ("Olmo2Config", dict(GQA)),
    "falcon-7b": ("FalconConfig", dict(multi_query=True, parallel_attn=True, new_decoder_architecture=False)),
    "falcon-40b": ("FalconConfig", dict(new_decoder_architecture=True, num_kv_heads=2, parallel_attn=True)),
    # Falcon2-11B: the new layout with one norm shared by attention and MLP, grouped-query attention
    "falcon2-11b": (
        "FalconConfig",
        dict(new_decoder_architecture=True, num_kv_heads=2, parallel_attn=True, num_ln_in_parallel_attn=1),
    ),
    # the old layout with a sequential residual: input_layernorm before attention, post_attention_layernorm before MLP
    "falcon-sequential": ("FalconConfig", dict(multi_query=True, parallel_attn=False, new_decoder_architecture=False)),
    "stablelm": ("StableLmConfig", dict(GQA, partial_rotary_factor=0.25)),
}


def hf_config(family: str):
    cls_name, extra = FAMILIES[family]
    kwargs = {**COMMON, **extra}
    if cls_name == "FalconConfig":
        kwargs["ffn_hidden_size"] = kwargs.pop("intermediate_size")
    return getattr(transformers, cls_name)(**kwargs)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (norms near 1, biases non-zero) so that every tensor matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * 0.1
            is_norm = p.ndim == 1 and "norm" in name and name.endswith("weight")
            p.copy_((1.0 + noise) if is_norm else noise * (2.0 if p.ndim == 1 else 1.0))


def make_hf(family: str, folder: Path, seed: int = 0):
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(family), attn_implementation="eager")
    model = model.float().eval()
    randomize(model, seed)
    model.save_pretrained(folder)
    return model


def tokens(seed: int = 1, n: int = SEQ) -> torch.Tensor:
    return torch.randint(3, COMMON["vocab_size"], (1, n), generator=torch.Generator().manual_seed(seed))


def load_lit(folder: Path) -> GPT:
    from litgpt.checkpoint import load_checkpoint

    model = GPT(Config.from_checkpoint(folder))
    load_checkpoint(model, folder / "lit_model.pth")
    return model.eval()


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff < tol, f"max abs diff {diff:.3g}"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_parity_both_directions(family, tmp_path):
    from litgpt.convert_hf import convert_from_litgpt, convert_to_litgpt

    hf_dir = tmp_path / f"tiny-{family}"
    hf_model = make_hf(family, hf_dir)
    idx = tokens()
    with torch.no_grad():
        expected = hf_model(idx).logits

    convert_to_litgpt(hf_dir)  # config from config.json, no model name
    assert not list(hf_dir.glob(".*.tmp"))
    lit = load_lit(hf_dir)
    with torch.no_grad():
        ours = lit(idx)
    assert_close(ours[..., : COMMON["vocab_size"]], expected)

    # decoding one token at a time through the KV cache equals the full forward, past any sliding window
    lit.set_kv_cache(batch_size=1, max_seq_length=SEQ + 4)
    with torch.no_grad():
        steps = torch.cat([lit(idx[:, t : t + 1], torch.tensor([t])) for t in range(SEQ)], dim=1)
    assert_close(steps, ours)

    # and back: transformers loads our export as is and gives the same logits
    out = tmp_path / "exported"
    convert_from_litgpt(hf_dir, out)
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").float().eval()
    assert type(back).__name__ == type(hf_model).__name__
    with torch.no_grad():
        assert_close(back(idx).logits, expected)


@pytest.mark.parametrize("transformers5_names", [False, True])
def test_multimodal_gemma3_converts_its_language_model(tmp_path, transformers5_names):
    """Gemma 3 4B-27B are image-text checkpoints: their language model converts (the vision tower is left out) and
    gives transformers' text-only logits; with a registered config of fewer embedding rows (gemma-3-4b-it: 262,144
    of 262,208, the rest image tokens) the rows past it are dropped."""
    from safetensors.torch import load_file, save_file

    from litgpt.convert_hf import convert_to_litgpt, find_weight_files, hf_to_lit_state

    text = {**COMMON, **FAMILIES["gemma-3"][1]}
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)  # fmt: skip
    config = transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    torch.manual_seed(0)
    hf_model = transformers.Gemma3ForConditionalGeneration(config).float().eval()
    randomize(hf_model)
    folder = tmp_path / "gemma-3-4b-it"
    hf_model.save_pretrained(folder)
    if transformers5_names:  # the names transformers 5 uses in memory: model.language_model.*, model.vision_tower.*
        state = load_file(folder / "model.safetensors")
        renamed = {k.replace("language_model.model.", "model.language_model."): v for k, v in state.items()}
        renamed = {("model." + k if k.startswith(("vision_tower.", "multi_modal_projector.")) else k): v
                   for k, v in renamed.items()}  # fmt: skip
        save_file(renamed, folder / "model.safetensors")
    assert any("vision_tower" in k for k in load_file(folder / "model.safetensors"))
    idx = tokens()
    with torch.no_grad():
        expected = hf_model(input_ids=idx).logits

    convert_to_litgpt(folder)
    lit = load_lit(folder)
    with torch.no_grad():
        assert_close(lit(idx)[..., : COMMON["vocab_size"]], expected)

    fewer = Config.from_checkpoint(folder)
    fewer.vocab_size = fewer.padded_vocab_size = 96
    state = hf_to_lit_state(find_weight_files(folder), fewer, "gemma3_text", text_only=True)
    assert state["transformer.wte.weight"].shape[0] == 96
    trimmed = GPT(fewer)
    trimmed.load_state_dict(state)
    with torch.no_grad():
        assert_close(trimmed.eval()(idx % 96), hf_model(input_ids=idx % 96).logits[..., :96])


def test_unreadable_config_json_falls_back_to_the_registered_config(tmp_path, monkeypatch, capsys):
    """A config.json asking for a setting litgpt cannot read (YaRN rope scaling here): a folder named after a
    registered model converts with that config, and otherwise the error says to pass --model_name."""
    from litgpt.convert_hf import convert_to_litgpt
    from litgpt.hf_config import config_from_hf

    folder = tmp_path / "tiny-llama-yarn"
    make_hf("llama-2", folder)
    hf = json.loads((folder / "config.json").read_text())
    hf["rope_parameters"] = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}
    (folder / "config.json").write_text(json.dumps(hf))
    with pytest.raises(LitGPTError, match="yarn.*--model_name"):
        convert_to_litgpt(folder)

    registered = folder.rename(tmp_path / "Phi-3.5-mini-instruct")
    tiny = config_from_hf(hf_config("llama-2").to_dict(), name=registered.name)
    real_from_name = Config.from_name
    monkeypatch.setattr(
        Config, "from_name", lambda name, **kw: tiny if name == registered.name else real_from_name(name, **kw)
    )
    convert_to_litgpt(registered)
    assert "using the registered config of Phi-3.5-mini-instruct" in capsys.readouterr().err
    assert Config.from_checkpoint(registered).name == "Phi-3.5-mini-instruct"


def test_phi3_exports_under_its_own_architecture_without_config_json(tmp_path):
    """Without the original config.json the family is inferred from the Config."""
    from litgpt.convert_hf import hf_model_type

    config = Config.from_name("Phi-3-mini-4k-instruct", n_layer=1, n_embd=64, n_head=4, n_query_groups=4,
                              head_size=16, intermediate_size=96, padded_vocab_size=128, vocab_size=128,
                              sliding_window_indices=None)  # fmt: skip
    assert hf_model_type(config) == "phi3"
    model = _save_lit(config, tmp_path / "lit")
    assert_exports_as(tmp_path / "lit", tmp_path / "hf", model, "Phi3ForCausalLM")


def assert_exports_as(ckpt: Path, out: Path, model: GPT, architecture: str) -> None:
    """`convert_from_litgpt` writes a folder transformers loads as ``architecture``, with the model's logits."""
    from litgpt.convert_hf import convert_from_litgpt

    convert_from_litgpt(ckpt, out)
    back = transformers.AutoModelForCausalLM.from_pretrained(out).float().eval()
    assert type(back).__name__ == architecture
    idx = tokens(n=6)
    with torch.no_grad():
        assert_close(back(idx).logits, model.eval()(idx))


def test_a_config_json_of_another_model_is_neither_copied_nor_trusted(tmp_path):
    """Pretraining with another model's tokenizer folder copied its config.json (SmolLM2's llama) next to a
    GPT-NeoX: convert_from_litgpt then read the family from it and refused the weights. Such a file is no longer
    copied into training outputs, and the export ignores one that does not describe the model."""
    from litgpt.training import copy_checkpoint_files

    config = Config.from_name("pythia-14m", n_layer=2, padded_vocab_size=128, vocab_size=128)
    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    foreign = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30, "vocab_size": 49152}
    (tokenizer_dir / "config.json").write_text(json.dumps(foreign))
    (tokenizer_dir / "tokenizer_config.json").write_text("{}")
    ckpt = tmp_path / "final"
    model = _save_lit(config, ckpt)
    copy_checkpoint_files(tokenizer_dir, ckpt, config)
    assert sorted(f.name for f in ckpt.iterdir()) == ["lit_model.pth", "model_config.yaml", "tokenizer_config.json"]
    (ckpt / "config.json").write_text(json.dumps(foreign))  # as checkpoints of earlier versions hold it
    assert_exports_as(ckpt, tmp_path / "hf", model, "GPTNeoXForCausalLM")


def _longrope_phi3(folder: Path):
    """A tiny Phi-3.5-like model: longrope with a pretraining length of 32 positions out of 256."""
    torch.manual_seed(0)
    config = transformers.Phi3Config(
        **{**COMMON, **GQA, "max_position_embeddings": 256}, original_max_position_embeddings=32, sliding_window=None,
        rope_parameters=dict(
            rope_type="longrope", rope_theta=10000.0, original_max_position_embeddings=32,
            short_factor=[1.0, 1.02, 1.03, 1.05, 1.1, 1.2, 1.4, 1.6], long_factor=[1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0],
        ),
    )  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float().eval()
    randomize(model)
    model.save_pretrained(folder)
    return model


def _greedy(model: GPT, prompt: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding through the KV cache: one prefill, then one token per step."""
    P = prompt.shape[1]
    model.set_kv_cache(batch_size=1, max_seq_length=P + n)
    out = []
    with torch.no_grad():
        logits = model(prompt, torch.arange(P), input_pos_maxp1=P)
        for t in range(n):
            out.append(int(logits[0, -1].argmax()))
            logits = model(torch.tensor([[out[-1]]]), torch.tensor([P + t]), input_pos_maxp1=P + t + 1)
    return out


def test_longrope_matches_transformers(tmp_path):
    """Phi-3.5 / Phi-4-mini's longrope: short factors up to the pretraining length, long ones past it (the whole
    sequence again when decoding crosses it, as transformers' generate does), cos/sin scaled; and exported back."""
    from litgpt.convert_hf import convert_from_litgpt, convert_to_litgpt

    hf = _longrope_phi3(tmp_path / "phi")
    convert_to_litgpt(tmp_path / "phi")
    lit = load_lit(tmp_path / "phi")
    adj = lit.config.rope_adjustments
    assert adj["original_max_seq_len"] == 32 and adj["attention_factor"] == pytest.approx((1 + 3 / 5) ** 0.5)
    for T in (20, 32, 33, 100):  # below, at and past the pretraining length
        idx = tokens(seed=T, n=T)
        with torch.no_grad():
            assert_close(lit(idx), hf(idx).logits)
    for P in (20, 40):  # a prompt that decoding carries past the pretraining length, and one already past it
        prompt = tokens(seed=P, n=P)
        with torch.no_grad():
            want = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False,
                               eos_token_id=None, pad_token_id=0)[0, P:].tolist()  # fmt: skip
        assert _greedy(lit, prompt, 24) == want
    convert_from_litgpt(tmp_path / "phi", tmp_path / "back")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back", attn_implementation="eager")
    idx = tokens(seed=3, n=100)
    with torch.no_grad():
        assert_close(back.float().eval()(idx).logits, hf(idx).logits)


def _save_lit(config: Config, folder: Path) -> GPT:
    torch.manual_seed(0)
    model = GPT(config)
    randomize(model)
    folder.mkdir()
    torch.save(model.state_dict(), folder / "lit_model.pth")
    config.save(folder / "model_config.yaml")
    return model.eval()


_TINY = dict(vocab_size=128, padded_vocab_size=128, n_layer=2, n_embd=64, n_head=4, head_size=16, block_size=64,
             intermediate_size=96, bias=False, parallel_residual=False, rotary_percentage=1.0)  # fmt: skip
_TINY_LLAMA = dict(_TINY, name="custom-llama", norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP")
_TINY_GEMMA = dict(_TINY, name="custom-gemma", norm_class_name="RMSNorm", mlp_class_name="GemmaMLP",
                   gelu_approximate="tanh", scale_embeddings=True)  # fmt: skip
_TINY_NEOX = dict(_TINY, name="custom-neox", norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP", bias=True,
                  parallel_residual=True, rotary_percentage=0.25)  # fmt: skip


@pytest.mark.parametrize(
    "base, change, expected",
    [
        # partial rotary on a LLaMA layout: LlamaForCausalLM rotates whole heads, Phi-3 does not
        (_TINY_LLAMA, dict(rotary_percentage=0.5), "Phi3ForCausalLM"),
        # LayerNorm + gated MLP, full rotary: StableLM, whose default partial_rotary_factor is 0.25, must be told 1.0
        (_TINY_LLAMA, dict(norm_class_name="LayerNorm"), "StableLmForCausalLM"),
        # Gemma 2 post norms without a sliding window: transformers still needs a window value
        (_TINY_GEMMA, dict(post_attention_norm=True, post_mlp_norm=True), "Gemma2ForCausalLM"),
    ],
)
def test_custom_export_reproduces_the_model(tmp_path, base, change, expected):
    from litgpt.convert_hf import convert_from_litgpt

    model = _save_lit(Config(**{**base, **change}), tmp_path / "lit")
    convert_from_litgpt(tmp_path / "lit", tmp_path / "hf")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="eager")
    assert type(back).__name__ == expected
    idx = tokens(n=20)
    with torch.no_grad():
        assert_close(back.float().eval()(idx).logits, model(idx))


@pytest.mark.parametrize(
    "base, change, field",
    [
        (_TINY_LLAMA, dict(parallel_residual=True), "parallel_residual"),
        (_TINY_LLAMA, dict(attention_scores_scalar=24), "attention_scores_scalar"),
        (_TINY_LLAMA, dict(scale_embeddings=True), "scale_embeddings"),
        (_TINY_LLAMA, dict(lm_head_bias=True), "lm_head_bias"),
        (_TINY_LLAMA, dict(final_logit_softcapping=30.0), "final_logit_softcapping"),
        (_TINY_LLAMA, dict(norm_1=False), "norm_1"),
        (_TINY_GEMMA, dict(norm_qk=True), "norm_qk"),
        (_TINY_GEMMA, dict(attention_logit_softcapping=50.0), "attention_logit_softcapping"),
        (_TINY_GEMMA, dict(rotary_percentage=0.5), "rotary_percentage"),
        (_TINY_GEMMA, dict(bias=True), "biases"),
        (_TINY_NEOX, dict(scale_embeddings=True), "scale_embeddings"),
        (_TINY_NEOX, dict(sliding_window_size=8, sliding_window_indices=[1, 0]), "sliding_window_size"),
        # Falcon's modelling code rotates whole heads
        (dict(_TINY_NEOX, name="my-falcon", bias=False, shared_attention_norm=True, n_query_groups=1), {},
         "rotary_percentage"),
    ],
)  # fmt: skip
def test_export_refuses_what_the_family_cannot_express(tmp_path, base, change, field):
    """An export that transformers would load as another model (other logits) is refused, naming the setting."""
    from litgpt.convert_hf import convert_from_litgpt

    _save_lit(Config(**{**base, **change}), tmp_path / "lit")
    with pytest.raises(LitGPTError, match=field) as excinfo:
        convert_from_litgpt(tmp_path / "lit", tmp_path / "hf")
    assert "\n" not in str(excinfo.value)


def test_stacked_expert_tensors_are_read(tmp_path):
    """transformers 5 keeps a layer's experts in one tensor in memory; a state dict saved as is must convert too."""
    from safetensors.torch import save_file

    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path / "tiny-mixtral-raw"
    hf_model = make_hf("mixtral", folder)
    state = hf_model.state_dict()
    assert any(k.endswith("experts.gate_up_proj") for k in state)
    (folder / "model.safetensors").unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    convert_to_litgpt(folder)
    idx = tokens()
    with torch.no_grad():
        assert_close(load_lit(folder)(idx)[..., :128], hf_model(idx).logits)


def _tracking_loader(monkeypatch):
    """Count the bytes of Hugging Face tensors alive (via weak references) while converting."""
    import litgpt.convert_hf as convert_hf

    live = {"now": 0, "count": 0}
    original = convert_hf.iter_hf_tensors

    def release(nbytes):
        live["now"] -= nbytes

    def tracked(files):
        for name, tensor in original(files):
            live["now"] += tensor.numel() * tensor.element_size()
            live["count"] += 1
            weakref.finalize(tensor, release, tensor.numel() * tensor.element_size())
            yield name, tensor
            del tensor

    monkeypatch.setattr(convert_hf, "iter_hf_tensors", tracked)
    return live


def test_sharded_checkpoint_converts_and_releases_tensors(tmp_path, monkeypatch):
    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path / "tiny-llama-sharded"
    torch.manual_seed(0)
    config = hf_config("llama-2")
    config.num_hidden_layers = 4
    model = transformers.AutoModelForCausalLM.from_config(config).float().eval()
    randomize(model)
    model.save_pretrained(folder, max_shard_size="60KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) >= 3 and (folder / "model.safetensors.index.json").is_file()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    live = _tracking_loader(monkeypatch)
    convert_to_litgpt(folder)
    assert live["count"] == len(model.state_dict())
    assert live["now"] == 0, "source tensors are still alive after the conversion"

    saved = torch.load(folder / "lit_model.pth", weights_only=True, mmap=True)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved.values()}
    assert sum(storages.values()) == model_bytes  # exactly one copy: no tensor drags a larger storage along
    idx = tokens()
    with torch.no_grad():
        assert_close(load_lit(folder)(idx), model(idx).logits)


_MEASURED = """
import sys
import torch
from litgpt.config import Config
from litgpt.model import GPT

with torch.device("meta"):  # torch's one-off start-up allocations happen before the baseline
    GPT(Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

# VmHWM is this process's own peak (ru_maxrss would also count the parent's peak, inherited through fork)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak to the current RSS
before = status("VmRSS")
"""  # a subprocess script's start: what follows is measured from ``before``

_PEAK_SCRIPT = """
from litgpt.convert_hf import convert_to_litgpt
""" + _MEASURED + """
convert_to_litgpt(sys.argv[1])
print(before, status("VmHWM"), status("RssAnon"), status("RssFile"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sharded_conversion_peak_memory_is_one_model_copy(tmp_path):
    """A ~100 MB checkpoint in 4 shards converts with peak RSS growth near one model copy (a load-everything-then-
    convert approach needs two)."""
    from safetensors.torch import save_file

    n_layer, n_embd, inter, vocab = 4, 512, 1536, 16000
    folder = tmp_path / "llama-100mb"
    folder.mkdir()
    hf = dict(COMMON, vocab_size=vocab, hidden_size=n_embd, intermediate_size=inter, num_hidden_layers=n_layer,
              num_attention_heads=8, num_key_value_heads=8, model_type="llama", hidden_act="silu",
              rms_norm_eps=1e-5, architectures=["LlamaForCausalLM"])  # fmt: skip
    (folder / "config.json").write_text(json.dumps(hf))
    gen = torch.Generator().manual_seed(0)
    shapes = {
        "model.embed_tokens.weight": (vocab, n_embd),
        "lm_head.weight": (vocab, n_embd),
        "model.norm.weight": (n_embd,),
    }
    for i in range(n_layer):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{n}.weight"] = (n_embd, n_embd)
        shapes[p + "mlp.gate_proj.weight"] = shapes[p + "mlp.up_proj.weight"] = (inter, n_embd)
        shapes[p + "mlp.down_proj.weight"] = (n_embd, inter)
        shapes[p + "input_layernorm.weight"] = shapes[p + "post_attention_layernorm.weight"] = (n_embd,)
    names = list(shapes)
    groups = [names[k::4] for k in range(4)]
    weight_map = {}
    for k, group in enumerate(groups):
        file = f"model-{k + 1:05d}-of-00004.safetensors"
        save_file({n: torch.randn(shapes[n], generator=gen) for n in group}, folder / file)
        weight_map.update(dict.fromkeys(group, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model_bytes = sum(torch.Size(s).numel() * 4 for s in shapes.values())
    assert model_bytes > 90e6

    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    before, peak, anon, file = map(int, proc.stdout.split())
    growth = peak - before
    assert growth < 1.5 * model_bytes, (
        f"peak RSS grew from {before / 1e6:.0f} to {peak / 1e6:.0f} MB for a {model_bytes / 1e6:.0f} MB model "
        f"(at the end: {anon / 1e6:.0f} MB anonymous, {file / 1e6:.0f} MB file-backed)"
    )
    assert (folder / "lit_model.pth").stat().st_size >= model_bytes


_LOAD_PEAK_SCRIPT = """
import litgpt.checkpoint
from litgpt.loading import load_model

litgpt.checkpoint.MappedFile.CHUNK_BYTES = 1 << 22  # the embedding (33 MB) in slices
""" + _MEASURED + """
model = load_model(sys.argv[1], dtype=torch.bfloat16)
print(before, status("VmHWM"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_loading_in_another_dtype_holds_one_copy(tmp_path, monkeypatch):
    """A float32 checkpoint (memory-mapped) loaded in bfloat16: each float32 tensor's pages are let go once its
    bfloat16 copy exists, so the peak grows by about the bfloat16 model, not by it plus the whole float32 file.
    An output layer saved as the embedding it copies (one storage in the file) comes out right, and one copy."""
    from tests.finetune_helpers import make_checkpoint

    folder = make_checkpoint(
        tmp_path / "tied", tied=True, vocab_size=16000, padded_vocab_size=16000, n_embd=512, head_size=64, n_head=8,
        n_query_groups=8, intermediate_size=1536, n_layer=4,
    )  # fmt: skip
    state = torch.load(folder / "lit_model.pth")
    file_bytes = (folder / "lit_model.pth").stat().st_size
    assert file_bytes > 80e6

    from litgpt.checkpoint import MappedFile
    from litgpt.loading import load_model

    monkeypatch.setattr(MappedFile, "CHUNK_BYTES", 1 << 20)  # large tensors copied in slices
    model = load_model(folder, dtype=torch.bfloat16)
    for name, tensor in model.state_dict().items():
        if name in state:
            assert torch.equal(tensor, state[name].to(torch.bfloat16)), name
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # one copy, as in the file
    del model, state

    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_PEAK_SCRIPT, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    before, peak = map(int, proc.stdout.split())
    growth = peak - before  # bfloat16: half the file; 0.9x with the embedding resident twice, 1.5x without releases
    assert growth < 0.7 * file_bytes, f"peak RSS grew by {growth / 1e6:.0f} MB for a {file_bytes / 1e6:.0f} MB file"


def test_bin_checkpoint_and_dtype(tmp_path):
    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path / "tiny-qwen-bin"
    hf_model = make_hf("qwen2.5", folder)
    (folder / "model.safetensors").unlink()
    state = hf_model.state_dict()
    names, weight_map = list(state), {}
    for k in range(3):  # sharded .bin files with their index
        file = f"pytorch_model-{k + 1:05d}-of-00003.bin"
        torch.save({n: state[n] for n in names[k::3]}, folder / file)
        weight_map.update(dict.fromkeys(names[k::3], file))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    convert_to_litgpt(folder, dtype="bfloat16")
    state = torch.load(folder / "lit_model.pth", weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    lit = load_lit(folder).float()
    idx = tokens()
    with torch.no_grad():
        assert_close(lit(idx), hf_model(idx).logits, tol=0.1)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    from litgpt.checkpoint import load_state_dict
    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"model.embed_tokens.weight": torch.zeros(2, 2), "x": _Evil(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(LitGPTError, match="refusing to load"):
        load_state_dict(folder / "pytorch_model.bin")
    hf_config("llama-2").save_pretrained(folder)
    with pytest.raises(LitGPTError, match="refusing to load"):
        convert_to_litgpt(folder)
    assert not marker.exists()
    assert not (folder / "lit_model.pth").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litgpt", *args], capture_output=True, text=True, timeout=120, env={**os.environ}
    )


def _assert_one_line_failure(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    message = proc.stderr.strip()
    assert "Traceback" not in message, message
    last = message.splitlines()[-1]
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in last, last


def test_cli_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    proc = _cli("convert_to_litgpt", str(empty))
    _assert_one_line_failure(proc, "no weights")
    assert not (empty / "lit_model.pth").exists()

    # weights that do not fit the config: the error names the tensor and both shapes
    folder = tmp_path / "tiny-llama-mismatch"
    make_hf("llama-2", folder)
    hf = json.loads((folder / "config.json").read_text())
    hf["intermediate_size"] = 80
    (folder / "config.json").write_text(json.dumps(hf))
    proc = _cli("convert_to_litgpt", str(folder))
    _assert_one_line_failure(proc, "transformer.h.0.mlp.proj.weight", "(64, 96)", "(64, 80)")
    assert not (folder / "lit_model.pth").exists() and not list(folder.glob(".lit_model.pth*"))

    # a model_config.yaml with a field no Config has
    (folder / "config.json").unlink()
    (folder / "model_config.yaml").write_text("name: tiny\nn_layer: 2\nn_embd: 64\nnot_a_field: 3\n")
    proc = _cli("convert_to_litgpt", str(folder))
    _assert_one_line_failure(proc, "not_a_field")
    assert not (folder / "lit_model.pth").exists()


def test_unknown_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from litgpt.convert_hf import convert_to_litgpt

    folder = tmp_path / "tiny-llama-extra"
    make_hf("llama-2", folder)
    state = load_file(folder / "model.safetensors")
    state["model.layers.0.mystery.weight"] = torch.zeros(3)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(LitGPTError, match=r"model\.layers\.0\.mystery\.weight"):
        convert_to_litgpt(folder)
    assert not (folder / "lit_model.pth").exists()


def test_cli_round_trip(tmp_path):
    folder = tmp_path / "tiny-pythia-cli"
    make_hf("pythia", folder)
    (folder / "tokenizer_config.json").write_text("{}")
    proc = _cli("convert_to_litgpt", str(folder), "--debug_mode", "true")  # the established flag: says where each goes
    assert proc.returncode == 0, proc.stderr
    assert "gpt_neox.layers.0.attention.dense.weight -> transformer.h.0.attn.proj.weight" in proc.stderr
    assert (folder / "lit_model.pth").is_file() and (folder / "model_config.yaml").is_file()
    proc = _cli("convert_from_litgpt", str(folder), str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
    # a model_config.yaml edited away from the weights: refused (the export's config.json would not load)
    import yaml

    config = yaml.safe_load((folder / "model_config.yaml").read_text())
    (folder / "model_config.yaml").write_text(yaml.safe_dump({**config, "intermediate_size": 80}))
    proc = _cli("convert_from_litgpt", str(folder), str(tmp_path / "mismatch"))
    _assert_one_line_failure(proc, "mlp.proj.weight has shape", "model_config.yaml expects")
    assert not (tmp_path / "mismatch").exists()
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config))
    # an output path that is a file: one line that says so (it was only the system's "File exists: PATH")
    (tmp_path / "a-file").write_text("x")
    proc = _cli("convert_from_litgpt", str(folder), str(tmp_path / "a-file"))
    _assert_one_line_failure(proc, "a-file' is a file; choose another output folder")


def test_convert_pretrained_checkpoint_to_a_file_says_so(tmp_path):
    from litgpt.__main__ import main
    from tests.conftest import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path / "final")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit, match=r"a-file' is a file; choose another output folder$"):
        main(["convert_pretrained_checkpoint", str(checkpoint), str(tmp_path / "a-file")])
    assert (tmp_path / "a-file").read_text() == "x"


def test_load_checkpoint_errors(tmp_path):
    from litgpt.checkpoint import load_checkpoint, save_state_dict

    config = Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, padding_multiple=64, block_size=16)
    model = GPT(config)
    state = dict(model.state_dict())
    state.pop("transformer.ln_f.weight")
    state["extra.weight"] = torch.zeros(1)
    save_state_dict(state, tmp_path / "bad.pth")
    with pytest.raises(
        LitGPTError, match=r"missing tensor\(s\): transformer.ln_f.weight.*unexpected tensor\(s\): extra"
    ):
        load_checkpoint(GPT(config), tmp_path / "bad.pth")
    state = dict(model.state_dict())
    state["lm_head.weight"] = torch.zeros(3, 3)
    save_state_dict(state, tmp_path / "shape.safetensors")
    with pytest.raises(LitGPTError, match=r"lm_head.weight has shape \(3, 3\)"):
        load_checkpoint(GPT(config), tmp_path / "shape.safetensors")
    save_state_dict({"model": model.state_dict()}["model"], tmp_path / "ok.pth")
    load_checkpoint(GPT(config), tmp_path / "ok.pth")


def test_every_registered_model_maps_both_ways():
    """Every registry config has a Hugging Face family whose table places each of its tensors, in both directions,
    and a config.json can be written for it (names and shapes only: the model lives on the meta device)."""
    from litgpt.config import config_names, name_to_config
    from litgpt.convert_hf import _Assembler, hf_config_dict, hf_model_type, layout_for

    seen = {}
    for name in config_names():
        entry = dict(name_to_config()[name], n_layer=2)
        for key in ("sliding_window_indices", "rope_indices"):
            if entry.get(key) is not None:
                entry[key] = entry[key][:2]
        config = Config(**entry)
        model_type = hf_model_type(config)
        seen.setdefault(model_type, name)
        with torch.device("meta"):
            state = GPT(config).state_dict()
        to_hf = _Assembler(layout_for(model_type, config), config, source="lit")
        hf_state = {n: t for key, tensor in state.items() for n, t, _ in to_hf.add(key, tensor)}
        assert not to_hf.leftovers(), name
        to_lit = _Assembler(layout_for(model_type, config), config, source="hf")
        back = {n: t for key, tensor in hf_state.items() for n, t, _ in to_lit.add(key, tensor)}
        assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in state.items()}, name
        hf_config_dict(config, model_type)
    assert {"llama", "gpt_neox", "falcon", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "mixtral"} <= set(seen)


def test_gguf_path_goes_to_the_gguf_importer(tmp_path, monkeypatch):
    import litgpt.gguf_import as gguf_import
    from litgpt.convert_hf import convert_to_litgpt

    calls = []
    monkeypatch.setattr(gguf_import, "convert_gguf", lambda path, **kw: calls.append((path, kw)) or tmp_path)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    assert convert_to_litgpt(gguf) == tmp_path
    assert convert_to_litgpt(tmp_path) == tmp_path  # a folder whose only weights are one .gguf file
    assert [c[0] for c in calls] == [gguf, gguf] and calls[1][1]["checkpoint_dir"] == tmp_path
    with pytest.raises(LitGPTError, match="does not exist"):
        convert_to_litgpt(tmp_path / "missing.gguf")
