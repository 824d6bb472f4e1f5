"""The fused decode kernels (litgpt/kernels) against plain PyTorch on the same weights."""

import pytest
import torch

from litgpt import kernels
from litgpt.quantize import Int4Linear, Int8Linear, quantize_int4, quantize_int8

pytestmark = pytest.mark.skipif(not kernels.available(), reason="needs an x86-64 CPU with AVX2 and a C compiler")


@pytest.mark.parametrize("rows", [1, 2, 8, 11])  # 11: more rows than one kernel call takes
@pytest.mark.parametrize("in_features", [576, 100, 13])  # 100 and 13: tails that are not a multiple of 8 or 16
def test_float_kernels_match_matmul(rows, in_features, instruction_set):
    torch.manual_seed(0)
    w, x = torch.randn(70, in_features), torch.randn(rows, in_features)
    torch.testing.assert_close(kernels.gemv("f32", x, w), x @ w.T, atol=1e-4, rtol=1e-5)
    wb = w.bfloat16()
    # with AVX512-BF16, x enters the products as two bfloat16 parts (about 16 bits of mantissa)
    atol = 5e-4 if kernels.native_bf16() else 1e-4
    torch.testing.assert_close(kernels.gemv("bf16", x, wb), x @ wb.float().T, atol=atol, rtol=1e-5)


def rounded_activations(x: torch.Tensor) -> torch.Tensor:
    """What the int8/int4 kernels multiply with: x rounded to int8 in blocks of 32, one scale per block."""
    blocks = x.view(x.shape[0], -1, 32)
    scale = blocks.abs().amax(-1, keepdim=True) / 127
    return (torch.round(blocks / scale.clamp(min=1e-30)).clamp(-127, 127) * scale).view_as(x)


@pytest.mark.parametrize("rows", [1, 5, 9])
def test_quantized_kernels_match_their_dequantized_weights(rows, instruction_set):
    torch.manual_seed(0)
    w, x = torch.randn(48, 96), torch.randn(rows, 96)
    xr = rounded_activations(x)
    assert 0 < (xr - x).abs().max() <= x.abs().max() / 254 + 1e-6  # half a step of the largest block
    q, scales = quantize_int8(w)
    dequantized8 = q.float() * scales[:, None]
    got8 = kernels.gemv("i8", x, q, scales.contiguous())
    torch.testing.assert_close(got8, xr @ dequantized8.T, atol=1e-4, rtol=1e-5)
    assert ((got8 - x @ dequantized8.T).norm() / (x @ dequantized8.T).norm()) < 0.01
    q4, s4, z4 = quantize_int4(w, 32, torch.float16)  # float32 scales and zeros holding float16 values
    dequantized4 = ((q4.float().view(48, -1, 32) - 8) * s4[..., None] + z4[..., None]).view(48, 96)
    got4 = kernels.gemv("i4", x, kernels.pack_i4(q4), s4.half(), z4.half())
    torch.testing.assert_close(got4, xr @ dequantized4.T, atol=1e-4, rtol=1e-5)
    assert ((got4 - x @ dequantized4.T).norm() / (x @ dequantized4.T).norm()) < 0.01
    assert torch.equal(kernels.unpack_i4(kernels.pack_i4(q4)), q4)


def test_quantized_kernels_refuse_blocks_and_scales_they_cannot_take():
    with pytest.raises(RuntimeError, match="divisible by 32"):
        kernels.gemv("i8", torch.randn(1, 40), torch.zeros(4, 40, dtype=torch.int8), torch.ones(4))
    codes = torch.zeros(4, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="float16 scales and zeros"):
        kernels.gemv("i4", torch.randn(1, 64), codes, torch.ones(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="float32 scales"):
        kernels.dequantize("i8", torch.zeros(4, 64, dtype=torch.int8), torch.ones(4, dtype=torch.bfloat16))


@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_layer_uses_the_kernel_for_decoding_and_dequantizes_for_prefill(group_size, instruction_set):
    torch.manual_seed(0)
    w = torch.randn(32, 128)
    layer = Int4Linear(w, group_size=group_size)
    assert layer.layout == "gemv"
    reference = layer.dequantize()
    assert (reference - w).abs().max() < 0.15 * (w.max() - w.min())  # its group's grid (quantize_int4 tests more)
    # the kernel (int8-rounded activations), then one dense product (bfloat16 with AVX512-BF16, else float32)
    prefill = 8e-3 if instruction_set == "avx512" else 1e-5
    for rows in (1, kernels.GEMV_ROWS + 3):
        x = torch.randn(rows, 128)
        expected = x @ reference.T
        assert (layer(x) - expected).norm() / expected.norm() < (0.01 if rows == 1 else prefill)


def test_int8_layer_kernel_matches_its_weights():
    torch.manual_seed(0)
    w, x = torch.randn(40, 64), torch.randn(2, 3, 64)
    layer = Int8Linear(w, bias=torch.randn(40))
    expected = rounded_activations(x.view(-1, 64)).view_as(x) @ layer.dequantize().T + layer.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_linear_is_a_drop_in_linear(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 16, bias=False)).to(dtype)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 64, dtype=dtype)
    with torch.no_grad():
        expected = model(x)
        assert kernels.use_decode_kernels(model) == 2
        assert all(type(m) is kernels.CPULinear for m in model)
        got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-2 if dtype == torch.bfloat16 else 1e-5, rtol=1e-2)
    assert model.state_dict().keys() == state.keys()
    # autograd still works (the layer falls back to F.linear when gradients are needed)
    model.float()
    model(torch.randn(2, 64)).sum().backward()
    assert model[0].weight.grad is not None


@pytest.mark.parametrize("kind", ["f32", "bf16", "i8", "i4"])
def test_inputs_beyond_kernel_rows_take_one_dense_product(kind, instruction_set, monkeypatch):
    """Up to kernel_rows(kind) rows go to the kernels, more to one dense product: 8 rows for bfloat16 and int8/int4
    weights where AVX512-BF16 makes a bfloat16 product faster, else 32."""
    from litgpt.quantize import Int4Linear, Int8Linear

    limit = kernels.kernel_rows(kind)
    assert limit == (kernels.MAX_ROWS if instruction_set == "avx512" and kind != "f32" else kernels.GEMV_ROWS)
    torch.manual_seed(0)
    w = torch.randn(48, 64)
    if kind in ("f32", "bf16"):
        dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[kind]
        layer = torch.nn.Linear(64, 48, bias=False).to(dtype)
        kernels.cpu_linear(layer)
    else:
        layer = Int8Linear(w) if kind == "i8" else Int4Linear(w)
    calls = []
    original = kernels.gemv
    monkeypatch.setattr(kernels, "gemv", lambda *a: calls.append(a[1].shape[0]) or original(*a))
    with torch.no_grad():
        for rows in (limit, limit + 1):
            layer(torch.randn(rows, 64))
    assert calls == [limit]


def test_kernel_is_one_custom_op_under_compile():
    torch.manual_seed(0)
    w = torch.randn(16, 64).bfloat16()

    def f(x):
        return kernels.gemv("bf16", x, w) * 2

    torch._dynamo.reset()
    kernels.register_for_compile()
    compiled = torch.compile(f, backend="eager", fullgraph=True)
    x = torch.randn(1, 64)
    torch.testing.assert_close(compiled(x), f(x))


@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
def test_bfloat16_weights_run_with_float32_activations(tmp_path, quantize):
    """On the CPU, LLM.distribute keeps bfloat16 weights (or bfloat16 embeddings and norms around int8/int4 layers)
    but computes in float32: closer to the float32 model than bfloat16 arithmetic is, with the same memory for
    weights (and the fused decode step of the kernels, which takes float32 activations)."""
    from litgpt.api import LLM
    from tests.conftest import build_tiny_checkpoint

    folder = build_tiny_checkpoint(tmp_path / "tiny")
    outputs = {}
    for precision in ("32-true", "bf16-true"):
        llm = LLM.load(folder, distribute=None)
        llm.distribute(accelerator="cpu", precision=precision, quantize=quantize)
        outputs[precision] = llm
    bf16 = outputs["bf16-true"].model
    assert bf16.activation_dtype == torch.float32 and bf16.lm_head.weight.dtype == torch.bfloat16
    assert bf16.transformer.wte.weight.dtype == torch.bfloat16
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        full = outputs["32-true"].model(ids)
        mixed = bf16(ids)
        bf16.activation_dtype = None  # plain bfloat16 arithmetic, for comparison
        plain = bf16(ids).float()
    assert mixed.dtype == torch.float32
    if quantize is None:  # (quantized, the codes of the two models differ: each quantizes its own weights)
        assert (mixed - full).abs().max() < (plain - full).abs().max()
    tokens = {p: llm.generate("hello", max_new_tokens=6, temperature=0) for p, llm in outputs.items()}
    assert isinstance(tokens["bf16-true"], str)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_dropout_masks(dtype):
    """The kernel's dropout: the drop rate is p (within 5 sigma), kept values are scaled like torch's, the same
    seed gives the same mask, the gradient is the mask, and eval mode changes nothing."""
    from litgpt.lora import Dropout

    p, n = 0.3, 1_000_001  # odd: the last element has no pair partner
    layer = Dropout(p)
    x = torch.ones(n, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    y = layer(x)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5
    assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / (1 - p), dtype=dtype).item()}
    torch.manual_seed(0)
    assert torch.equal(layer(x), y)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    layer.eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("unit_offset", [False, True])
def test_training_rms_norm_kernel_matches_torch(dtype, unit_offset, monkeypatch):
    """RMSNorm's training kernel: output, input and weight gradients equal the PyTorch expression's."""
    from litgpt.model import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(100, eps=1e-5, unit_offset=unit_offset)  # 100: not a multiple of the vector width
    torch.nn.init.normal_(norm.weight)
    norm = norm.to(dtype)
    x = torch.randn(3, 7, 100, dtype=dtype) * 3
    grad_out = torch.randn(3, 7, 100, dtype=dtype)
    results = []
    for use_kernel in (True, False):
        if not use_kernel:
            monkeypatch.setattr(kernels, "rms_norm", lambda *args: None)
        inp = x.clone().requires_grad_()
        out = norm(inp)
        out.backward(grad_out)
        results.append((out.detach(), inp.grad, norm.weight.grad))
        norm.weight.grad = None
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=0.02, rtol=0.02)
    for ours, theirs in zip(*results):
        assert ours.dtype == theirs.dtype == dtype
        torch.testing.assert_close(ours.float(), theirs.float(), **tol)


def float64_glu(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor, activation: str):
    """The gated unit and its two input gradients, computed in float64 from the same inputs."""
    import torch.nn.functional as F

    a64, b64 = (t.detach().double().requires_grad_() for t in (a, b))
    act = F.silu(a64) if activation == "silu" else F.gelu(a64, approximate="tanh")
    h = act * b64
    return (h.detach(), *torch.autograd.grad(h, (a64, b64), g.double()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
def test_gated_unit_kernel_is_as_exact_as_the_pytorch_expression(dtype, activation, instruction_set):
    """act(a) * b and its gradients (train.c), against float64: no further from it than PyTorch's own expression,
    element by element up to one rounding of the dtype (PyTorch rounds act(a) to the dtype before the product)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    shape = (3, 5, 1001)  # 15015 elements: work items of 4096, steps of 16 and 8, and a tail
    a = (torch.randn(shape) * 4).to(dtype).requires_grad_()
    a.data[0, 0, :4] = torch.tensor([0.0, -0.0, 100.0, -100.0])  # zero, and where exp under/overflows
    b = torch.randn(shape).to(dtype).requires_grad_()
    g = torch.randn(shape).to(dtype)
    h = kernels.glu(a, b, activation)
    assert h is not None and h.grad_fn.name() == "GLUFunctionBackward"
    ga, gb = torch.autograd.grad(h, (a, b), g)
    act = F.silu(a) if activation == "silu" else F.gelu(a, approximate="tanh")
    theirs = (act * b, *torch.autograd.grad(act * b, (a, b), g))
    eps = torch.finfo(dtype).eps
    for ours, pytorch, exact in zip((h, ga, gb), theirs, float64_glu(a, b, g, activation)):
        assert ours.dtype == dtype and ours.shape == shape
        err, their_err = (ours.detach().double() - exact).abs(), (pytorch.detach().double() - exact).abs()
        assert bool((err <= their_err + 2 * eps * exact.abs() + 1e-6).all())
        assert float(err.max()) <= 4 * eps * float(exact.abs().max())


def test_gated_mlps_take_the_kernel_where_it_computes_their_activation(monkeypatch):
    import torch.nn.functional as F

    from litgpt import Config
    from litgpt.model import GemmaMLP, LLaMAMLP

    taken = []
    glu = kernels.glu
    monkeypatch.setattr(kernels, "glu", lambda a, b, act: taken.append(glu(a, b, act)) or taken[-1])
    x = torch.randn(2, 3, 32, requires_grad=True)
    for approximate, cls, fused in (("none", LLaMAMLP, True), ("tanh", GemmaMLP, True), ("none", GemmaMLP, False)):
        mlp = cls(Config(n_embd=32, intermediate_size=64, bias=False, gelu_approximate=approximate))
        taken.clear()
        out = mlp(x)
        a = mlp.fc_1(x)
        act = F.silu(a) if cls is LLaMAMLP else F.gelu(a, approximate=approximate)
        torch.testing.assert_close(out, mlp.proj(act * mlp.fc_2(x)), atol=1e-6, rtol=1e-5)
        assert [t is not None for t in taken] == [fused]  # erf's GELU keeps PyTorch's expression


@pytest.mark.parametrize("name", ["gemma-3-270m", "Qwen3-8B"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_qkv_heads_norm_kernel_matches_the_pytorch_heads(name, dtype):
    """The per-head q/k RMSNorm, rotary embeddings and head layout of a long inference input in one C pass: what
    :meth:`CausalSelfAttention.heads` computes (bfloat16: the same roundings, a value one step apart at most where
    a float32 product lands on the other side of a rounding midpoint)."""
    from litgpt.model import PREFILL_ROWS
    from tests.test_model import LAYOUTS, tiny

    model = tiny(name, **{**LAYOUTS[name], "block_size": 512}).to(dtype)
    attn, cfg = model.transformer.h[0].attn, model.config
    with torch.no_grad():  # norm weights away from their initial values
        attn.norm_q.weight.normal_(0, 0.5), attn.norm_k.weight.normal_(0, 0.5)
    T = PREFILL_ROWS + 5
    qkv = torch.randn(2, T, (cfg.n_head + 2 * cfg.n_query_groups) * cfg.head_size).to(dtype)
    cos, sin = (t[model.rope_table_of[0], :T] for t in model._rope(torch.device("cpu")))
    with torch.inference_mode():
        fused, reference = attn.fused_heads(qkv, cos, sin), attn.heads(qkv, cos, sin)
    assert fused is not None
    for got, want in zip(fused, reference):
        assert got.shape == want.shape and got.is_contiguous() and got.dtype == dtype
        if dtype == torch.float32:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        else:
            torch.testing.assert_close(got.float(), want.float(), atol=1e-6, rtol=2**-7)
            assert (got != want).float().mean() < 0.01
