"""litgpt.kernels.gemm: float32 products through oneDNN (forced on here, whatever this CPU prefers), against PyTorch's
own float32/float64 products, forward and backward, alone and inside a training step."""

import pytest
import torch
import torch.nn.functional as F

from litgpt.kernels import CPULinear, cpu_linear, gemm
from litgpt.loss import output_loss
from tests.test_model import tiny

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@pytest.fixture(params=["onednn", "default"])
def backend(request, monkeypatch):
    """The path forced one way or the other; ``calls`` counts oneDNN products."""
    monkeypatch.setenv("LITGPT_FP32_GEMM", request.param)
    gemm.preferred.cache_clear()
    calls = []
    product = gemm._product
    monkeypatch.setattr(gemm, "_product", lambda *a: calls.append(1) or product(*a))
    yield request.param, calls
    gemm.preferred.cache_clear()


def test_the_choice_follows_the_environment(backend):
    backend, _ = backend
    assert gemm.preferred() == (backend == "onednn")
    assert gemm.applies(torch.ones(2)) == (backend == "onednn")
    assert not gemm.applies(torch.ones(2, dtype=torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gemm.applies(torch.ones(2))


def test_an_unknown_choice_is_refused(monkeypatch):
    monkeypatch.setenv("LITGPT_FP32_GEMM", "mkl")
    gemm.preferred.cache_clear()
    try:
        with pytest.raises(ValueError, match="auto, onednn or default"):
            gemm.preferred()
    finally:
        gemm.preferred.cache_clear()


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48)])
@pytest.mark.parametrize("grads", ["all", "input only", "weight only"])
def test_linear_forward_and_backward(backend, with_bias, shape, grads):
    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=grads != "weight only")
    w = torch.randn(40, 48, requires_grad=grads != "input only")
    b = torch.randn(40, requires_grad=grads != "input only") if with_bias else None
    g = torch.randn(*shape[:-1], 40)
    backend, calls = backend
    out = gemm.linear(x, w, b)
    inputs = [t for t in (x, w, b) if t is not None and t.requires_grad]
    got = torch.autograd.grad(out, inputs, g)
    ref_inputs = [t.detach().double().requires_grad_(t.requires_grad) if t is not None else None for t in (x, w, b)]
    ref = F.linear(*ref_inputs)
    expected = torch.autograd.grad(ref, [t for t in ref_inputs if t is not None and t.requires_grad], g.double())
    torch.testing.assert_close(out.double(), ref, atol=1e-4, rtol=1e-5)
    for a, e in zip(got, expected):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), e, atol=1e-4, rtol=1e-5)
    assert len(calls) == (1 + len(inputs) - (with_bias and grads != "input only") if backend == "onednn" else 0)


def test_mm_of_strided_views(backend):
    torch.manual_seed(1)
    a, b = torch.randn(30, 20), torch.randn(25, 30)
    torch.testing.assert_close(gemm.mm(a.t(), b.t()), a.t() @ b.t(), atol=1e-5, rtol=1e-5)
    z, h = torch.randn(8, 300), torch.randn(8, 4)  # a large transposed left factor: computed as (h.T @ z).T
    got = gemm.mm(z.t(), h)
    assert got.is_contiguous()
    torch.testing.assert_close(got, z.t() @ h, atol=1e-5, rtol=1e-5)


def test_a_training_step_through_cpu_linear_matches_plain_pytorch(backend):
    """The whole model's loss and gradients, its linear layers switched to CPULinear, against the same model as built."""
    torch.manual_seed(2)
    plain = tiny("SmolLM2-135M", n_layer=2, n_query_groups=2).train()
    switched = tiny("SmolLM2-135M", n_layer=2, n_query_groups=2).train()
    assert cpu_linear(switched) == 2 * 5 + 1
    assert type(switched.lm_head) is CPULinear
    assert switched.state_dict().keys() == plain.state_dict().keys()
    ids = torch.randint(0, 97, (2, 12))
    losses = []
    for model in (plain, switched):
        loss = model(ids[:, :-1], targets=ids[:, 1:])
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), switched.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert bool(backend[1]) == (backend[0] == "onednn")


def test_the_fused_loss_takes_it_and_matches_cross_entropy(backend):
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 50, bias=True)
    h = torch.randn(2, 9, 16, requires_grad=True)
    t = torch.randint(0, 50, (2, 9))
    t[0, :3] = -100
    loss = output_loss(head, h, t)
    got = torch.autograd.grad(loss, (h, head.weight, head.bias))
    ref_loss = F.cross_entropy(head(h).flatten(0, 1), t.flatten())
    expected = torch.autograd.grad(ref_loss, (h, head.weight, head.bias))
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
    for a, e in zip(got, expected):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-5)
    assert len(backend[1]) == (3 if backend[0] == "onednn" else 0)  # logits, then the two gradient products
