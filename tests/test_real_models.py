"""The two real models available offline (SmolLM2-135M-Instruct, Gemma-3-270M): convert the Hugging Face folder,
then compare float32 logits with transformers and 32 greedy tokens decoded through our KV cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

PROMPT = "The capital of France is Paris. The capital of Germany is"
NEW_TOKENS = 32


def _linked_copy(src: Path, dst: Path) -> Path:
    """The Hugging Face files of ``src`` linked into ``dst``, so converting does not write into the shared cache."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.name not in ("lit_model.pth", "model_config.yaml"):
            (dst / f.name).symlink_to(f.resolve())
    return dst


@torch.no_grad()
def _greedy(model, prompt: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding through the static KV cache: prefill the prompt, then one token per step."""
    T = prompt.shape[1]
    model.set_kv_cache(batch_size=1, max_seq_length=T + n)
    logits = model(prompt, torch.arange(T))
    out = []
    for step in range(n):
        token = logits[0, -1].argmax()
        out.append(int(token))
        logits = model(token.view(1, 1), torch.tensor([T + step]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_hf_dir", "gemma3_hf_dir"])
def test_real_model_matches_transformers(fixture, request, tmp_path):
    from litgpt.checkpoint import load_checkpoint
    from litgpt.config import Config
    from litgpt.convert_hf import convert_to_litgpt
    from litgpt.model import GPT

    hf_dir = request.getfixturevalue(fixture)
    folder = _linked_copy(hf_dir, tmp_path / hf_dir.name)
    convert_to_litgpt(folder)
    config = Config.from_checkpoint(folder)

    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    idx = tokenizer(PROMPT, return_tensors="pt").input_ids
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = hf_model(idx).logits
    hf_tokens = hf_model.generate(
        idx, attention_mask=torch.ones_like(idx), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS
    )[0, idx.shape[1] :].tolist()
    del hf_model

    model = GPT(config)
    load_checkpoint(model, folder / "lit_model.pth")
    model.eval()
    with torch.no_grad():
        ours = model(idx)[..., : expected.shape[-1]]
    diff = (ours - expected).abs().max().item()
    assert diff < 1e-4 * expected.abs().max().item(), f"max abs diff {diff:.3g}, max |logit| {expected.abs().max():.3g}"

    assert _greedy(model, idx, NEW_TOKENS) == hf_tokens
