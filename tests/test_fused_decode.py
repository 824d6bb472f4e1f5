"""The one-call C decode step (litgpt/kernels/step.c via fused.py) against the PyTorch forward on the same weights.

PyTorch's forward is itself checked against transformers (test_convert.py, test_real_generation.py, which now
decodes through the fused step), so agreement here carries that parity over to every architecture listed."""

import pytest
import torch

from litgpt import kernels
from litgpt.generation import generate
from litgpt.kernels.fused import MAX_BATCH, fused_decoder
from litgpt.quantize import quantize_model
from tests.test_model import tiny

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs an x86-64 CPU with AVX2 and a C compiler")

COVERED = {
    "SmolLM2-135M": dict(n_layer=2, n_query_groups=2),  # GQA
    "Llama-3.1-8B": dict(n_layer=2, n_query_groups=2),  # frequency-dependent RoPE scaling
    "Mistral-7B-v0.1": dict(
        n_layer=2, n_query_groups=1, sliding_window_size=5, sliding_window_indices=[1, 1]
    ),  # every layer windowed
    "Gemma-2-2b": dict(n_layer=2, n_query_groups=2, sliding_window_size=5, sliding_window_indices=[1, 0]),
    "gemma-3-270m": dict(
        n_layer=3, n_query_groups=1, sliding_window_size=5, sliding_window_indices=[1, 1, 0], rope_indices=[1, 1, 0]
    ),
    "Qwen2.5-0.5B": dict(n_layer=2, n_query_groups=2),  # biased q/k/v
    "Qwen3-8B": dict(n_layer=2, n_query_groups=2),  # per-head q/k norms
    "OLMo-2-1124-7B": dict(n_layer=2, n_query_groups=4),  # q/k norms over all heads, post norms only
    "phi-4-mini-instruct": dict(n_layer=2, n_query_groups=2, sliding_window_indices=[1, 1]),  # partial rotary
}
NOT_COVERED = {
    "pythia-14m": dict(n_layer=2),  # LayerNorm, parallel residual
    "Mixtral-8x7B-v0.1": dict(n_layer=2, n_query_groups=2, n_expert=4, n_expert_per_token=2),
}


def prepared(name: str, overrides: dict, weights: str):
    model = tiny(name, **overrides)
    if weights == "bf16":
        model = model.to(torch.bfloat16)
        kernels.use_decode_kernels(model)  # bfloat16 weights, float32 activations and cache
    elif weights in ("int8", "int4"):
        quantize_model(model, weights, group_size=32)
    return model


def decode_both_ways(model, prompt: torch.Tensor, tokens: torch.Tensor):
    """Logits of each step after a PyTorch prefill: (PyTorch steps, fused steps), and the two final caches."""
    out, caches = [], []
    for use_fused in (False, True):
        model.set_kv_cache(1, max_seq_length=32)
        T = prompt.shape[1]
        with torch.inference_mode():
            model(prompt, torch.arange(T), input_pos_maxp1=T)
            fused = fused_decoder(model) if use_fused else None
            steps = []
            for i, token in enumerate(tokens.tolist()):
                pos = T + i
                if fused is None:
                    steps.append(model(torch.tensor([[token]]), torch.tensor([pos]), input_pos_maxp1=pos + 1)[:, -1])
                else:
                    steps.append(fused(token, pos))
        out.append(torch.cat(steps).float())
        caches.append([b.attn.kv_cache.k.clone() for b in model.transformer.h])
    return out, caches


def decode_padded(model, prompt, tokens, valid, use_fused: bool, garbage: float) -> torch.Tensor:
    """Logits of each step (steps, B, vocab) after a PyTorch prefill of left-padded ``prompt`` (``valid``: (B, S)),
    with ``garbage`` written into the padded positions of every cache first: PyTorch steps, or fused ones."""
    B, T = prompt.shape
    model.set_kv_cache(B, max_seq_length=valid.shape[1])
    with torch.inference_mode():
        model(prompt, torch.arange(T), input_pos_maxp1=T, key_padding_mask=valid)
        for block in model.transformer.h:  # what a padded position holds must not matter
            for t in (block.attn.kv_cache.k, block.attn.kv_cache.v):
                t.masked_fill_(~valid[:, None, :, None], garbage)
        fused = fused_decoder(model) if use_fused else None
        steps = []
        for i, row in enumerate(tokens.tolist()):
            pos = T + i
            if fused is None:
                steps.append(model(torch.tensor(row)[:, None], torch.tensor([pos]), input_pos_maxp1=pos + 1,
                                   key_padding_mask=valid)[:, -1].float())  # fmt: skip
            else:
                steps.append(fused(row, pos, valid=valid))
    return torch.stack(steps)


@pytest.mark.parametrize(
    "weights", ["f32", "bf16-avx512", "bf16-avx2", "int8-avx512", "int8-avx2", "int4-avx512", "int4-avx2"]
)
@pytest.mark.parametrize("name", sorted(COVERED))
def test_fused_step_matches_pytorch_forward(name, weights):
    if "-" in weights:  # each kernel this CPU can run
        weights, instructions = weights.split("-")
        if instructions == "avx512" and not kernels.native_bf16():
            pytest.skip("this CPU has no AVX512-BF16/VNNI; its AVX2 path is the one tested")
        kernels.allow_avx512(instructions == "avx512")
    try:
        check_fused_step(name, weights)
    finally:
        kernels.allow_avx512(True)


def check_fused_step(name, weights):
    model = prepared(name, COVERED[name], weights)
    torch.manual_seed(1)
    prompt, tokens = torch.randint(0, 97, (1, 6)), torch.randint(0, 97, (18,))  # past every sliding window above
    (reference, got), (ref_cache, got_cache) = decode_both_ways(model, prompt, tokens)
    if weights in ("f32", "bf16"):
        # bfloat16 weights: with AVX512-BF16 the kernels keep about 16 bits of x, summed in another order, and a
        # key or value in the bfloat16 cache may round one step (2^-8) apart, which the later steps carry on
        tolerance = 1e-5 if weights == "f32" else 2e-3
        torch.testing.assert_close(got, reference, atol=tolerance * reference.abs().max().item(), rtol=0)
        # every position written, the same way: a bfloat16 model's cache is bfloat16 (both paths round to nearest
        # even, so a value may land one step of 2^-8 away where the two float32 values straddle a midpoint)
        bf16_step = 2**-8 if weights == "bf16" else 0
        for a, b in zip(got_cache, ref_cache):
            assert a.dtype == b.dtype == (torch.bfloat16 if weights == "bf16" else torch.float32)
            torch.testing.assert_close(a, b, atol=tolerance * b.abs().max().item(), rtol=bf16_step)
            if bf16_step:  # rounded as PyTorch rounds (truncating would differ in about half the values)
                assert (a != b).float().mean() < 0.02
    else:
        # both round the activations to int8 blocks before each product; a float32 difference in the last bit can
        # move one rounding, which the next layers carry on (these tiny models, with weights scaled up, amplify it to
        # about 1% where it happens): compare the error over all values instead
        def error(a, b):
            return ((a - b).norm() / b.norm()).item()

        assert error(got, reference) < 2e-2
        assert max(error(a, b) for a, b in zip(got_cache, ref_cache)) < 2e-2


@pytest.mark.parametrize("name", sorted(NOT_COVERED))
def test_uncovered_architectures_keep_the_pytorch_step(name):
    model = tiny(name, **NOT_COVERED[name])
    model.set_kv_cache(1, max_seq_length=16)
    with torch.inference_mode():
        assert fused_decoder(model) is None


def test_fused_step_needs_a_float32_or_bfloat16_cache_of_at_most_eight_sequences():
    model = tiny("SmolLM2-135M", **COVERED["SmolLM2-135M"])
    with torch.inference_mode():
        model.set_kv_cache(MAX_BATCH + 1, max_seq_length=16)
        assert fused_decoder(model) is None  # a larger batch: the PyTorch step
        model.set_kv_cache(1, max_seq_length=16, dtype=torch.float16)
        assert fused_decoder(model) is None
        model.set_kv_cache(1, max_seq_length=16, dtype=torch.bfloat16)
        assert fused_decoder(model) is not None
        for batch in (1, 2, MAX_BATCH):
            model.set_kv_cache(batch, max_seq_length=16)
            fused = fused_decoder(model)
            assert fused is not None and fused.batch == batch
        with pytest.raises(ValueError, match="holds 8 sequences, got 2"):
            fused([1, 2], 3)
        with pytest.raises(ValueError, match="bool tensor"):
            fused([1] * MAX_BATCH, 3, valid=torch.ones(MAX_BATCH, 15, dtype=torch.bool))
    assert fused_decoder(model) is None  # gradients enabled for trainable parameters: never the fused step


@pytest.mark.parametrize("weights", ["f32", "bf16", "int8"])
@pytest.mark.parametrize("name", ["SmolLM2-135M", "gemma-3-270m", "Qwen2.5-0.5B"])
def test_batched_fused_step_matches_pytorch_forward_with_left_padding(name, weights):
    """A batch of three left-padded prompts: one C step for all rows, against the PyTorch step with the same
    key padding mask. Padded positions are never read (their cache entries are overwritten with garbage first)."""
    model = prepared(name, COVERED[name], weights)
    torch.manual_seed(2)
    B, T, S = 3, 7, 32
    prompt = torch.randint(0, 97, (B, T))
    valid = torch.ones(B, S, dtype=torch.bool)
    valid[1, :3] = False  # row 1: 3 pads, row 2: 5 pads
    valid[2, :5] = False
    tokens = torch.randint(0, 97, (14, B))  # past every sliding window
    runs = ((False, 1e4), (True, 1e4), (True, float("nan")))
    results = [decode_padded(model, prompt, tokens, valid, use_fused, garbage) for use_fused, garbage in runs]
    reference, got, got_nan = results
    assert torch.equal(got, got_nan)  # padded positions are skipped, not multiplied by zero
    if weights == "int8":  # int8 blocks of x round alike in both, up to float32 order effects
        assert ((got - reference).norm() / reference.norm()).item() < 1e-2
    else:  # a bfloat16 model's cache is bfloat16: one-step rounding flips, as in the test above
        tolerance = 1e-5 if weights == "f32" else 2e-3
        torch.testing.assert_close(got, reference, atol=tolerance * reference.abs().max().item(), rtol=0)


def test_generate_is_the_same_with_and_without_the_fused_step(monkeypatch):
    model = tiny("gemma-3-270m", **COVERED["gemma-3-270m"])
    prompt = torch.tensor([3, 17, 42, 5])
    torch.manual_seed(0)
    calls = []
    from litgpt.kernels import fused as fused_module

    original = fused_module.FusedDecoder.__call__
    monkeypatch.setattr(fused_module.FusedDecoder, "__call__", lambda self, *a: calls.append(a) or original(self, *a))
    for sampling in (dict(temperature=0.0), dict(temperature=0.8, top_k=20, top_p=0.9)):
        with_fused = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3), **sampling)
        assert len(calls) == 19
        calls.clear()
        monkeypatch.setenv("LITGPT_FUSED_DECODE", "0")
        without = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3), **sampling)
        monkeypatch.delenv("LITGPT_FUSED_DECODE")
        assert not calls
        assert torch.equal(with_fused, without)


@pytest.mark.parametrize("name", ["gemma-3-270m", "Gemma-2-2b"])
def test_batched_generation_is_the_same_with_and_without_the_fused_step(monkeypatch, name):
    """Left-padded batches decode through one fused step per token: the same tokens as the PyTorch step, greedy and
    sampled, with and without the output layer's int8 copy."""
    from litgpt.generation import SamplingParams, generate_batch
    from litgpt.kernels import fused as fused_module

    model = tiny(name, **COVERED[name]).to(torch.bfloat16)
    kernels.use_decode_kernels(model)
    prompts = [torch.tensor([3, 17, 42, 5]), torch.tensor([7, 1]), torch.tensor([9, 9, 9])]
    calls = []
    original = fused_module.FusedDecoder.__call__
    monkeypatch.setattr(fused_module.FusedDecoder, "__call__", lambda self, *a: calls.append(a) or original(self, *a))
    for params in (SamplingParams(temperature=0.0), SamplingParams(temperature=0.8, top_k=5)):
        runs = []
        for fused, screen in (("0", "1"), ("1", "1"), ("1", "0")):
            monkeypatch.setenv("LITGPT_FUSED_DECODE", fused)
            monkeypatch.setenv("LITGPT_HEAD_SCREEN", screen)
            calls.clear()
            runs.append(torch.stack(list(generate_batch(model, prompts, 12, params, generator=torch.Generator().manual_seed(4)))))
            assert len(calls) == (11 if fused == "1" else 0) and all(len(c[0]) == 3 for c in calls)
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])


@pytest.mark.parametrize("wrap", ["adapter", "adapter_v2", "lora"])
def test_finetuned_wrappers_keep_the_pytorch_step(wrap):
    """Adapter prefixes, adapter-v2 scales and unmerged LoRA are computed by their PyTorch modules, never skipped."""
    from litgpt.adapter import add_adapter, add_adapter_v2
    from litgpt.lora import LoRASettings, add_lora

    model = tiny("SmolLM2-135M", **COVERED["SmolLM2-135M"])
    if wrap == "adapter":
        add_adapter(model, prompt_length=4, start_layer=0)
    elif wrap == "adapter_v2":
        add_adapter_v2(model, prompt_length=4, start_layer=0)
    else:
        add_lora(model, LoRASettings(r=4, alpha=8))
    model.set_kv_cache(1, max_seq_length=16)
    with torch.inference_mode():
        assert fused_decoder(model) is None


def test_hooked_or_resized_models_keep_the_pytorch_step():
    """Hooks (tensor parallelism's all-reduce, pipeline placement) and layers whose shapes differ from the config
    (a tensor-parallel shard) are never handed to step.c."""
    model = tiny("SmolLM2-135M", **COVERED["SmolLM2-135M"])
    model.set_kv_cache(1, max_seq_length=16)
    with torch.inference_mode():
        handle = model.transformer.h[1].attn.proj.register_forward_hook(lambda module, args, out: out * 2)
        assert fused_decoder(model) is None
        handle.remove()
        assert fused_decoder(model) is not None
        mlp = model.transformer.h[0].mlp
        mlp.fc_1 = torch.nn.Linear(mlp.fc_1.in_features, mlp.fc_1.out_features // 2, bias=False)
        assert fused_decoder(model) is None


@pytest.mark.parametrize("name", ["SmolLM2-135M", "gemma-3-270m"])
def test_long_context_attention_in_chunks_matches_pytorch_forward(name):
    """Past a few dozen positions the fused step splits the cache into chunks read by different threads and combines
    their softmax sums (step.c's attend). Against the PyTorch step over 300 positions, left-padded so that whole
    chunks of one row are padding (NaN there), with 1, 2 and 8 threads (1 to 8 chunks: the thread count decides)."""
    model = prepared(name, {**COVERED[name], "block_size": 320}, "f32")
    torch.manual_seed(5)
    B, T, S = 2, 290, 320
    prompt = torch.randint(0, 97, (B, T))
    valid = torch.ones(B, S, dtype=torch.bool)
    valid[1, :150] = False
    tokens = torch.randint(0, 97, (6, B))
    threads = torch.get_num_threads()
    results = []
    try:
        for use_fused, count in ((False, threads), (True, 1), (True, 2), (True, 8)):
            torch.set_num_threads(count)  # padding is never read: NaN there for the fused step
            results.append(decode_padded(model, prompt, tokens, valid, use_fused, float("nan") if use_fused else 1e4))
    finally:
        torch.set_num_threads(threads)
    reference = results[0]
    assert torch.isfinite(reference).all()
    for got in results[1:]:
        torch.testing.assert_close(got, reference, atol=1e-5 * reference.abs().max().item(), rtol=0)
