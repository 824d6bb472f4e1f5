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


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["smollm2_hf_dir", "gemma3_hf_dir"])
def test_long_bfloat16_prefill_is_as_close_as_transformers_bfloat16(fixture, request, tmp_path):
    """A CPU prefill of ``PREFILL_ROWS`` tokens or more over bfloat16 weights runs in bfloat16 where the CPU has
    AVX512-BF16 (``GPT.compute_dtype``), its attention causal without a mask; Gemma's prompt outgrows its sliding
    window. Its last logits, and those of the decode step that reads its float32 cache, are no further from the
    float32 model than transformers' bfloat16 forward is."""
    from litgpt import kernels
    from litgpt.api import LLM
    from litgpt.convert_hf import convert_to_litgpt
    from litgpt.model import PREFILL_ROWS

    hf_dir = request.getfixturevalue(fixture)
    folder = _linked_copy(hf_dir, tmp_path / hf_dir.name)
    convert_to_litgpt(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    idx = tokenizer(" ".join([PROMPT] * 60), return_tensors="pt").input_ids
    T = idx.shape[1]
    assert T > 600  # beyond Gemma-3's window of 512
    with torch.no_grad():
        references = {}
        for dtype in (torch.float32, torch.bfloat16):
            hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype).eval()
            logits = hf_model(torch.cat([idx, idx[:, :1]], dim=1)).logits[0, -2:].float()
            references[dtype] = logits
            del hf_model

    llm = LLM.load(folder, distribute=None)
    llm.distribute(accelerator="cpu", precision="bf16-true")
    model = llm.model
    assert model.activation_dtype == torch.float32
    assert T >= PREFILL_ROWS
    model.set_kv_cache(1, max_seq_length=T + 1)
    with torch.inference_mode():
        assert (model.compute_dtype(T) is None) == kernels.native_bf16() and model.compute_dtype(1) == torch.float32
        prefill = model(idx, torch.arange(T), input_pos_maxp1=T)[0, -1]
        step = model(idx[:, :1], torch.tensor([T]), input_pos_maxp1=T + 1)[0, -1]
    ours = torch.stack([prefill, step])[:, : references[torch.float32].shape[-1]]
    assert ours.dtype == torch.float32
    truth = references[torch.float32]
    for row in range(2):
        ours_off = (ours[row] - truth[row]).abs().max().item()
        theirs_off = (references[torch.bfloat16][row] - truth[row]).abs().max().item()
        assert ours_off <= 1.5 * theirs_off, f"position {T - 1 + row}: {ours_off:.3g} vs transformers {theirs_off:.3g}"
