"""The whole decode step of one sequence, or a batch of up to eight, in one C call (``step.c``), for the
architectures it covers.

:func:`fused_decoder` inspects a :class:`litgpt.model.GPT` and, when every piece of it is something ``step.c``
computes (RMSNorm, sequential residual, gated MLP, dense attention with rotate-half RoPE, weights that
:mod:`litgpt.kernels` multiplies, a float32 or bfloat16 KV cache of at most ``MAX_BATCH`` rows), returns a :class:`FusedDecoder`
bound to the model's own parameters and cache; otherwise None and the caller keeps ``model.forward``. Nothing is
copied except the norm weights (float32, with Gemma's unit offset applied), so the fused step and PyTorch's forward
share the cache and can alternate: PyTorch prefills, C decodes, and a later PyTorch call sees every position written.
"""

from __future__ import annotations

import ctypes
import os

import torch

from litgpt import kernels

c_i64, c_double, c_ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
KIND_CODES = {"f32": 0, "bf16": 1, "i8": 2, "i4": 3}
ACTIVATIONS = {("LLaMAMLP", None): 0, ("GemmaMLP", "tanh"): 1, ("GemmaMLP", "none"): 2}


class Mat(ctypes.Structure):
    _fields_ = [("kind", c_i64), ("N", c_i64), ("K", c_i64), ("w", c_ptr), ("scales", c_ptr), ("zeros", c_ptr),
                ("bias", c_ptr)]  # fmt: skip


class Layer(ctypes.Structure):
    _fields_ = [
        *((name, c_ptr) for name in ("norm_1", "post_attention_norm", "norm_2", "post_mlp_norm", "norm_q", "norm_k")),
        *((name, Mat) for name in ("qkv", "proj", "fc_1", "fc_2", "mlp_proj")),
        *((name, c_ptr) for name in ("k_cache", "v_cache", "cos", "sin")),
        ("window", c_i64),
    ]


class Model(ctypes.Structure):
    _fields_ = [
        *((name, c_i64) for name in ("n_layer", "n_embd", "n_head", "n_groups", "head_size", "rope_n_elem",
                                     "intermediate", "S", "activation", "qk_norm_full", "threads", "wte_kind",
                                     "kv_bf16")),
        *((name, c_double) for name in ("eps", "embedding_scale", "attn_scale", "attn_softcap", "final_softcap")),
        ("layers", ctypes.POINTER(Layer)), ("wte", c_ptr), ("ln_f", c_ptr), ("head", Mat), ("screen_q", c_ptr),
        ("screen_s", c_ptr),
    ]  # fmt: skip


class Unsupported(Exception):
    """Something in the model that step.c does not compute (the caller falls back to PyTorch)."""


def _mat(linear: torch.nn.Module, keep: list) -> Mat:
    """The kernel's view of a linear layer: a plain float, CPULinear, Int8Linear or gemv-layout Int4Linear."""
    from litgpt.quantize import Int4Linear, Int8Linear

    bias = getattr(linear, "bias", None)
    if bias is not None:
        bias = bias.detach().float().contiguous()
        keep.append(bias)
    bias_ptr = None if bias is None else bias.data_ptr()
    if type(linear) in (torch.nn.Linear, kernels.CPULinear):
        w = linear.weight
        if w.dtype not in kernels.FLOAT_KINDS or not w.is_contiguous() or w.device.type != "cpu":
            raise Unsupported(f"weight of dtype {w.dtype}")
        kind = kernels.FLOAT_KINDS[w.dtype]
        return Mat(KIND_CODES[kind], w.shape[0], w.shape[1], w.data_ptr(), None, None, bias_ptr)
    if type(linear) is Int8Linear and linear.use_kernel and linear.in_features % kernels.QUANT_BLOCK == 0:
        scales = linear.scales.float().contiguous()
        keep.append(scales)
        q = linear.qweight
        return Mat(KIND_CODES["i8"], q.shape[0], q.shape[1], q.data_ptr(), scales.data_ptr(), None, bias_ptr)
    if type(linear) is Int4Linear and linear.layout == "gemv":
        q = linear.qweight
        return Mat(KIND_CODES["i4"], linear.out_features, linear.in_features, q.data_ptr(), linear.scales.data_ptr(),
                   linear.zeros.data_ptr(), bias_ptr)  # fmt: skip
    raise Unsupported(f"layer {type(linear).__name__}")


def _norm(module: torch.nn.Module, keep: list) -> int | None:
    from litgpt.model import RMSNorm

    if isinstance(module, torch.nn.Identity):
        return None
    if type(module) is not RMSNorm:
        raise Unsupported(f"norm {type(module).__name__}")
    w = module.applied_weight()
    keep.append(w)
    return w.data_ptr()


MAX_TOP = 1024  # larger top-k sampling computes every logit
MAX_BATCH = kernels.MAX_ROWS  # sequences per fused step (step.c's MAX_B)


def head_screen_of(head: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The output layer's int8 copy (:func:`litgpt.kernels.head_screen`), built on first use and kept on the module
    until its weight changes; None where it does not apply or ``LITGPT_HEAD_SCREEN=0``."""
    w = head.weight
    if (
        os.environ.get("LITGPT_HEAD_SCREEN", "1") == "0"
        or type(head) not in (torch.nn.Linear, kernels.CPULinear)
        or w.dtype not in kernels.FLOAT_KINDS
        or w.device.type != "cpu"
        or not w.is_contiguous()
        or w.shape[1] % 32
    ):
        return None
    key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
    cached = getattr(head, "_litgpt_screen", None)
    if cached is None or cached[0] != key:
        cached = (key, *kernels.head_screen(w))
        head._litgpt_screen = cached
    return cached[1], cached[2]


def _head_screen(head: torch.nn.Module, keep: list) -> tuple[int | None, int | None]:
    screen = head_screen_of(head)
    if screen is None:
        return None, None
    keep.append(screen)
    return screen[0].data_ptr(), screen[1].data_ptr()


class ScreenedHead:
    """``model.project`` for the batched PyTorch decode step when only each row's ``top`` largest logits are needed:
    the output layer's int8 copy and the candidates' exact rows (``head.c``), with the values the full product would
    give (the same M-row kernel, bias and softcap) and -inf elsewhere. Falls back to ``model.project``."""

    def __init__(self, model, screen: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.model, self.screen = model, screen

    def __call__(self, hidden: torch.Tensor, top: int) -> torch.Tensor:
        head = self.model.lm_head
        logits = None
        if hidden.dtype == torch.float32 and 0 < top <= MAX_TOP and hidden.shape[0] <= kernels.MAX_ROWS:
            logits = kernels.head_top(hidden, head.weight, self.screen, top, bias=head.bias)
        if logits is None:
            return self.model.project(hidden)
        cap = self.model.config.final_logit_softcapping
        if cap is not None:  # PyTorch's softcap, as model.project applies it, on the kept logits only
            from litgpt.model import softcap

            logits = torch.where(torch.isfinite(logits), softcap(logits, cap), logits)
        return logits


def screened_head(model) -> ScreenedHead | None:
    """A :class:`ScreenedHead` for a model whose output layer runs :func:`litgpt.kernels.gemv` on the CPU, else None."""
    if not kernels.available() or type(model.lm_head) is not kernels.CPULinear:
        return None
    screen = head_screen_of(model.lm_head)
    return None if screen is None else ScreenedHead(model, screen)


class FusedDecoder:
    """``decoder(tokens, pos, top=0, valid=None)`` -> float32 logits (B, vocab) of a one-token decode step at
    ``pos`` for each of the cache's B sequences (``tokens``: B ints, or one int when B is 1), in one C call.
    ``valid`` (B, S) bool marks the cache positions each sequence attends to (False: left padding), as the model's
    ``key_padding_mask``. ``top`` > 0: only the ``top`` largest logits of each row are needed (greedy: 1, top-k
    sampling: k); they come out exactly as with ``top=0`` and every other logit may be -inf, which reads half the
    output layer's bytes or less (``head.c``).

    Holds raw pointers into the model: valid while the model's parameters and KV cache are not replaced (build a
    new one after ``set_kv_cache`` or ``model.to``)."""

    def __init__(self, model, keep: list, struct: Model, layers, batch: int) -> None:
        self.model, self._keep, self._struct, self._layers = model, keep, struct, layers
        self.vocab, self.batch = struct.head.N, batch
        self._lib = kernels._library()

    def __call__(self, tokens, pos: int, top: int = 0, valid: torch.Tensor | None = None) -> torch.Tensor:
        tokens = [tokens] if isinstance(tokens, int) else list(tokens)
        if len(tokens) != self.batch:
            raise ValueError(f"the KV cache holds {self.batch} sequences, got {len(tokens)} tokens")
        ids = (ctypes.c_int64 * self.batch)(*tokens)
        if valid is not None and (valid.dtype != torch.bool or valid.shape != (self.batch, self._struct.S)):
            raise ValueError(f"valid must be a ({self.batch}, {self._struct.S}) bool tensor")
        valid = None if valid is None else valid.contiguous()
        logits = torch.empty(self.batch, self.vocab, dtype=torch.float32)
        top = top if 0 < top <= MAX_TOP else 0
        ok = self._lib.decode_steps(
            ctypes.byref(self._struct), self.batch, ids, int(pos), None if valid is None else valid.data_ptr(),
            logits.data_ptr(), top,
        )  # fmt: skip
        if not ok:
            raise RuntimeError("the fused decode step could not run (position outside the KV cache, or no memory)")
        return logits


def fused_decoder(model) -> FusedDecoder | None:
    """A :class:`FusedDecoder` for ``model`` (a GPT with a KV cache for one sequence), or None where ``step.c``
    does not cover it, the kernels are unavailable, or ``LITGPT_FUSED_DECODE=0``."""
    if os.environ.get("LITGPT_FUSED_DECODE", "1") == "0" or not kernels.available():
        return None
    try:
        return _build(model)
    except Unsupported:
        return None


def _build(model) -> FusedDecoder:
    cfg = model.config
    activation = ACTIVATIONS.get(
        (cfg.mlp_class_name, None if cfg.mlp_class_name == "LLaMAMLP" else cfg.gelu_approximate)
    )
    if activation is None or cfg.parallel_residual or cfg.n_expert:
        raise Unsupported("architecture")
    if cfg.longrope_original_max_seq_len is not None:  # its tables switch with the length (GPT.forward)
        raise Unsupported("longrope")
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        raise Unsupported("autograd")
    cache = model.transformer.h[0].attn.kv_cache
    if cache is None or not 1 <= cache.k.shape[0] <= MAX_BATCH:
        raise Unsupported("cache")
    batch = cache.k.shape[0]
    wte = model.transformer.wte.weight
    if wte.dtype not in kernels.FLOAT_KINDS or not wte.is_contiguous() or wte.device.type != "cpu":
        raise Unsupported("embedding")
    cos, sin = model._rope(wte.device)
    keep: list = [cos, sin]
    S, kv_dtype = cache.k.shape[2], cache.k.dtype
    if kv_dtype not in (torch.float32, torch.bfloat16):
        raise Unsupported("cache")
    layers = (Layer * cfg.n_layer)()
    from litgpt.model import GPT, Block, CausalSelfAttention, GemmaMLP, LLaMAMLP

    if type(model) is not GPT:
        raise Unsupported("model class")
    # hooks change what a module computes (tensor parallelism all-reduces, pipeline placement moves tensors)
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        raise Unsupported("hooks")
    for i, block in enumerate(model.transformer.h):
        attn, mlp, kv = block.attn, block.mlp, block.attn.kv_cache
        # exact classes: a subclass (an adapter's attention, say) computes something step.c does not
        if type(block) is not Block or type(attn) is not CausalSelfAttention or type(mlp) not in (LLaMAMLP, GemmaMLP):
            raise Unsupported("module class")
        for t in (kv.k, kv.v):
            if (
                t.dtype != kv_dtype
                or not t.is_contiguous()
                or t.shape != (batch, cfg.n_query_groups, S, cfg.head_size)
            ):
                raise Unsupported("cache")
        if cfg.norm_qk:
            norm_q, norm_k = _norm(attn.norm_q, keep), _norm(attn.norm_k, keep)
        else:
            norm_q = norm_k = None
        table = model.rope_table_of[i]
        layers[i] = Layer(
            _norm(block.norm_1, keep), _norm(block.post_attention_norm, keep), _norm(block.norm_2, keep),
            _norm(block.post_mlp_norm, keep), norm_q, norm_k,
            _mat(attn.qkv, keep), _mat(attn.proj, keep), _mat(mlp.fc_1, keep), _mat(mlp.fc_2, keep),
            _mat(mlp.proj, keep), kv.k.data_ptr(), kv.v.data_ptr(), cos[table].data_ptr(), sin[table].data_ptr(),
            cfg.sliding_window_size if cfg.is_sliding(i) else 0,
        )  # fmt: skip
    if cos.shape[1] < S or cos.dtype != torch.float32:
        raise Unsupported("rope table")
    # every shape as step.c assumes it (a sharded or otherwise altered layer must never be read out of bounds)
    E, hs, inner = cfg.n_embd, cfg.head_size, model.transformer.h[0].mlp.fc_1.out_features
    q, kv = cfg.n_head * hs, cfg.n_query_groups * hs
    expected = {"qkv": (q + 2 * kv, E), "proj": (E, q), "fc_1": (inner, E), "fc_2": (inner, E), "mlp_proj": (E, inner)}
    for layer in layers:
        for field, shape in expected.items():
            mat = getattr(layer, field)
            if (mat.N, mat.K) != shape:
                raise Unsupported(f"{field} shape")
    if wte.shape[1] != E or model.lm_head.in_features != E:
        raise Unsupported("embedding or head shape")
    if any(block.attn.config is not cfg for block in model.transformer.h):
        raise Unsupported("per-layer config")
    struct = Model(
        cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_query_groups, cfg.head_size, cfg.rope_n_elem, inner, S, activation,
        int(bool(cfg.norm_qk) and cfg.norm_qk_type == "olmo2"), torch.get_num_threads(),
        KIND_CODES[kernels.FLOAT_KINDS[wte.dtype]], int(kv_dtype == torch.bfloat16),
        cfg.norm_eps, cfg.n_embd**0.5 if cfg.scale_embeddings else 1.0, model.transformer.h[0].attn.scale,
        cfg.attention_logit_softcapping or 0.0, cfg.final_logit_softcapping or 0.0,
        layers, wte.data_ptr(), _norm(model.transformer.ln_f, keep), _mat(model.lm_head, keep),
        *_head_screen(model.lm_head, keep),
    )  # fmt: skip
    return FusedDecoder(model, keep, struct, layers, batch)
