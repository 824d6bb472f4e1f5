"""Model mechanics that do not need a reference implementation: KV-cache decoding equals the full forward,
sliding windows, chunked lm_head, errors. (Parity with transformers lives in test_convert.py.)"""

import pytest
import torch

from litgpt import GPT, Config
from litgpt.errors import LitGPTError

TINY = dict(n_embd=64, n_head=4, n_query_groups=4, head_size=16, intermediate_size=96, padded_vocab_size=97, vocab_size=97, block_size=64)


def tiny(name: str, **overrides) -> GPT:
    config = Config.from_name(name, **{**TINY, **overrides})
    torch.manual_seed(0)
    model = GPT(config)
    model.init_weights()
    with torch.no_grad():  # larger weights make differences visible
        for p in model.parameters():
            p.mul_(3)
    return model.eval()


LAYOUTS = {
    "pythia-14m": dict(n_layer=2, n_query_groups=4),
    "phi-2": dict(n_layer=2, n_query_groups=4),
    "falcon-7b": dict(n_layer=2, n_query_groups=1),
    "Llama-3.1-8B": dict(n_layer=2, n_query_groups=2),
    "Mixtral-8x7B-v0.1": dict(n_layer=2, n_query_groups=2, n_expert=4, n_expert_per_token=2),
    "Gemma-2-2b": dict(n_layer=2, n_query_groups=2, sliding_window_size=5, sliding_window_indices=[1, 0]),
    "gemma-3-270m": dict(
        n_layer=3, n_query_groups=1, sliding_window_size=5, sliding_window_indices=[1, 1, 0], rope_indices=[1, 1, 0]
    ),
    "OLMo-2-1124-7B": dict(n_layer=2, n_query_groups=4),
    "Qwen3-8B": dict(n_layer=2, n_query_groups=2),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_kv_cache_decoding_matches_full_forward(name):
    model = tiny(name, **LAYOUTS[name])
    idx = torch.randint(0, 97, (2, 24))  # longer than every sliding window above
    with torch.no_grad():
        full = model(idx)
        model.set_kv_cache(batch_size=2, max_seq_length=32)
        steps = [model(idx[:, :6], torch.arange(6))]
        steps += [model(idx[:, t : t + 1], torch.tensor([t])) for t in range(6, 24)]
    scale = full.abs().max().item()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.parametrize("name", ["Llama-3.1-8B", "gemma-3-270m", "pythia-14m", "Qwen3-8B", "OLMo-2-1124-7B"])
def test_long_prefill_takes_the_fused_kernels_and_matches_pytorch(name, monkeypatch):
    """A prefill of PREFILL_ROWS tokens or more normalises and splits its heads (with rotary embeddings) in the CPU
    kernels, attends causally without a mask from position 0, and computes what the PyTorch expressions do; the
    decode steps after it read the same cache."""
    from litgpt import kernels
    from litgpt import model as model_module

    model = tiny(name, **{**LAYOUTS[name], "block_size": 256})
    idx = torch.randint(0, 97, (1, 200))
    calls = []
    for kernel in ("rms_norm", "qkv_heads", "qkv_heads_norm"):
        original = getattr(kernels, kernel)
        monkeypatch.setattr(kernels, kernel, lambda *a, _f=original, _k=kernel: calls.append(_k) or _f(*a))
    outputs = {}
    kernel_rows = model_module.PREFILL_ROWS
    for rows in (kernel_rows, 10**9):  # the kernels; the PyTorch path
        monkeypatch.setattr(model_module, "PREFILL_ROWS", rows)
        model.set_kv_cache(batch_size=1, max_seq_length=208)
        with torch.inference_mode():
            prefill = model(idx[:, :160], torch.arange(160), input_pos_maxp1=160)
            steps = [model(idx[:, t : t + 1], torch.tensor([t]), input_pos_maxp1=t + 1) for t in range(160, 200)]
        outputs[rows] = torch.cat([prefill, *steps], dim=1)
        if rows == kernel_rows and kernels.available():
            norm_qk, rms = model.config.norm_qk, model.config.norm_class_name == "RMSNorm"
            per_head = norm_qk and model.config.norm_qk_type != "olmo2"  # OLMo-2 normalises all heads at once
            assert ("qkv_heads" in calls) == (not norm_qk) and ("rms_norm" in calls) == rms
            assert ("qkv_heads_norm" in calls) == per_head
            calls.clear()
    assert not calls  # short inputs and the PyTorch path keep the PyTorch expressions
    kernel, reference = outputs.values()
    torch.testing.assert_close(kernel, reference, atol=1e-5 * reference.abs().max().item(), rtol=1e-4)


def test_sliding_window_changes_attention():
    windowed = tiny("Gemma-2-2b", n_layer=2, n_query_groups=2, sliding_window_size=3, sliding_window_indices=[1, 1])
    full = tiny("Gemma-2-2b", n_layer=2, n_query_groups=2, sliding_window_size=None, sliding_window_indices=None)
    full.load_state_dict(windowed.state_dict())
    idx = torch.randint(0, 97, (1, 12))
    with torch.no_grad():
        a, b = windowed(idx), full(idx)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # inside the window: identical
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3  # beyond it: different


def test_banded_attention_equals_one_masked_product(monkeypatch):
    """A long masked input is attended in chunks of queries over the keys they may see (sliding windows, a causal
    mask after a cached prefix): the same values as one masked product, through the model too."""
    import torch.nn.functional as F

    from litgpt import model as model_module
    from litgpt.model import BAND_ROWS, banded_attention, build_mask, sliding_mask

    torch.manual_seed(0)
    T = 2 * BAND_ROWS + 37
    q = torch.randn(2, 4, T, 16)
    for offset, window in ((0, 100), (50, 300), (50, None), (0, 1)):
        positions, S = torch.arange(offset, offset + T), offset + T
        k, v = torch.randn(2, 4, S, 16), torch.randn(2, 4, S, 16)
        mask = build_mask(positions, S, None)
        if window:
            mask = mask & sliding_mask(positions, S, window)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
        torch.testing.assert_close(banded_attention(q, k, v, mask, 0.25), expected, atol=1e-5, rtol=1e-5)
    model = tiny("gemma-3-270m", **{**LAYOUTS["gemma-3-270m"], "sliding_window_size": 64, "block_size": T})
    idx = torch.randint(0, 97, (1, T))
    calls = []
    monkeypatch.setattr(model_module, "banded_attention", lambda *a: calls.append(1) or banded_attention(*a))
    with torch.no_grad():
        banded = model(idx)
        assert len(calls) == 3  # every layer: two window layers, and without a cache the global one has a mask too
        monkeypatch.setattr(model_module, "BAND_ROWS", T)  # one masked product per layer
        torch.testing.assert_close(banded, model(idx), atol=1e-4, rtol=1e-4)
        assert len(calls) == 3


def test_chunked_lm_head_equals_full():
    model = tiny("Llama-3.1-8B", n_layer=1, n_query_groups=2)
    idx = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(model(idx, lm_head_chunk_size=4), dim=1), model(idx))


def test_left_padding_with_key_mask_matches_unpadded():
    model = tiny("Llama-3.1-8B", n_layer=2, n_query_groups=2)
    idx = torch.randint(0, 97, (1, 7))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), idx], dim=1)
    valid = torch.tensor([[False] * 3 + [True] * 7 + [True] * 6])
    with torch.no_grad():
        ref = model(idx)[:, -1]
        model.set_kv_cache(1, max_seq_length=16)
        out = model(padded, torch.arange(10), key_padding_mask=valid)[:, -1]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_errors_are_clear():
    model = tiny("pythia-14m", n_layer=1)
    with pytest.raises(LitGPTError, match="KV cache is not set"):
        model(torch.zeros(1, 2, dtype=torch.long), torch.arange(2))
    with pytest.raises(LitGPTError, match="exceeds the model's block_size"):
        model.max_seq_length = 10_000
    with pytest.raises(LitGPTError, match="longer than max_seq_length"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_init_weights_is_trainable_scale():
    model = GPT(Config.from_name("pythia-14m", **TINY, n_layer=2))
    model.init_weights()
    idx = torch.randint(0, 97, (2, 16))
    loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5  # near-uniform predictions at init


@pytest.mark.parametrize("name", ["pythia-14m", "phi-2", "falcon-7b"])
def test_layernorm_models_take_float32_activations_over_bfloat16_weights(name):
    """CPU decoding keeps bfloat16 weights with float32 activations (GPT.activation_dtype): LayerNorm must normalise
    float32 inputs with its bfloat16 parameters (PyTorch's refuses mixed dtypes)."""
    from litgpt import kernels

    model = tiny(name, **LAYOUTS.get(name, dict(n_layer=2)))
    x = torch.randint(0, 97, (1, 7))
    with torch.inference_mode():
        reference = model(x)
    model = model.to(torch.bfloat16)
    model.activation_dtype = torch.float32  # as kernels.use_decode_kernels sets it
    kernels.cpu_linear(model)
    with torch.inference_mode():
        out = model(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference, atol=0.05 * reference.abs().max().item(), rtol=0)
