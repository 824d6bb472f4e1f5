"""C kernels for the CPU: fused matrix-vector products for decoding (``gemv.c``, AVX2 + FMA, OpenMP), and more.

A decode step multiplies each weight matrix with one activation row per sequence, so its speed is the rate at
which the weights stream from memory. PyTorch's CPU kernels reach about a third of this machine's bandwidth on
such shapes (and less for int8), so :func:`gemv` runs our own: one pass over each weight row for up to
``MAX_ROWS`` activation rows, with bfloat16/int8/int4 weights converted to float32 in registers.

The C source is compiled on first use with the system C compiler into ``~/.cache/litgpt/kernels`` (about a second;
written under a temporary name and renamed, so concurrent processes never load half a file) and loaded with
ctypes. Where that is impossible (no compiler, not x86-64 with AVX2, ``LITGPT_KERNELS=0``), :func:`available` is
False and callers keep PyTorch's own path. Under ``torch.compile`` the kernel is a custom op (``litgpt::gemv``,
see :func:`register_for_compile`) so the compiled decode step stays one graph. On CPUs with AVX512-BF16 the
bfloat16 kernel multiplies bfloat16 pairs natively (``LITGPT_KERNELS_AVX512=0`` or :func:`allow_avx512` keeps the
AVX2 path). The same library holds ``step.c``, the whole decode step of one sequence (see :mod:`.fused`), and
``train.c``, pieces of CPU training: cross entropy rows (:func:`cross_entropy_rows_`, for :mod:`litgpt.loss`), RMSNorm
forward and backward (:func:`rms_norm`), dropout masks (:func:`dropout_mask`), the qkv output to rotated heads
(:func:`qkv_heads`) and the softmax of training attention (:func:`attention`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from litgpt.kernels import gemm

# step.c: fused.py; head.c: the top logits for step.c; train.c: loss, norms, dropout, heads, attention softmax
SOURCES = [Path(__file__).with_name(n) for n in ("gemv.c", "step.c", "head.c", "train.c")]
HEADERS = [Path(__file__).with_name("simd.h")]  # included by the sources: part of what the build depends on
FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-fPIC", "-shared"]
MAX_ROWS = 8  # activation rows per kernel call (the C side's MAX_M)
KINDS = ("f32", "bf16", "i8", "i4")
I4_GROUP = 32  # the int4 kernel's block of input features (scales may cover several blocks)
I4_MAX_FEATURES = 65536  # the int4 kernel's longest row (gemv.c's MAX_BLOCKS blocks)
QUANT_BLOCK = 32  # i8/i4 round activations to int8 in blocks of this many features; in_features must divide


def _cache_dir() -> Path:
    root = os.environ.get("LITGPT_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "litgpt", "kernels"
    )
    return Path(root)


def _cpu_ok() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    except Exception:
        return False


def _compile() -> Path | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = _cache_dir() / f"gemv-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, *map(str, SOURCES), "-o", tmp], check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)
    except (OSError, subprocess.SubprocessError):
        Path(tmp).unlink(missing_ok=True)
        return None
    return target


@cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("LITGPT_KERNELS", "1") == "0" or not _cpu_ok():
        return None
    path = _compile()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("gemv_f32", "gemv_bf16"):
        getattr(lib, name).argtypes = [p, p, p, i64, i64, i64, i32]
    lib.gemv_i8.argtypes = [p, p, p, p, i64, i64, i64, i32]
    lib.gemv_i4.argtypes = [p, p, p, p, p, i64, i64, i64, i32]
    lib.dequant_i8.argtypes = [p, p, p, i64, i64, i32]
    lib.dequant_i4.argtypes = [p, p, p, p, i64, i64, i32]
    lib.gemv_i8.restype = lib.gemv_i4.restype = lib.decode_steps.restype = i32
    lib.decode_steps.argtypes = [p, i64, p, i64, p, p, i64]
    lib.head_top.argtypes = [p, i64, i64, i64, i64, p, p, p, p, i64, ctypes.c_double, p, i32]
    lib.head_top.restype = i64
    lib.head_screen.argtypes = [p, i64, i64, i64, p, p, i32]
    lib.xent_rows.argtypes = [p, i32, i64, i64, i64, p, ctypes.c_float, p, i32]
    lib.xent_rows.restype = i32
    lib.rmsnorm_forward.argtypes = [p, p, p, p, i32, i64, i64, ctypes.c_float, i32]
    lib.rmsnorm_backward.argtypes = [p, p, p, p, p, p, i32, i64, i64, i32]
    lib.glu_forward.argtypes = [p, p, p, i32, i64, i32, i32]
    lib.glu_backward.argtypes = [p, p, p, p, p, i32, i64, i32, i32]
    lib.dropout_mask.argtypes = [p, i32, i64, ctypes.c_double, ctypes.c_uint64, i32]
    heads = [p, p, p, p, p, p, i32, i64, i64, i64, i64, i64, i64, i32]
    lib.qkv_heads_forward.argtypes = [p, i64, *heads[1:]]
    lib.qkv_heads_norm_forward.argtypes = [p, i64, *heads[1:-1], p, p, ctypes.c_float, i32]
    lib.qkv_heads_backward.argtypes = heads
    lib.attn_softmax.argtypes = [p, i32, i64, i64, i64, p, p, ctypes.c_float, i32]
    lib.attn_softmax_backward.argtypes = [p, p, i32, i64, i64, i64, p, p, ctypes.c_float, i32]
    lib.has_avx512_bf16.restype = i32
    lib.allow_avx512.argtypes = [i32]
    lib.allow_avx512(int(os.environ.get("LITGPT_KERNELS_AVX512", "1") != "0"))
    return lib


_AVAILABLE: bool | None = None


def available() -> bool:
    """True when the kernels are built (or can be) and this CPU runs them.

    Decided once and kept in a plain global, which ``torch.compile`` reads as a constant (it is decided before any
    tracing: by :func:`use_decode_kernels` or :func:`register_for_compile`)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = _library() is not None
    return _AVAILABLE


_NATIVE_BF16: bool | None = None


def native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 (unless ``LITGPT_KERNELS_AVX512=0`` or ``allow_avx512(False)``), where
    bfloat16 matrix products (oneDNN's, and ours) are fast. Kept in a plain global, as :func:`available`, so that
    ``torch.compile`` reads it as a constant (:func:`register_for_compile` decides it before any tracing)."""
    global _NATIVE_BF16
    if _NATIVE_BF16 is None:
        _NATIVE_BF16 = available() and bool(_library().has_avx512_bf16())
    return _NATIVE_BF16


def allow_avx512(on: bool) -> None:
    """Let the kernels use AVX-512 where the CPU has it (the default), or keep them to their AVX2 paths."""
    global _NATIVE_BF16
    if available():
        _library().allow_avx512(int(on))
        _NATIVE_BF16 = None


def _run(kind: str, x: torch.Tensor, w: torch.Tensor, scales, zeros) -> torch.Tensor:
    lib = _library()
    M, K = x.shape
    N = w.shape[0]
    _check_scales(kind, scales, zeros)
    y = torch.empty(M, N, dtype=torch.float32)
    threads = torch.get_num_threads()
    for start in range(0, M, MAX_ROWS):
        rows = min(MAX_ROWS, M - start)
        xp, yp = x[start].data_ptr(), y[start].data_ptr()
        if kind == "f32":
            lib.gemv_f32(xp, w.data_ptr(), yp, rows, N, K, threads)
        elif kind == "bf16":
            lib.gemv_bf16(xp, w.data_ptr(), yp, rows, N, K, threads)
        elif kind == "i8":
            ok = lib.gemv_i8(xp, w.data_ptr(), scales.data_ptr(), yp, rows, N, K, threads)
        else:
            ok = lib.gemv_i4(xp, w.data_ptr(), scales.data_ptr(), zeros.data_ptr(), yp, rows, N, K, threads)
        if kind in ("i8", "i4") and not ok:
            raise RuntimeError(f"the {kind} kernel needs in_features divisible by {QUANT_BLOCK} (got {K})")
    return y


_COMPILE_OP = None


def register_for_compile():
    """Register the kernels as the custom op ``litgpt::gemv`` so that ``torch.compile`` keeps them inside one
    graph; returns the op. Done on demand (by :meth:`litgpt.api.LLM.compile`) because defining a custom op
    imports much of torch's compiler stack, about 1.5 s of start-up that plain decoding does not need."""
    global _COMPILE_OP
    native_bf16()  # decides available() too: both are constants to the tracer from here on
    if _COMPILE_OP is None:

        @torch.library.custom_op("litgpt::gemv", mutates_args=())
        def op(
            x: torch.Tensor, w: torch.Tensor, scales: torch.Tensor | None, zeros: torch.Tensor | None, kind: str
        ) -> torch.Tensor:
            return _run(kind, x, w, scales, zeros)

        @op.register_fake
        def _(x, w, scales, zeros, kind):
            return x.new_empty(x.shape[0], w.shape[0], dtype=torch.float32)

        _COMPILE_OP = op
    return _COMPILE_OP


def gemv(
    kind: str, x: torch.Tensor, w: torch.Tensor, scales: torch.Tensor | None = None, zeros: torch.Tensor | None = None
) -> torch.Tensor:
    """``x (M, K) @ W.T`` in float32 for a weight ``w`` stored as ``kind`` (see ``gemv.c`` for the layouts).

    ``x`` is converted to a contiguous float32 tensor; scales/zeros must be contiguous, int8: float32 (N,), int4:
    float16 (N, K / 32). "i8" and "i4" round ``x`` to int8 in blocks of 32 (see ``gemv.c``) and need K % 32 == 0. The
    caller checks :func:`available` and that everything is on the CPU.
    """
    x = x.to(torch.float32).contiguous()
    if torch.compiler.is_compiling():
        if _COMPILE_OP is None:  # compiled without register_for_compile(): a graph break around the kernel
            return torch.compiler.disable(_run)(kind, x, w, scales, zeros)
        return _COMPILE_OP(x, w, scales, zeros, kind)
    return _run(kind, x, w, scales, zeros)


def _takes(t: torch.Tensor) -> bool:
    """Whether the training kernels (``train.c``) take this tensor: float32 or bfloat16, on the CPU."""
    return available() and t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16)


def cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor, scale: float = 1.0) -> torch.Tensor | None:
    """Per-row cross entropy of float32/bfloat16 CPU ``logits`` (N, V) against ``targets`` (N,), overwriting
    ``logits`` with ``scale`` times its gradient, ``softmax - onehot`` (see ``train.c``); float32 losses, or None
    (nothing written) when the kernels cannot take it (unavailable, other dtype or device, rows not contiguous,
    target out of range)."""
    if not _takes(logits) or logits.dim() != 2 or logits.stride(1) != 1:
        return None
    targets = targets.to(torch.int64).contiguous()
    loss = torch.empty(logits.shape[0], dtype=torch.float32)
    ok = _library().xent_rows(
        logits.data_ptr(), int(logits.dtype == torch.bfloat16), logits.shape[0], logits.shape[1], logits.stride(0),
        targets.data_ptr(), scale, loss.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return loss if ok else None


def dropout_mask(like: torch.Tensor, p: float) -> torch.Tensor | None:
    """A dropout mask shaped and typed like the float32/bfloat16 CPU tensor ``like``: 0 with probability ``p``,
    else ``1 / (1 - p)``; the seed is drawn from torch's generator, so runs repeat under ``torch.manual_seed``.
    None where the kernels cannot make it (callers use ``F.dropout``)."""
    if not _takes(like):
        return None
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    mask = torch.empty(like.shape, dtype=like.dtype)
    _library().dropout_mask(
        mask.data_ptr(), int(like.dtype == torch.bfloat16), mask.numel(), float(p), seed, torch.get_num_threads()
    )
    return mask


class RMSNormFunction(torch.autograd.Function):
    """RMS norm of the rows of a contiguous float32/bfloat16 CPU ``x`` with float32 ``scale`` (the weight, plus
    one for Gemma's offset norm), forward and backward in ``train.c``: two passes per row instead of the half
    dozen tensor operations (and float32 copies) of the PyTorch expression."""

    @staticmethod
    def forward(ctx, x, weight, scale, eps):
        lib, dim = _library(), x.shape[-1]
        rows = x.numel() // dim
        y = torch.empty_like(x)
        rstd = torch.empty(rows, dtype=torch.float32)
        bf16 = int(x.dtype == torch.bfloat16)
        lib.rmsnorm_forward(x.data_ptr(), scale.data_ptr(), y.data_ptr(), rstd.data_ptr(), bf16, rows, dim, eps,
                            torch.get_num_threads())  # fmt: skip
        ctx.save_for_backward(x, scale, rstd)
        ctx.weight_dtype = weight.dtype
        return y

    @staticmethod
    def backward(ctx, gy):
        x, scale, rstd = ctx.saved_tensors
        dim, threads = x.shape[-1], torch.get_num_threads()
        gy = gy.contiguous()
        gx = torch.empty_like(x)
        partial = torch.zeros(threads, dim, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        _library().rmsnorm_backward(
            gy.data_ptr(), x.data_ptr(), scale.data_ptr(), rstd.data_ptr(), gx.data_ptr(),
            None if partial is None else partial.data_ptr(), int(x.dtype == torch.bfloat16), x.numel() // dim, dim,
            threads,
        )  # fmt: skip
        gw = None if partial is None else partial.sum(0).to(ctx.weight_dtype)
        return gx, gw, None, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor | None:
    """:class:`RMSNormFunction` where it applies (kernels available, CPU, float32/bfloat16, not compiling), else
    None."""
    if not _takes(x) or weight.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    # the kernel reads ``scale``, the float32 copy of the weight as applied (RMSNorm.applied_weight); the weight's
    # gradient comes back through the second input
    return RMSNormFunction.apply(x.contiguous(), weight, scale, float(eps))


GLU_KINDS = {"silu": 0, "gelu_tanh": 1}  # train.c's activations of a gated MLP unit


class GLUFunction(torch.autograd.Function):
    """The gated unit ``act(a) * b`` of LLaMA/Gemma MLPs over contiguous float32/bfloat16 CPU tensors of one shape,
    forward and backward in one pass each (``train.c``), saving ``a`` and ``b`` only: PyTorch's expression takes
    five element-wise passes and keeps ``act(a)`` for the backward as well."""

    @staticmethod
    def forward(ctx, a, b, kind: int):
        h = torch.empty_like(a)
        _library().glu_forward(a.data_ptr(), b.data_ptr(), h.data_ptr(), int(a.dtype == torch.bfloat16), a.numel(),
                               kind, torch.get_num_threads())  # fmt: skip
        ctx.save_for_backward(a, b)
        ctx.kind = kind
        return h

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        g = g.contiguous()
        ga, gb = torch.empty_like(a), torch.empty_like(b)
        _library().glu_backward(
            g.data_ptr(), a.data_ptr(), b.data_ptr(), ga.data_ptr(), gb.data_ptr(), int(a.dtype == torch.bfloat16),
            a.numel(), ctx.kind, torch.get_num_threads(),
        )  # fmt: skip
        return ga, gb, None


def glu(a: torch.Tensor, b: torch.Tensor, activation: str | None) -> torch.Tensor | None:
    """:class:`GLUFunction` where it applies (kernels available, CPU, float32/bfloat16, same shape and dtype, an
    activation of :data:`GLU_KINDS`, not compiling), else None."""
    if (
        activation not in GLU_KINDS
        or not _takes(a)
        or b.dtype != a.dtype
        or b.shape != a.shape
        or b.device.type != "cpu"
        or torch.compiler.is_compiling()
    ):
        return None
    return GLUFunction.apply(a.contiguous(), b.contiguous(), GLU_KINDS[activation])


class QKVHeadsFunction(torch.autograd.Function):
    """The fused qkv projection's output (B, T, (nh + 2 ng) * hs) split into contiguous heads q (B, nh, T, hs),
    k and v (B, ng, T, hs), with rotary embeddings on the first ``n_elem`` features of q and k (``cos``/``sin``:
    float32 (T, n_elem)), in one pass (``train.c``); the backward writes the qkv gradient in one pass as well.
    PyTorch's split, transposes, rotation (a dozen operators, float32 copies) and the copies that make the heads
    contiguous for attention, in each direction, become one pass each."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, nh, ng, hs, n_elem):
        B, T, _ = qkv.shape
        q = qkv.new_empty(B, nh, T, hs)
        k, v = qkv.new_empty(B, ng, T, hs), qkv.new_empty(B, ng, T, hs)
        _library().qkv_heads_forward(
            qkv.data_ptr(), qkv.stride(1), q.data_ptr(), k.data_ptr(), v.data_ptr(), cos.data_ptr(), sin.data_ptr(),
            int(qkv.dtype == torch.bfloat16), B, T, nh, ng, hs, n_elem, torch.get_num_threads(),
        )  # fmt: skip
        ctx.save_for_backward(cos, sin)
        ctx.shape = (B, T, nh, ng, hs, n_elem)
        return q, k, v

    @staticmethod
    def backward(ctx, gq, gk, gv):
        cos, sin = ctx.saved_tensors
        B, T, nh, ng, hs, n_elem = ctx.shape
        ref = next(g for g in (gq, gk, gv) if g is not None)
        gq, gk, gv = (torch.zeros(B, n, T, hs, dtype=ref.dtype) if g is None else g.contiguous()
                      for g, n in ((gq, nh), (gk, ng), (gv, ng)))  # fmt: skip
        grad = gq.new_empty(B, T, (nh + 2 * ng) * hs)
        _library().qkv_heads_backward(
            gq.data_ptr(), gk.data_ptr(), gv.data_ptr(), grad.data_ptr(), cos.data_ptr(), sin.data_ptr(),
            int(grad.dtype == torch.bfloat16), B, T, nh, ng, hs, n_elem, torch.get_num_threads(),
        )  # fmt: skip
        return grad, None, None, None, None, None, None


def qkv_heads(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, nh: int, ng: int, hs: int, n_elem: int):
    """:class:`QKVHeadsFunction` where it applies (kernels available, float32/bfloat16 on the CPU, rows of unit
    stride, one (T, n_elem) float32 table for the batch, not compiling), else None."""
    qkv = _heads_input(qkv, cos, nh, ng, hs, n_elem)
    return None if qkv is None else QKVHeadsFunction.apply(qkv, cos.contiguous(), sin.contiguous(), nh, ng, hs, n_elem)


def _heads_input(qkv: torch.Tensor, cos: torch.Tensor, nh: int, ng: int, hs: int, n_elem: int) -> torch.Tensor | None:
    """``qkv`` as the heads kernels read it (rows of unit stride, batch rows T rows apart), or None where they do not
    apply (kernels unavailable, another dtype or device, compiling, shapes off, no (T, n_elem) float32 CPU table)."""
    B, T, width = qkv.shape
    if not _takes(qkv) or torch.compiler.is_compiling() or qkv.stride(2) != 1 or width != (nh + 2 * ng) * hs:
        return None
    if cos.shape != (T, n_elem) or cos.dtype != torch.float32 or cos.device.type != "cpu" or n_elem % 2:
        return None
    return qkv.contiguous() if qkv.stride(0) != T * qkv.stride(1) else qkv


MAX_HEAD = 1024  # train.c's longest head for qkv_heads_norm


def qkv_heads_norm(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, nh: int, ng: int, hs: int, n_elem: int,
                   norm_q: torch.Tensor, norm_k: torch.Tensor, eps: float) -> tuple | None:  # fmt: skip
    """:func:`qkv_heads` for models that RMS-normalise each query and key head (``norm_q``/``norm_k``: the float32
    scales as applied, hs values each) before the rotary embeddings; inference only (no backward). None where the
    kernel does not apply."""
    if hs > MAX_HEAD or norm_q.shape != (hs,) or norm_k.shape != (hs,) or torch.is_grad_enabled() and qkv.requires_grad:
        return None
    qkv = _heads_input(qkv, cos, nh, ng, hs, n_elem)
    if qkv is None:
        return None
    B, T, _ = qkv.shape
    q, k, v = qkv.new_empty(B, nh, T, hs), qkv.new_empty(B, ng, T, hs), qkv.new_empty(B, ng, T, hs)
    norm_q, norm_k, cos, sin = (t.float().contiguous() for t in (norm_q, norm_k, cos, sin))
    _library().qkv_heads_norm_forward(
        qkv.data_ptr(), qkv.stride(1), q.data_ptr(), k.data_ptr(), v.data_ptr(), cos.data_ptr(), sin.data_ptr(),
        int(qkv.dtype == torch.bfloat16), B, T, nh, ng, hs, n_elem, norm_q.data_ptr(), norm_k.data_ptr(), eps,
        torch.get_num_threads(),
    )  # fmt: skip
    return q, k, v


class AttentionFunction(torch.autograd.Function):
    """Causal attention over a square as three batched products, with the softmax (scaled, masked to each query's
    visible columns) and its backward in ``train.c``. ``q`` is (G, rep * T, hs): the ``rep`` query heads of each of
    the G = batch x K/V groups stacked along the rows, so grouped-query attention shares ``k`` and ``v`` (G, T, hs)
    without copies. Query position ``i`` sees the keys ``[lo[i], hi[i])``.

    Against the same products around PyTorch's softmax: no additive mask to build and add, no separate scaling of
    the queries, and one pass per row for the softmax and for its backward (whose PyTorch kernel is slow for
    bfloat16); the backward multiplies a contiguous copy of the output's gradient (it arrives transposed)."""

    @staticmethod
    def forward(ctx, q, k, v, scale, lo, hi):
        G, rows, _ = q.shape
        T = k.shape[1]
        probs = torch.bmm(q, k.transpose(1, 2))
        bf16, threads = int(q.dtype == torch.bfloat16), torch.get_num_threads()
        _library().attn_softmax(probs.data_ptr(), bf16, G * rows, T, T, lo.data_ptr(), hi.data_ptr(), scale, threads)
        ctx.save_for_backward(q, k, v, probs, lo, hi)
        ctx.scale = scale
        return torch.bmm(probs, v)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, probs, lo, hi = ctx.saved_tensors
        G, rows, T = probs.shape
        grad_out = grad_out.contiguous()
        grad_v = torch.bmm(probs.transpose(1, 2), grad_out)
        grad_s = torch.bmm(grad_out, v.transpose(1, 2))
        _library().attn_softmax_backward(
            probs.data_ptr(), grad_s.data_ptr(), int(q.dtype == torch.bfloat16), G * rows, T, T, lo.data_ptr(),
            hi.data_ptr(), ctx.scale, torch.get_num_threads(),
        )  # fmt: skip
        return torch.bmm(grad_s, k), torch.bmm(grad_s.transpose(1, 2), q), grad_v, None, None, None


def visible_ranges(T: int, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Each query position's visible key columns ``[lo, hi)`` as two int32 tensors: causal when ``mask`` is None,
    else read from a boolean (T, T) mask; None when some row of the mask is not one contiguous range."""
    if mask is None:
        return _causal_ranges(T)
    mask = mask.to("cpu", torch.bool)
    hi = T - mask.flip(1).int().argmax(1)
    lo = mask.int().argmax(1)
    if not bool((mask.sum(1) == hi - lo).all()) or not bool(mask.any(1).all()):
        return None
    return lo.to(torch.int32), hi.to(torch.int32)


@cache
def _causal_ranges(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(T, dtype=torch.int32), torch.arange(1, T + 1, dtype=torch.int32)


def attention(q, k, v, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """:class:`AttentionFunction` on (G, rep * T, hs) queries and (G, T, hs) keys/values, where it applies
    (kernels available, float32/bfloat16 on the CPU, not compiling, ``mask`` None or rows of contiguous ranges),
    else None."""
    if not _takes(q) or torch.compiler.is_compiling():
        return None
    ranges = visible_ranges(k.shape[1], mask)
    if ranges is None:
        return None
    return AttentionFunction.apply(q.contiguous(), k.contiguous(), v.contiguous(), float(scale), *ranges)


def head_screen(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 copy of an output layer's float32 or bfloat16 weight (N, K) that :func:`head_top` screens with:
    codes ``round(W / s)`` (N, K) and one float32 scale per row, ``s = max |W[j]| / 127``."""
    if weight.dtype not in FLOAT_KINDS or weight.shape[1] % 8:
        raise ValueError(f"head_screen needs a float32/bfloat16 weight with a multiple of 8 columns, got "
                         f"{weight.dtype} {tuple(weight.shape)}")  # fmt: skip
    from litgpt import hugepages

    weight = weight.contiguous()
    q = hugepages.empty(tuple(weight.shape), torch.int8)  # read at every token
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    _library().head_screen(
        weight.data_ptr(), int(weight.dtype == torch.bfloat16), weight.shape[0], weight.shape[1], q.data_ptr(),
        scales.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return q, scales


def head_top(
    x: torch.Tensor, weight: torch.Tensor, screen: tuple[torch.Tensor, torch.Tensor], top: int,
    bias: torch.Tensor | None = None, softcap: float = 0.0,
) -> torch.Tensor | None:  # fmt: skip
    """Logits ``x @ W.T (+ bias)`` of float32 rows ``x`` ((K,) or (M, K), M <= ``MAX_ROWS``) where each row's ``top``
    largest are exact and bit-identical to :func:`gemv`'s (softcapped when ``softcap``), and the rest may be -inf;
    None where screening does not pay (see ``head.c``). ``weight`` is float32 or bfloat16, ``screen`` its
    :func:`head_screen`."""
    rows = x.to(torch.float32).reshape(-1, x.shape[-1]).contiguous()
    logits = torch.empty(rows.shape[0], weight.shape[0], dtype=torch.float32)
    q, scales = screen
    bias = None if bias is None else bias.to(torch.float32).contiguous()
    bias_ptr = None if bias is None else bias.data_ptr()
    found = _library().head_top(
        rows.data_ptr(), rows.shape[0], weight.shape[0], weight.shape[1], int(weight.dtype == torch.bfloat16),
        weight.data_ptr(), bias_ptr, q.data_ptr(), scales.data_ptr(), top, float(softcap), logits.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    if found <= 0:
        return None
    return logits.view(*x.shape[:-1], weight.shape[0])


def pack_i4(q: torch.Tensor) -> torch.Tensor:
    """int4 codes (N, K) uint8 in [0, 15], K % 32 == 0 -> the kernel's (N, K / 2) bytes (see ``gemv.c``)."""
    N, K = q.shape
    blocks = q.view(N, K // I4_GROUP, 2, I4_GROUP // 2)
    return (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).reshape(N, K // 2).contiguous()


def unpack_i4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_i4`."""
    N, half = packed.shape
    blocks = packed.view(N, -1, 1, I4_GROUP // 2)
    return torch.cat((blocks & 15, blocks >> 4), dim=2).reshape(N, 2 * half)


def _check_scales(kind: str, scales: torch.Tensor | None, zeros: torch.Tensor | None) -> None:
    want = {"i8": torch.float32, "i4": torch.float16}.get(kind)
    for t in (scales, zeros) if kind == "i4" else (scales,) if kind == "i8" else ():
        if t is None or t.dtype != want or not t.is_contiguous():
            raise ValueError(f"the {kind} kernel takes contiguous {want} scales{' and zeros' if kind == 'i4' else ''}")


def dequantize(kind: str, w: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None) -> torch.Tensor:
    """The float32 weight (N, K) that an "i8" or "i4" weight of :func:`gemv` stands for, in one pass (for products
    of more rows than the kernels take, such as a prefill). Same operands and checks as :func:`gemv`."""
    N = w.shape[0]
    K = w.shape[1] * (2 if kind == "i4" else 1)
    _check_scales(kind, scales, zeros)
    out = torch.empty(N, K, dtype=torch.float32)
    if kind == "i8":
        _library().dequant_i8(w.data_ptr(), scales.data_ptr(), out.data_ptr(), N, K, torch.get_num_threads())
    elif kind == "i4" and K % I4_GROUP == 0:
        _library().dequant_i4(
            w.data_ptr(), scales.data_ptr(), zeros.data_ptr(), out.data_ptr(), N, K, torch.get_num_threads()
        )
    else:
        raise ValueError(f"dequantize takes 'i8', or 'i4' with a multiple of {I4_GROUP} features; got {kind!r}, K={K}")
    return out


FLOAT_KINDS = {torch.float32: "f32", torch.bfloat16: "bf16"}


class CPULinear(torch.nn.Linear):
    """An ``nn.Linear`` (same parameters and state dict) whose CPU products take the faster kernel: small inference
    inputs (decode steps) :func:`gemv`, float32 products oneDNN where MKL is slow (:mod:`.gemm`, training included).
    Other devices, and what neither covers, take ``F.linear``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            x.device.type == "cpu"
            and w.dtype in FLOAT_KINDS
            and x.numel() <= kernel_rows(FLOAT_KINDS[w.dtype]) * self.in_features
            and available()
            and not (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))
            and w.is_contiguous()
        ):
            out = gemv(FLOAT_KINDS[w.dtype], x.reshape(-1, self.in_features), w).to(x.dtype)
            out = out.reshape(*x.shape[:-1], self.out_features)
            return out if self.bias is None else out + self.bias
        if x.dtype != w.dtype:  # float32 activations with bfloat16 weights (GPT.activation_dtype): a prefill
            if w.dtype == torch.bfloat16 and native_bf16():  # one bfloat16 product (oneDNN), 4x faster here
                return F.linear(x.to(w.dtype), w, self.bias).to(x.dtype)
            # elsewhere converting the weight for one float32 product is much faster than a bfloat16 one
            bias = None if self.bias is None else self.bias.to(x.dtype)
            return F.linear(x, w.to(x.dtype), bias)
        return gemm.linear(x, w, self.bias)


GEMV_ROWS = 32  # inputs of up to this many rows (decode steps, small batches) take the kernels


def kernel_rows(kind: str) -> int:
    """How many input rows at most a layer of weight ``kind`` (see :data:`KINDS`) sends to the kernels rather than
    to one dense matrix product: ``GEMV_ROWS``, or ``MAX_ROWS`` (one pass of the kernel) for bfloat16 and int8/int4
    weights on CPUs with AVX512-BF16, where a bfloat16 product of more rows is 2-3x faster than the kernel's
    passes (13 to 32 rows of a 2048 x 640 layer, measured on the machine of ``benchmarks/README.md``)."""
    return MAX_ROWS if kind != "f32" and native_bf16() else GEMV_ROWS


def cpu_linear(model: torch.nn.Module, dtypes=tuple(FLOAT_KINDS)) -> int:
    """Switch the model's plain ``nn.Linear`` layers on the CPU whose weights have one of ``dtypes`` to
    :class:`CPULinear`, in place (no copy, same state dict); returns how many."""
    switched = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype in dtypes:
            module.__class__ = CPULinear
            switched += 1
    return switched


def use_decode_kernels(model: torch.nn.Module, dtypes=tuple(FLOAT_KINDS)) -> int:
    """Switch the model's float ``nn.Linear`` layers whose weights have one of ``dtypes`` to :class:`CPULinear`,
    in place (no copy). Returns how many were switched; 0 where the kernels are unavailable.

    A bfloat16 model with nothing but plain linear layers or our int8/int4 ones (no LoRA/adapter wrappers, no
    bitsandbytes layers) also gets float32 activations (``GPT.activation_dtype``): the weights stay bfloat16 (or
    quantized) in memory and are read as such by the kernels, as are the bfloat16 keys and values of the cache,
    while norms and attention run in float32, which these CPUs compute much faster than bfloat16 (and more
    accurately) for decode steps and short inputs."""
    if not available():
        return 0
    from litgpt.quantize import BnbLinear, Int4Linear, Int8Linear

    switched = cpu_linear(model, dtypes)
    modules = list(model.modules())
    wrapped = any(type(m).__module__ in ("litgpt.lora", "litgpt.adapter") or isinstance(m, BnbLinear) for m in modules)
    # a quantized layer's ``weight`` is its compute-dtype stand-in
    weights = [m.weight for m in modules if isinstance(m, (CPULinear, Int8Linear, Int4Linear))]
    if hasattr(model, "activation_dtype") and weights and not wrapped:
        if all(w.dtype == torch.bfloat16 for w in weights):
            model.activation_dtype = torch.float32
    return switched
