"""Weight-only quantization for inference: ``quantize_model(model, mode)`` swaps ``nn.Linear`` layers in place.

Modes:

* ``int8``: one symmetric scale per output channel (``w ≈ q * scale``, ``q`` in [-127, 127]).
* ``int4``: asymmetric groups of ``group_size`` input features (``w ≈ (q - 8) * scale + zero``, ``q`` in [0, 15]),
  stored two values a byte.
* ``bnb.nf4``, ``bnb.nf4-dq``, ``bnb.fp4``, ``bnb.fp4-dq``, ``bnb.int8``: bitsandbytes' layers (``-dq`` also
  quantizes the 4-bit scales), on a CUDA GPU, or on the CPU with a bitsandbytes release that has its CPU backend
  (0.50 is tested; the established release allows them on CUDA only). On the CPU they are slower than
  ``int8``/``int4``.

On the CPU, inputs of up to ``kernels.kernel_rows`` rows (decode steps, small batches) run our weight-only kernels
(:mod:`litgpt.kernels`, which read the int8/int4 codes directly); larger ones (a prefill) take one dense matrix
product, which measured faster than PyTorch's packed kernels (``aten._weight_int8pack_mm``): on CPUs with
AVX512-BF16 a bfloat16 one, as a bfloat16 model's prefill (int8 codes are exact in bfloat16, their row scales
applied to the output; int4 is dequantized in one C pass), elsewhere a float32 one over the layer dequantized in
one C pass. Without our kernels they
run PyTorch's packed kernels (``aten._weight_int8pack_mm`` and ``aten._weight_int4pack_mm_for_cpu``), which are fast
with bfloat16 activations and many times slower with float32 ones, so a float32 model's activations are rounded to
bfloat16 for them (see ``benchmarks/quantize.py`` for the measurements and the default group size). Elsewhere, or
when a layer's shape suits no kernel, the weight is dequantized on the fly and multiplied with ``F.linear``: less
memory, not faster.

Embeddings, norms and MoE routers stay in floating point; ``lm_head`` is quantized too unless excluded (with a large
vocabulary it is the biggest matmul of a decode step), in int8 when the rest is int4 (``bnb.*`` modes keep it in
floating point, as transformers does with bitsandbytes): the output layer took most of
SmolLM2-135M's int4 loss (perplexity 19.74 with it in int4, 18.89 in int8, 18.86 in float), and llama.cpp's 4-bit
formats likewise keep their output layer at 6 bits or more. Layers are converted one at a time, each float weight freed as
soon as its replacement exists, so two full copies of the model never coexist.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from litgpt import kernels
from litgpt.errors import LitGPTError

MODES = ("int8", "int4", "bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8")
DEFAULT_GROUP_SIZE = 32  # int4: measured as fast as 64/128 for decode here (within noise) and clearly more accurate
GROUP_SIZES = (32, 64, 128, 256)
SKIP = ("gate",)  # MoE routers: tiny, and their top-k choice is sensitive to noise
KERNEL_DTYPE = torch.bfloat16  # activation dtype of PyTorch's CPU kernels (float32 inputs take a slow path)
# int4 block scales and zeros as our CPU kernel stores them: a quarter of a byte per weight in float32, an eighth in
# float16 (SmolLM2-135M's layers: 80 -> 66 MB read a token), and each weight takes the nearest level of the rounded
# grid. float16, as GGUF's 4-bit blocks: on SmolLM2 (weights from a Q4_1 file) the logits stay as close to the float
# model's as with float32 scales (Gemma-3: 2% further); bfloat16 took both 7-8% further. F16_SAFE: weights beyond it
# could overflow a float16 zero, and such a layer keeps float32 ("nibbles" layout).
KERNEL_SCALES = torch.float16
F16_SAFE = 2e4
SLICE_ROWS = 4096  # quantizing works through a weight this many rows at a time (few float copies in flight)


def check_mode(
    mode: str, device_type: str = "cpu", generate_strategy: str | None = None, instead: str = "or use 'int8' or 'int4'"
) -> None:
    """Raise a one-line :class:`LitGPTError` unless ``mode`` can run on ``device_type`` (``instead``: what else the
    user can do, in the error)."""
    if mode not in MODES:
        raise LitGPTError(f"Unknown quantize mode {mode!r}; choose one of {', '.join(MODES)}")
    if generate_strategy is not None:
        raise LitGPTError(f"quantize={mode!r} works with a single device (generate_strategy=None)")
    if mode.startswith("bnb."):
        if device_type not in ("cuda", "cpu") or (device_type == "cuda" and not torch.cuda.is_available()):
            raise LitGPTError(f"quantize={mode!r} runs on a CUDA GPU or the CPU, not on {device_type!r}")
        bnb = import_bitsandbytes(mode)
        if device_type == "cpu" and not bnb_runs_on_cpu():
            raise LitGPTError(
                f"quantize={mode!r} on the CPU needs a bitsandbytes release with its CPU backend (installed: "
                f"{bnb.__version__}): pip install -U bitsandbytes, {instead}"
            )


def import_bitsandbytes(mode: str):
    """The bitsandbytes module, or a one-line error saying how to install it. Its import warns, on CPUs with
    AVX512-BF16, that an optional kernel package from the Hugging Face Hub is missing; its own CPU code runs instead,
    so that warning is kept quiet."""
    import logging

    log = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    except ImportError:
        raise LitGPTError(f"quantize={mode!r} needs bitsandbytes: pip install bitsandbytes") from None
    finally:
        log.setLevel(level)
    return bitsandbytes


@functools.cache
def bnb_runs_on_cpu() -> bool:
    """Whether the installed bitsandbytes quantizes and multiplies on the CPU (tried on a small 4-bit layer)."""
    try:
        probe = bnb_linear("bnb.nf4", torch.ones(64, 64), None, torch.float32, torch.device("cpu"))
        return bool(torch.isfinite(probe(torch.ones(1, 64))).all())
    except Exception:  # older releases: no CPU kernels registered, or a CUDA-only library
        return False


def has_op(name: str) -> bool:
    return hasattr(torch.ops.aten, name)


# ---------------------------------------------------------------------------------------------------------- modules
class QuantizedLinear(nn.Module):
    """Common parts: shapes, an optional bias, and a ``weight`` stand-in.

    ``weight`` is an empty tensor on the layer's device in the model's compute dtype (it follows ``model.to(dtype)``),
    so code that reads ``layer.weight.device`` / ``.dtype`` (for instance to allocate a KV cache) keeps working.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        dtype = dtype or (weight.dtype if weight.dtype.is_floating_point else torch.float32)
        device = weight.device
        self.register_buffer("compute_dtype_marker", torch.empty(0, dtype=dtype, device=device), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype).clone())

    @property
    def weight(self) -> torch.Tensor:
        return self.compute_dtype_marker

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Linear(QuantizedLinear):
    """int8 weights with one float scale per output channel."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        use_kernel: bool | None = None,
    ) -> None:
        super().__init__(weight, bias, dtype)
        q, scales = quantize_int8(weight)
        self.register_buffer("qweight", q)
        self.register_buffer("scales", scales)
        if use_kernel is None:
            use_kernel = weight.device.type == "cpu" and has_op("_weight_int8pack_mm")
        self.use_kernel = use_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self.use_kernel and x.device.type == "cpu":
            ours = self.in_features % kernels.QUANT_BLOCK == 0 and kernels.available()
            if ours and x2.shape[0] <= kernels.kernel_rows("i8"):
                return self._finish(kernels.gemv("i8", x2, self.qweight, self.scales.float().contiguous()), x)
            if ours and not torch.compiler.is_compiling():  # a prefill: one dense product
                if kernels.native_bf16():  # the codes are exact in bfloat16; the row scales apply to the output
                    out = F.linear(x2.to(torch.bfloat16), self.qweight.to(torch.bfloat16))
                    # in place for a bfloat16 prefill (GPT.compute_dtype), whose outputs are rounded to bfloat16
                    out = out.mul_(self.scales) if x.dtype == torch.bfloat16 else out.float() * self.scales
                else:
                    w = kernels.dequantize("i8", self.qweight, self.scales.float().contiguous())
                    out = kernels.gemm.linear(x2, w.to(x2.dtype))
                return self._finish(out, x)
            out = torch.ops.aten._weight_int8pack_mm(
                x2.to(KERNEL_DTYPE).contiguous(), self.qweight, self.scales.to(KERNEL_DTYPE)
            )
        else:
            out = F.linear(x2, self.qweight.to(x.dtype)) * self.scales.to(x.dtype)
        return self._finish(out, x)

    def dequantize(self) -> torch.Tensor:
        return self.qweight.float() * self.scales.float()[:, None]


class Int4Linear(QuantizedLinear):
    """4-bit weights in groups of ``group_size`` input features, each group with a float scale and zero.

    ``layout`` is "gemv" (the layout of our decode kernel, :mod:`litgpt.kernels`: needs in_features and the group size
    divisible by 32; larger inputs such as a prefill are multiplied with the dequantized weight), "cpu-packed"
    (PyTorch's CPU kernel format; needs out_features % 16 == 0 and in_features divisible by the group size) or
    "nibbles" (two values a byte, row-major, dequantized for each matmul; any shape, any device).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        group_size: int = DEFAULT_GROUP_SIZE,
        use_kernel: bool | None = None,
    ) -> None:
        super().__init__(weight, bias, dtype)
        out_features, in_features = weight.shape
        fits = out_features % 16 == 0
        group = kernel_group_size(in_features, group_size)
        on_cpu = weight.device.type == "cpu"
        if use_kernel is None:
            use_kernel = on_cpu and has_op("_weight_int4pack_mm_for_cpu")
        fits_kernel = in_features % 32 == 0 and in_features <= kernels.I4_MAX_FEATURES and group_size % 32 == 0
        # its scales and zeros are float16 (the weight is scanned only where the kernel could take it)
        if use_kernel and on_cpu and fits_kernel and kernels.available() and weight.abs().amax() < F16_SAFE:
            self.layout = "gemv"
        else:
            self.layout = "cpu-packed" if use_kernel and fits and group is not None else "nibbles"
        self.group_size = group if self.layout == "cpu-packed" else group_size
        # (N, Kp) uint8, (N, G), (N, G)
        q, scales, zeros = quantize_int4(weight, self.group_size, KERNEL_SCALES if self.layout == "gemv" else torch.float32)
        if self.layout == "gemv":  # one scale and zero per 32 inputs, float16, as the kernel reads them
            blocks = self.group_size // kernels.I4_GROUP
            self.register_buffer("qweight", kernels.pack_i4(q))
            self.register_buffer("scales", scales.repeat_interleave(blocks, dim=1).to(KERNEL_SCALES).contiguous())
            self.register_buffer("zeros", zeros.repeat_interleave(blocks, dim=1).to(KERNEL_SCALES).contiguous())
        elif self.layout == "cpu-packed":
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)
            self.register_buffer("qweight", packed)
            scales_and_zeros = torch.stack((scales, zeros), dim=-1).transpose(0, 1).contiguous()  # (G, N, 2)
            self.register_buffer("scales_and_zeros", scales_and_zeros.to(KERNEL_DTYPE))
        else:
            self.register_buffer("qweight", q[:, 0::2] | (q[:, 1::2] << 4))
            self.register_buffer("scales", scales)
            self.register_buffer("zeros", zeros)

    def _apply(self, fn, recurse: bool = True):
        # ``model.to(dtype)`` must not change the scale dtype the kernels read
        super()._apply(fn, recurse)
        if self.layout == "cpu-packed" and self.scales_and_zeros.dtype != KERNEL_DTYPE:
            self.scales_and_zeros = self.scales_and_zeros.to(KERNEL_DTYPE)
        if self.layout == "gemv" and self.scales.dtype != KERNEL_SCALES:
            self.scales, self.zeros = self.scales.to(KERNEL_SCALES), self.zeros.to(KERNEL_SCALES)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self.layout == "gemv" and x2.shape[0] <= kernels.kernel_rows("i4"):
            if x.device.type != "cpu":
                raise LitGPTError("this int4 layer was packed for the CPU; quantize the model on the device it runs on")
            out = kernels.gemv("i4", x2, self.qweight, self.scales, self.zeros)
        elif self.layout == "gemv" and x.device.type == "cpu" and not torch.compiler.is_compiling():
            out = _dense_product(x2, kernels.dequantize("i4", self.qweight, self.scales, self.zeros))
        elif self.layout == "cpu-packed":
            if x.device.type != "cpu":
                raise LitGPTError("this int4 layer was packed for the CPU; quantize the model on the device it runs on")
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2.to(KERNEL_DTYPE).contiguous(), self.qweight, self.group_size, self.scales_and_zeros
            )
        else:
            out = F.linear(x2, self.dequantize().to(x.dtype))
        return self._finish(out, x)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight these codes stand for, shape (out_features, in_features)."""
        N, K, g = self.out_features, self.in_features, self.group_size
        if self.layout == "cpu-packed":  # recover it through the kernel: identity input
            eye = torch.eye(K, device=self.qweight.device)
            out = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, g, self.scales_and_zeros.float())
            return out.t().contiguous()
        p = self.qweight
        if self.layout == "gemv":
            g = kernels.I4_GROUP
            q = kernels.unpack_i4(p).float()
        else:
            q = torch.stack((p & 15, p >> 4), dim=-1).reshape(N, -1).float()
        groups = q.view(N, -1, g)
        w = (groups - 8) * self.scales.float()[..., None] + self.zeros.float()[..., None]
        return w.reshape(N, -1)[:, :K]


def _dense_product(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.T`` for a transient float32 CPU weight dequantized from int4 codes. On CPUs with AVX512-BF16 one
    bfloat16 product (as a bfloat16 model's prefill takes; rounding the dequantized weight to bfloat16 costs far less
    than its 4 bits did); elsewhere a float32 product (oneDNN where it is the faster library)."""
    if kernels.native_bf16() and x.dtype in (torch.float32, torch.bfloat16):
        return F.linear(x.to(torch.bfloat16), w.to(torch.bfloat16)).to(x.dtype)
    return kernels.gemm.linear(x, w.to(x.dtype))


class BnbLinear(nn.Module):
    """A bitsandbytes layer behind the same ``weight`` stand-in as the other quantized layers."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype, device: torch.device, mode: str) -> None:
        super().__init__()
        self.inner = inner
        # LLM.int8() multiplies float16 inputs (it casts others, warning at every call)
        self.input_dtype = torch.float16 if mode == "bnb.int8" else None
        self.in_features, self.out_features = inner.in_features, inner.out_features
        self.register_buffer("compute_dtype_marker", torch.empty(0, dtype=dtype, device=device), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.compute_dtype_marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x if self.input_dtype is None else x.to(self.input_dtype)).to(x.dtype)


# ----------------------------------------------------------------------------------------------------- the numbers
def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``(q, scales)`` with ``weight ≈ q * scales[:, None]``. Rows are done in slices, so
    that a large output layer never has float copies of itself in flight."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], SLICE_ROWS):
        rows = slice(start, start + SLICE_ROWS)
        w = weight[rows].detach().float()
        s = (w.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
        q[rows] = torch.round(w / s[:, None]).clamp_(-127, 127)
        scales[rows] = s
    return q, scales


INT4_SPANS = (15, 14, 13, 12, 11)  # levels a group's range may span (15: all of them)
INT4_CLIPS = (0.95, 0.9, 0.85)  # fractions of a group's range to keep, clipping its extremes


def quantize_int4(
    weight: torch.Tensor, group_size: int, scale_dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit groups along the input dimension (zero-padded to a multiple of ``group_size``).

    Returns ``(q, scales, zeros)``: q (N, Kp) uint8 in [0, 15], scales and zeros (N, Kp / group_size) float32, with
    ``w ≈ (q - 8) * scale + zero`` in each group. Each group takes the grid with the least squared error among a
    few: its range split into 15 steps (min-max), into 11-14 steps from its minimum (the levels above unused: exact
    when the weights already lie on such a grid, as 4-bit GGUF weights do), and its range clipped by 5-15% (fewer
    values rounded coarsely for a few extremes clamped, as llama.cpp's k-quants search). Rows are done in slices
    so that the trials never hold more than a few copies of one slice. ``scale_dtype`` (float16 for the CPU
    kernel, ``KERNEL_SCALES``): the scales and zeros are rounded to it (returned as float32 holding those values) and every weight
    takes the nearest level of the rounded grid.
    """
    if group_size < 2 or group_size % 2:
        raise LitGPTError(f"int4 group size must be an even number >= 2, got {group_size}")
    N, K = weight.shape
    pad = -K % group_size
    qs, scales, zeros = [], [], []
    for start in range(0, N, SLICE_ROWS):
        w = weight[start : start + SLICE_ROWS].detach().float()
        if pad:
            w = F.pad(w, (0, pad))
        groups = w.view(w.shape[0], -1, group_size)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
        mid, half = (hi + lo) / 2, (hi - lo) / 2
        trials = [(lo, (hi - lo) / n) for n in INT4_SPANS] + [(mid - half * r, 2 * half * r / 15) for r in INT4_CLIPS]
        best = None
        for low, step in trials:
            step = step.clamp(min=1e-8)
            q = torch.round((groups - low[..., None]) / step[..., None]).clamp_(0, 15)
            err = (q * step[..., None] + low[..., None] - groups).square_().sum(dim=-1)
            if best is None:
                best = [err, q, step, low]
                continue
            better = err < best[0]
            best[0] = torch.where(better, err, best[0])
            best[1] = torch.where(better[..., None], q, best[1])
            best[2], best[3] = torch.where(better, step, best[2]), torch.where(better, low, best[3])
        q, step, zero = best[1], best[2], best[3] + 8 * best[2]
        if scale_dtype != torch.float32:
            step, zero = step.to(scale_dtype).float(), zero.to(scale_dtype).float()
            q = torch.round((groups - (zero - 8 * step)[..., None]) / step[..., None])
            q = q.nan_to_num_(nan=8.0).clamp_(0, 15)  # a step rounded to 0 (a constant group): its zero alone
        qs.append(q.to(torch.uint8).view(w.shape[0], -1))
        scales.append(step)
        zeros.append(zero)
    return torch.cat(qs), torch.cat(scales), torch.cat(zeros)


def kernel_group_size(in_features: int, wanted: int) -> int | None:
    """The group size for the CPU int4 kernel: ``wanted`` if it divides ``in_features``, else the largest smaller
    power of two >= 32 that does (finer groups are only more accurate); None when none does."""
    g = wanted
    while g >= 32:
        if in_features % g == 0:
            return g
        g //= 2
    return None


# ------------------------------------------------------------------------------------------------------- the model
def linear_layers(
    model: nn.Module, include_lm_head: bool = True, skip: Iterable[str] = SKIP
) -> list[tuple[str, nn.Linear]]:
    """``(qualified name, layer)`` for every ``nn.Linear`` to quantize."""
    skip = tuple(skip)
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf in skip or (not include_lm_head and name in ("lm_head", "lm_head.linear")):
            continue
        found.append((name, module))
    return found


def quantize_model(
    model: nn.Module,
    mode: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    include_lm_head: bool = True,
    use_kernel: bool | None = None,
    release=None,
) -> nn.Module:
    """Replace the model's Linear layers with quantized ones, in place, one layer at a time; return the model.

    ``device`` and ``dtype`` say where the quantized model runs and its compute dtype (default: where the weights are,
    in their dtype). The model's float weights may stay on the CPU (memory-mapped) until each layer is converted on
    ``device``; the remaining float parameters (embeddings, norms) are moved last. ``use_kernel`` forces (True) or
    forbids (False) PyTorch's packed CPU kernels (for ``bnb.*``: bitsandbytes' AVX512-BF16 one, see
    :func:`bnb_linear`); by default they are used where available. ``release(weight)``, if
    given, is called on each float weight once its layer is quantized (:meth:`litgpt.checkpoint.MappedFile.release`
    lets go of a memory-mapped weight's pages).
    """
    # bitsandbytes' modes keep the output layer in floating point, as transformers does with them: NF4 there took
    # SmolLM2's perplexity from 31.6 to 35.5 (float: 18.9)
    layers = linear_layers(model, include_lm_head and not mode.startswith("bnb."))
    if not layers:
        return model
    first = layers[0][1].weight
    device = torch.device(device) if device is not None else first.device
    if device.type == "meta":
        raise LitGPTError("the model's weights are not materialised (meta device); load them before quantizing")
    if dtype is None:
        dtype = first.dtype if first.dtype.is_floating_point else torch.float32
    check_mode(mode, device.type)
    with torch.no_grad():
        for name, layer in layers:
            weight = layer.weight.detach().to(device=device)
            bias = None if layer.bias is None else layer.bias.detach().to(device=device, dtype=dtype)
            if mode == "int8":
                new = Int8Linear(weight, bias, dtype=dtype, use_kernel=use_kernel)
            elif mode == "int4" and name in ("lm_head", "lm_head.linear"):
                new = Int8Linear(weight, bias, dtype=dtype, use_kernel=use_kernel)
            elif mode == "int4":
                new = Int4Linear(weight, bias, dtype=dtype, group_size=group_size, use_kernel=use_kernel)
            else:
                new = bnb_linear(mode, weight, bias, dtype, device, use_kernel)
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, new)
            if release is not None:
                release(layer.weight)
            del weight, bias, layer, new
    model.to(device=device, dtype=dtype)
    return model


def bnb_linear(
    mode: str, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype, device, use_kernel: bool | None = None
) -> BnbLinear:
    """A bitsandbytes layer holding ``weight`` quantized on ``device`` (bitsandbytes quantizes on the move there).
    ``use_kernel=False`` keeps 4-bit layers off bitsandbytes' AVX512-BF16 CPU kernel, as training needs: that kernel
    repacks the codes at a first inference call (a validation), and has no backward, so the gradient of what a
    training step computes afterwards would not reach the layer's input."""
    bnb = import_bitsandbytes(mode)

    out_features, in_features = weight.shape
    has_bias = bias is not None
    if mode == "bnb.int8":
        inner = bnb.nn.Linear8bitLt(in_features, out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0)
        inner.weight = bnb.nn.Int8Params(weight.to("cpu", torch.float16), requires_grad=False, has_fp16_weights=False)
    else:
        quant_type = "nf4" if mode.startswith("bnb.nf4") else "fp4"
        double = mode.endswith("-dq")
        inner = bnb.nn.Linear4bit(
            in_features, out_features, bias=has_bias, compute_dtype=dtype, compress_statistics=double,
            quant_type=quant_type,
        )  # fmt: skip
        inner.weight = bnb.nn.Params4bit(
            weight.to("cpu", dtype), requires_grad=False, compress_statistics=double, quant_type=quant_type
        )
    if has_bias:
        inner.bias = nn.Parameter(bias.to("cpu", dtype), requires_grad=False)
    inner = inner.to(device)  # quantizes here
    if hasattr(inner, "support_avx512bf16_for_cpu") and (use_kernel is False or in_features % inner.weight.blocksize):
        inner.support_avx512bf16_for_cpu = False  # the kernel also fails on rows that are not whole blocks
    return BnbLinear(inner, dtype, device, mode)


def load_quantized(
    checkpoint_dir: Path,
    mode: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    config=None,
    **kwargs,
) -> nn.Module:
    """Load a checkpoint memory-mapped on the CPU and quantize it layer by layer onto ``device``."""
    from litgpt.checkpoint import MappedFile
    from litgpt.loading import WEIGHTS, load_model

    check_mode(mode, torch.device(device).type)
    model = load_model(checkpoint_dir, device="cpu", config=config)
    mapped = MappedFile(Path(checkpoint_dir) / WEIGHTS)  # each float weight's pages go once it is quantized
    return quantize_model(model, mode, device=device, dtype=dtype, release=mapped.release, **kwargs)


def quantized_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and persistent buffers (a size to compare across modes)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
