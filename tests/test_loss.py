"""The training loss (litgpt.loss) against F.cross_entropy on full logits: values and gradients, every path."""

import pytest
import torch
import torch.nn.functional as F

from litgpt import kernels, loss
from litgpt.config import Config
from litgpt.lora import LoRASettings, add_lora, mark_only_lora_as_trainable
from litgpt.model import GPT
from litgpt.training import make_optimizer


@pytest.fixture(params=["kernel", "torch"])
def row_path(request, monkeypatch):
    """The C kernel where it is available, and PyTorch's path everywhere."""
    if request.param == "kernel" and not kernels.available():
        pytest.skip("the C kernels are not available on this machine (no compiler or no AVX2)")
    if request.param == "torch":
        monkeypatch.setattr(kernels, "cross_entropy_rows_", lambda logits, targets, scale: None)
    return request.param


def reference(head, hidden, targets, cap=None):
    logits = head(hidden).float()
    if cap is not None:
        logits = cap * torch.tanh(logits / cap)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def grads_of(head, hidden, targets, fn, scale):
    hidden = hidden.clone().requires_grad_()
    head.zero_grad(set_to_none=True)
    value = fn(hidden)
    (value * scale).backward()
    out = [value.detach(), hidden.grad, head.weight.grad] + ([head.bias.grad] if head.bias is not None else [])
    head.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab, bias", [(1003, False), (4096, True)])  # 1003: rows not a multiple of 8 wide
@pytest.mark.parametrize("scale", [1.0, 0.25])  # 0.25: the loss divided for gradient accumulation
def test_output_loss_matches_cross_entropy(dtype, vocab, bias, scale, row_path, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(loss, "CHUNK_BYTES", 40 * vocab * 4)  # several row chunks (the gradient accumulates)
    head = torch.nn.Linear(48, vocab, bias=bias).to(dtype)
    hidden = torch.randn(3, 50, 48, dtype=dtype) * 2
    targets = torch.randint(0, vocab, (3, 50))
    targets[0, :7] = -100  # a masked prompt
    targets[2, 30:] = -100  # padding
    ours = grads_of(head, hidden, targets, lambda h: loss.output_loss(head, h, targets), scale)
    theirs = grads_of(head, hidden, targets, lambda h: reference(head, h, targets), scale)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-3, rtol=2e-2)
    torch.testing.assert_close(ours[0], theirs[0], **tol)
    for a, b in zip(ours[1:], theirs[1:]):
        assert a.dtype == b.dtype == dtype
        torch.testing.assert_close(a.float(), b.float(), atol=tol["atol"] * b.abs().max().item(), rtol=tol["rtol"])


def test_frozen_head_gets_no_gradient_and_no_grad_mode_works():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300).requires_grad_(False)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    targets = torch.randint(0, 300, (2, 9))
    value = loss.output_loss(head, hidden, targets)
    value.backward()
    assert head.weight.grad is None and hidden.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(loss.output_loss(head, hidden, targets), reference(head, hidden, targets))


@pytest.mark.parametrize("autocast", [False, True], ids=["fused", "autocast"])  # autocast: bf16-mixed's path
def test_everything_ignored_gives_zero_loss(autocast):
    """A micro-batch whose every target is masked (a long prompt cut at max_seq_length) still backpropagates."""
    head = torch.nn.Linear(8, 20)
    hidden = torch.randn(1, 4, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss.output_loss(head, hidden, torch.full((1, 4), -100), project=head)
    value.backward()
    assert value.item() == 0.0 and hidden.grad.abs().sum() == 0


def test_kernel_refuses_out_of_range_targets():
    if not kernels.available():
        pytest.skip("the C kernels are not available on this machine (no compiler or no AVX2)")
    logits = torch.randn(3, 10)
    before = logits.clone()
    assert kernels.cross_entropy_rows_(logits, torch.tensor([1, 10, 2])) is None
    assert torch.equal(logits, before)  # nothing written


def test_softcapped_and_lora_heads_take_the_generic_path():
    """Heads the fused function cannot take (softcapping, LoRA on the head) still give the exact loss."""
    torch.manual_seed(0)
    config = Config(name="tiny", vocab_size=97, padded_vocab_size=97, n_layer=1, n_head=2, n_embd=16, block_size=32,
                    final_logit_softcapping=3.0)  # fmt: skip
    model = GPT(config)
    idx = torch.randint(0, 97, (2, 12))
    targets = torch.randint(0, 97, (2, 12))
    targets[:, :3] = -100
    expected = F.cross_entropy(model(idx).reshape(-1, 97), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(model(idx, targets=targets), expected)

    lora_model = GPT(Config(name="tiny", vocab_size=97, padded_vocab_size=97, n_layer=1, n_head=2, n_embd=16, block_size=32))
    add_lora(lora_model, LoRASettings(r=2, alpha=4, dropout=0.0, head=True))
    mark_only_lora_as_trainable(lora_model)
    torch.nn.init.normal_(lora_model.lm_head.lora_B)  # a head that differs from its base weight
    expected = F.cross_entropy(lora_model(idx).reshape(-1, 97), targets.reshape(-1), ignore_index=-100)
    got = lora_model(idx, targets=targets)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert lora_model.lm_head.lora_B.grad is not None


def test_model_loss_equals_loss_of_its_logits():
    torch.manual_seed(0)
    model = GPT(Config(name="tiny", vocab_size=211, padded_vocab_size=224, n_layer=2, n_head=4, n_embd=32, block_size=64))
    idx = torch.randint(0, 211, (3, 20))
    targets = torch.randint(0, 211, (3, 20))
    targets[1, 15:] = -100
    expected = F.cross_entropy(model(idx).reshape(-1, 224), targets.reshape(-1), ignore_index=-100)
    expected.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got = model(idx, targets=targets)
    got.backward()
    torch.testing.assert_close(got, expected)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[name], atol=1e-6, rtol=1e-4, msg=name)


def test_optimizers_are_fused_unless_told_otherwise():
    params = [torch.nn.Parameter(torch.randn(4))]
    assert make_optimizer("AdamW", params).defaults["fused"] is True
    assert not make_optimizer("AdamW", params, foreach=True).defaults["fused"]
    assert not make_optimizer({"class_path": "AdamW", "init_args": {"fused": False}}, params).defaults["fused"]
    assert "fused" not in make_optimizer("RMSprop", params).defaults  # a class without fused kernels is left as is


@pytest.fixture(params=["kernel", "torch"])
def attention_path(request, monkeypatch):
    """The softmax of the C kernels (kernels.attention) where available, and PyTorch's everywhere."""
    if request.param == "kernel" and not kernels.available():
        pytest.skip("the C kernels are not available on this machine (no compiler or no AVX2)")
    if request.param == "torch":
        monkeypatch.setattr(kernels, "attention", lambda *args: None)
    return request.param


@pytest.mark.parametrize("n_head, n_query_groups", [(4, 4), (6, 2), (4, 1)])
@pytest.mark.parametrize("window", [False, True], ids=["causal", "sliding"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_materialized_attention_matches_sdpa(n_head, n_query_groups, window, dtype, attention_path, monkeypatch):
    """The CPU training attention: outputs and gradients equal SDPA's (to bfloat16's rounding, or float32's)."""
    from litgpt import model as model_module

    taken = []
    if attention_path == "kernel":
        monkeypatch.setattr(
            kernels.AttentionFunction, "apply", lambda *a, f=kernels.AttentionFunction.apply: taken.append(1) or f(*a)
        )
    torch.manual_seed(0)
    q = torch.randn(2, n_head, 33, 16, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(2, n_query_groups, 33, 16, dtype=dtype, requires_grad=True) for _ in range(2))
    if dtype == torch.bfloat16:
        assert model_module.use_materialized_attention(q, k, v)
        with torch.no_grad():
            assert not model_module.use_materialized_attention(q, k, v)  # inference keeps SDPA
    grad_out = torch.randn(2, n_head, 33, 16, dtype=dtype)
    positions = torch.arange(33)
    mask = model_module.build_mask(positions, 33, None) & model_module.sliding_mask(positions, 33, 8) if window else None
    gqa = n_head != n_query_groups
    results = []
    for fn in (
        lambda: model_module.materialized_attention(q, k, v, 0.25, mask),
        lambda: F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, scale=0.25, enable_gqa=gqa
        ),
    ):
        out = fn()
        out.backward(grad_out.transpose(1, 2).contiguous().transpose(1, 2))  # as it arrives from the output layer
        results.append([out.detach().float()] + [t.grad.float() for t in (q, k, v)])
        q.grad = k.grad = v.grad = None
    assert len(taken) == (attention_path == "kernel")
    tol = 0.02 if dtype == torch.bfloat16 else 1e-5
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, atol=tol * theirs.abs().max().item(), rtol=tol)


def test_attention_kernel_reads_masks_as_ranges():
    positions = torch.arange(6)
    from litgpt import model as model_module

    lo, hi = kernels.visible_ranges(
        6, model_module.build_mask(positions, 6, None) & model_module.sliding_mask(positions, 6, 2)
    )
    assert lo.tolist() == [0, 0, 1, 2, 3, 4] and hi.tolist() == [1, 2, 3, 4, 5, 6]
    holes = torch.ones(6, 6, dtype=torch.bool)
    holes[4, 1] = False
    assert kernels.visible_ranges(6, holes) is None  # not one range per row: PyTorch's softmax takes it
    assert kernels.visible_ranges(6, torch.zeros(6, 6, dtype=torch.bool)) is None  # a row that sees nothing


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_activation_checkpointing_gives_the_same_step(dtype):
    """Recomputing the blocks in the backward pass (with LoRA dropout drawing random masks) changes nothing."""
    config = Config(name="tiny", vocab_size=97, padded_vocab_size=128, n_layer=2, n_head=4, n_query_groups=2,
                    n_embd=32, block_size=64)  # fmt: skip
    torch.manual_seed(0)
    model = GPT(config)
    add_lora(model, LoRASettings(r=4, alpha=8, dropout=0.2))
    mark_only_lora_as_trainable(model)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    model = model.to(dtype).train()
    idx, targets = torch.randint(0, 97, (2, 24)), torch.randint(0, 97, (2, 24))
    results = []
    for on in (False, True):
        model.activation_checkpointing = on
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        value = model(idx, targets=targets)
        value.backward()
        results.append([value.detach()] + [p.grad.clone() for p in model.parameters() if p.requires_grad])
    for plain, recomputed in zip(*results):
        torch.testing.assert_close(recomputed, plain, atol=0, rtol=0)


def test_repeated_backward_through_the_loss_scales_each_time_from_the_original():
    """The first backward scales the gradients the forward computed in place; later ones (retain_graph) must still
    give grad_out times the gradient of the mean, whatever came before."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 300)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    targets = torch.randint(0, 300, (2, 9))
    expected = torch.autograd.grad(reference(head, hidden, targets), [hidden, head.weight, head.bias])
    value = loss.output_loss(head, hidden, targets)
    for scale in (1.0, 0.25, 1.0, 3.0, 0.25):
        got = torch.autograd.grad(value * scale, [hidden, head.weight, head.bias], retain_graph=True)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e * scale, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    "arch",
    [
        dict(n_head=6, n_query_groups=2),  # grouped-query attention
        dict(n_head=4, n_query_groups=4, rotary_percentage=0.25, bias=True),  # partial rotation, a bias on qkv
    ],
    ids=["gqa", "partial-rope"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_qkv_heads_kernel_gives_the_same_training_step(arch, dtype, monkeypatch):
    """Splitting qkv into heads with rotary embeddings in one pass (kernels.qkv_heads) changes neither the loss
    nor any gradient."""
    if not kernels.available():
        pytest.skip("the C kernels are not available on this machine (no compiler or no AVX2)")
    torch.manual_seed(0)
    config = Config(name="tiny", vocab_size=97, padded_vocab_size=128, n_layer=2, n_embd=96, block_size=64, **arch)
    model = GPT(config).to(dtype)
    idx, targets = torch.randint(0, 97, (3, 20)), torch.randint(0, 97, (3, 20))
    taken = []
    monkeypatch.setattr(kernels.QKVHeadsFunction, "apply", lambda *a, f=kernels.QKVHeadsFunction.apply: taken.append(1) or f(*a))
    results = []
    for path in ("kernel", "torch"):
        if path == "torch":
            monkeypatch.setattr(kernels, "qkv_heads", lambda *args: None)
        model.zero_grad(set_to_none=True)
        value = model(idx, targets=targets)
        value.backward()
        results.append([value.detach()] + [p.grad.float() for p in model.parameters()])
    assert len(taken) == config.n_layer  # the kernel took every layer's heads in the first pass
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, atol=tol["atol"] * max(1.0, theirs.abs().max().item()), rtol=tol["rtol"])
