"""Random-weight checkpoints of registry architectures: the same network for litgpt and transformers (what the
benchmarks' --random mode runs where the model files are missing)."""

import torch
from transformers import AutoModelForCausalLM

from litgpt.loading import load_model
from litgpt.reference import model_pair
from litgpt.tokenizer import Tokenizer


def test_random_model_pair_is_one_network(tmp_path):
    checkpoint, hf_dir = model_pair("smollm2", tmp_path, random=True)
    ours = load_model(checkpoint).eval()
    assert ours.config.name == "SmolLM2-135M-Instruct" and ours.config.n_layer == 30
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = Tokenizer(checkpoint).encode("What do llamas eat? 🦙")
    assert 8 < len(ids) and int(ids.max()) < 320  # the small byte-level tokenizer covers any text
    with torch.no_grad():
        torch.testing.assert_close(ours(ids[None]), theirs(ids[None]).logits, rtol=1e-4, atol=1e-4)
    weights = checkpoint / "lit_model.pth"
    before = weights.stat().st_mtime_ns
    assert model_pair("smollm2", tmp_path, random=True) == (checkpoint, hf_dir)  # written once, then reused
    assert weights.stat().st_mtime_ns == before
