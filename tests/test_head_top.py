"""head.c: the top logits of an output layer from its int8 copy plus a few exact rows, against every logit computed
the usual way (gemv.c's full product, which test_kernels.py checks against PyTorch)."""

import pytest
import torch

from litgpt import kernels
from litgpt.generation import generate
from litgpt.kernels.fused import fused_decoder
from tests.test_fused_decode import COVERED, prepared
from tests.test_model import tiny

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs an x86-64 CPU with AVX2 and a C compiler")

def full(x, w, bias=None):
    y = kernels.gemv(kernels.FLOAT_KINDS[w.dtype], x[None], w)[0]
    return y if bias is None else y + bias


def check_top(got, ref, top):
    """The kept logits are bit-identical to the full ones, and the top ``top`` of both vectors agree."""
    assert got is not None, "screening gave up"
    kept = torch.isfinite(got)
    assert top <= kept.sum() <= got.numel() // 4
    assert torch.equal(got[kept], ref[kept])
    assert torch.equal(got.topk(top).values, ref.topk(top).values)
    assert got.argmax() == ref.argmax()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("top", [1, 7, 64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_top_logits_are_those_of_the_full_product(instruction_set, dtype, top, with_bias):
    torch.manual_seed(0)
    N, K = 4096, 96
    w = (torch.randn(N, K) * 0.05).to(dtype)
    bias = torch.randn(N) * 0.1 if with_bias else None
    screen = kernels.head_screen(w)
    for trial in range(5):
        x = torch.randn(K) * 3
        x[trial] = 40.0  # an outlier, as decode activations have
        check_top(kernels.head_top(x, w, screen, top, bias=bias), full(x, w, bias), top)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_several_rows_at_once_match_the_full_product_of_as_many_rows(instruction_set, dtype):
    """Each row keeps its own top; every kept value is the M-row product's (gemv.c's code for M rows)."""
    torch.manual_seed(6)
    N, K = 2048, 64
    w = (torch.randn(N, K) * 0.05).to(dtype)
    bias = torch.randn(N).to(dtype)
    screen = kernels.head_screen(w)
    for M in (2, 5, 8):
        x = torch.randn(M, K) * 3
        got = kernels.head_top(x, w, screen, 3, bias=bias)
        ref = kernels.gemv(kernels.FLOAT_KINDS[dtype], x, w) + bias
        assert got.shape == (M, N)
        for row in range(M):
            check_top(got[row], ref[row], 3)
    assert kernels.head_top(torch.randn(9, K), w, screen, 1) is None  # more rows than one kernel call takes


def test_near_ties_below_the_int8_resolution_are_decided_by_the_exact_rows(instruction_set):
    """Rows that differ from the best one by far less than an int8 step (and two exact copies of it) all become
    candidates; the exact pass picks the same row as the full product, the first of equal ones included."""
    torch.manual_seed(1)
    N, K = 2048, 64
    w = torch.randn(N, K) * 0.05
    x = torch.randn(K)
    best = x / x.norm() * 0.3
    w[100:300] = best + torch.randn(200, K) * 1e-5
    w[700] = w[1500] = w[100:300][(w[100:300] @ x).argmax()]
    screen = kernels.head_screen(w)
    got, ref = kernels.head_top(x, w, screen, 1), full(x, w)
    check_top(got, ref, 1)
    assert torch.isfinite(got).sum() >= 200
    got, ref = kernels.head_top(x, w, screen, 3), full(x, w)
    check_top(got, ref, 3)


@pytest.mark.parametrize("softcap", [30.0, 3.0])
def test_softcapped_top_logits(softcap):
    """A softcap is monotone: the same rows stay on top, and logits that the cap rounds together are all kept."""
    torch.manual_seed(2)
    N, K = 1024, 64
    w = torch.randn(N, K) * 0.2
    x = torch.randn(K) * 4
    screen = kernels.head_screen(w)
    got = kernels.head_top(x, w, screen, 5, softcap=softcap)
    raw = full(x, w)
    capped = torch.tanh(raw / softcap) * softcap
    kept = torch.isfinite(got)
    assert kept.sum() < N // 4
    torch.testing.assert_close(got[kept], capped[kept], rtol=1e-6, atol=1e-6)
    assert set(capped.topk(5).indices.tolist()) <= set(kept.nonzero().flatten().tolist())
    # a cap so tight that most logits round to it: screening gives up and the caller computes them all
    assert kernels.head_top(x, w, screen, 5, softcap=0.01) is None


def test_gives_up_where_screening_cannot_help():
    torch.manual_seed(3)
    w = torch.randn(256, 64)
    screen = kernels.head_screen(w)
    assert kernels.head_top(torch.zeros(64), w, screen, 1) is None  # no bound to work with
    same = w[:1].repeat(256, 1)
    assert kernels.head_top(torch.randn(64), same, kernels.head_screen(same), 1) is None  # every row ties
    odd = torch.randn(256, 48)  # K % 32 != 0
    assert kernels.head_top(torch.randn(48), odd, kernels.head_screen(odd), 1) is None


def test_head_screen_codes():
    torch.manual_seed(4)
    w = torch.randn(100, 64, dtype=torch.bfloat16)
    w[7] = 0
    q, s = kernels.head_screen(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float32 and s.shape == (100,)
    assert q.abs().amax(dim=1)[torch.arange(100) != 7].eq(127).all()
    assert q[7].eq(0).all() and s[7] == 0
    assert ((q.float() * s[:, None] - w.float()).abs() <= s[:, None] / 2 * 1.0001).all()


@pytest.mark.parametrize("weights", ["f32", "bf16"])
@pytest.mark.parametrize("name", ["SmolLM2-135M", "Gemma-2-2b", "gemma-3-270m", "Qwen2.5-0.5B"])
def test_fused_step_top_logits(name, weights):
    """Gemma-2's final softcap, Qwen's biases: the fused step with `top` keeps exactly the full step's top logits."""
    model = prepared(name, COVERED[name], weights)
    model.set_kv_cache(1, max_seq_length=32)
    torch.manual_seed(5)
    prompt = torch.randint(0, 97, (1, 6))
    with torch.inference_mode():
        model(prompt, torch.arange(6), input_pos_maxp1=6)
        fused = fused_decoder(model)
        assert fused._struct.screen_q
        token = 3
        for pos in range(6, 24):
            ref = fused(token, pos)[0]
            for top in (1, 4):
                got = fused(token, pos, top)[0]  # the same position again: the cache gets the same keys and values
                kept = torch.isfinite(got)
                assert torch.equal(got[kept], ref[kept])
                assert torch.equal(got.topk(top).values, ref.topk(top).values)
            token = int(ref.argmax())


def test_screen_is_rebuilt_when_the_head_changes_and_can_be_switched_off(monkeypatch):
    model = tiny("SmolLM2-135M", **COVERED["SmolLM2-135M"])
    model.set_kv_cache(1, max_seq_length=16)
    with torch.inference_mode():
        first = fused_decoder(model)._struct.screen_q
        assert fused_decoder(model)._struct.screen_q == first  # kept on the module
        with torch.no_grad():
            model.lm_head.weight.mul_(2)
        rebuilt = model.lm_head._litgpt_screen
        fused_decoder(model)
        assert model.lm_head._litgpt_screen is not rebuilt
        monkeypatch.setenv("LITGPT_HEAD_SCREEN", "0")
        assert not fused_decoder(model)._struct.screen_q


@pytest.mark.parametrize("name", ["gemma-3-270m", "Gemma-2-2b"])
def test_generate_is_the_same_with_and_without_the_screen(monkeypatch, name):
    model = tiny(name, **COVERED[name])
    prompt = torch.tensor([3, 17, 42, 5])
    for sampling in (dict(temperature=0.0), dict(temperature=0.8, top_k=20, top_p=0.9), dict(top_k=3)):
        screened = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3), **sampling)
        monkeypatch.setenv("LITGPT_HEAD_SCREEN", "0")
        plain = generate(model, prompt, 20, generator=torch.Generator().manual_seed(3), **sampling)
        monkeypatch.delenv("LITGPT_HEAD_SCREEN")
        assert torch.equal(screened, plain)


@pytest.mark.parametrize("name", ["pythia-14m", "Gemma-2-2b", "gemma-3-270m"])
def test_batched_generation_is_the_same_with_and_without_the_screen(monkeypatch, name):
    """The PyTorch step (pythia, which the fused step does not cover; the others with the fused step switched off)
    with the screened output layer, batched and alone: the tokens equal those of the unscreened step, greedy and
    sampled. (The fused step's own batches: tests/test_fused_decode.py.)"""
    from litgpt.generation import SamplingParams, generate_batch
    from litgpt.kernels import fused as fused_module

    monkeypatch.setenv("LITGPT_FUSED_DECODE", "0")

    overrides = COVERED.get(name, dict(n_layer=2))
    model = tiny(name, **overrides).to(torch.bfloat16)
    kernels.use_decode_kernels(model)
    prompts = [torch.tensor([3, 17, 42, 5]), torch.tensor([7, 1]), torch.tensor([9, 9, 9])]
    calls = []
    original = fused_module.ScreenedHead.__call__
    monkeypatch.setattr(fused_module.ScreenedHead, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    for batch in (prompts, prompts[:1]):
        for params in (SamplingParams(temperature=0.0), SamplingParams(temperature=0.8, top_k=5)):
            runs = []
            for switch in ("1", "0"):
                monkeypatch.setenv("LITGPT_HEAD_SCREEN", switch)
                g = torch.Generator().manual_seed(4)
                runs.append(torch.stack(list(generate_batch(model, batch, 12, params, generator=g))))
            assert torch.equal(runs[0], runs[1])
    assert calls  # the screened head ran

