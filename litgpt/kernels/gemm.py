"""Float32 matrix products on the CPU through oneDNN where it is the faster library.

PyTorch's CPU build sends float32 ``mm``/``linear`` to MKL, which takes its AVX2 code path on CPUs that are not
Intel's: on the AMD EPYC (AVX-512) of ``benchmarks/README.md`` that is about 210 GFLOP/s, while oneDNN, which PyTorch
also ships, runs the same IEEE float32 products at 450-490 GFLOP/s (forward, input gradient and weight gradient
shapes of a training step alike). Both round every product and sum in float32; they differ only in summation order.

:func:`preferred` decides once, from the CPU's vendor (``LITGPT_FP32_GEMM=onednn`` or ``=default`` overrides it), so
a machine always takes the same path. :func:`linear` (with its own backward) and :func:`mm` are used by
:class:`litgpt.kernels.CPULinear` and by the training loss (:mod:`litgpt.loss`); elsewhere, or for other dtypes and
devices, or under ``torch.compile`` (whose CPU backend picks its own GEMMs), callers keep PyTorch's operators.
"""

from __future__ import annotations

import os
from functools import cache

import torch
import torch.nn.functional as F


def _cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


@cache
def preferred() -> bool:
    """True where float32 CPU products should go through oneDNN: x86 CPUs with AVX-512 that are not Intel's."""
    choice = os.environ.get("LITGPT_FP32_GEMM", "auto")
    if choice not in ("auto", "onednn", "default"):
        raise ValueError(f"LITGPT_FP32_GEMM must be auto, onednn or default, got {choice!r}")
    if choice == "default" or not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise.default  # noqa: B018 (present in PyTorch's CPU builds with oneDNN)
    except (AttributeError, RuntimeError):
        return False
    if choice == "onednn":
        return True
    return torch.backends.cpu.get_cpu_capability() == "AVX512" and _cpu_vendor() not in ("", "GenuineIntel")


def applies(*tensors: torch.Tensor) -> bool:
    """Whether these tensors' product should take oneDNN: all float32 on the CPU, no autocast, not compiling, and
    preferred."""
    return (
        all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
        and not torch.compiler.is_compiling()
        and not torch.is_autocast_enabled("cpu")
        and preferred()
    )


def _product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T + b`` for a 2-D ``x`` (strided views are fine: oneDNN reads the strides)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [None], "")


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D float32 CPU tensors (no autograd).

    oneDNN's linear copies a strided input (its weight may be strided). For ``a`` a transposed view, computing
    ``(b.T @ a.T).T`` instead copies ``b.T`` and the result, which is far less for a weight gradient of a large output
    layer (``logits.T @ hidden``: 50k x 1k logits copied, against a 1k x 128 input and a 50k x 128 result)."""
    if not a.is_contiguous() and a.t().is_contiguous() and b.numel() + a.shape[0] * b.shape[1] < a.numel():
        return _product(b.t().contiguous(), a).t().contiguous()
    return _product(a, b.t())


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        x2 = x.reshape(-1, x.shape[-1])
        need_x, need_w, need_b = ctx.needs_input_grad
        ctx.save_for_backward(x2 if need_w else None, weight if need_x else None)
        ctx.shape, ctx.need_b = x.shape, need_b
        return _product(x2, weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x2, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        gx = mm(g, weight).view(ctx.shape) if weight is not None else None
        gw = mm(g.t(), x2) if x2 is not None else None
        gb = g.sum(0) if ctx.need_b else None
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` with oneDNN's float32 products forward and backward where :func:`applies`, else ``F.linear``."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if x.numel() and applies(*tensors):
        return _Linear.apply(x, weight, bias)
    return F.linear(x, weight, bias)
