"""The training loss: cross entropy through the output layer, on the supervised positions only.

Two savings over "logits for every position, then ``F.cross_entropy``":

- Positions whose target is ``ignore_index`` (padding, the last position, masked prompts) never reach the output
  layer. On a model with a large vocabulary the output layer is a large share of the work (Gemma-3-270M: 63% of
  the parameters), so this removes real products, not just memory.
- :class:`LinearCrossEntropy` computes the logits in row chunks and turns each chunk into its gradient in place
  (``softmax - onehot``, one pass per row in :func:`litgpt.kernels.cross_entropy_rows_` on the CPU), then multiplies
  it back right away. No float32 copy of the logits, no log-softmax output and no second pass in the backward:
  the rows already hold the gradient of the mean (divided by the number of positions), and the backward returns
  the two gradients it holds (scaled only when the loss's own gradient is not one, as under accumulation).

The result equals ``F.cross_entropy(logits.float(), targets, ignore_index=..., reduction="mean")`` on the full
logits (tested against it).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from litgpt import kernels
from litgpt.kernels import CPULinear, gemm

IGNORE_INDEX = -100  # the target the loss skips (padding, the last position, masked prompts)

CHUNK_BYTES = 1 << 28  # logits held at once (a chunk of rows), in the weight's dtype


def chunk_rows(vocab: int, dtype: torch.dtype) -> int:
    return max(1, CHUNK_BYTES // (vocab * torch.finfo(dtype).bits // 8))


def _cross_entropy_rows_(logits: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    """Per-row losses; ``logits`` becomes ``scale * (softmax - onehot)`` (in its own dtype)."""
    loss = kernels.cross_entropy_rows_(logits, targets, scale)
    if loss is not None:
        return loss
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1)
    loss = lse - z.gather(1, targets[:, None]).squeeze(1)
    grad = z.sub_(lse[:, None]).exp_()
    grad[torch.arange(len(targets), device=grad.device), targets] -= 1
    logits.copy_(grad.mul_(scale))
    return loss


class LinearCrossEntropy(torch.autograd.Function):
    """``sum_i CE(h_i @ W.T + b, t_i) / divisor`` with the gradients computed during the forward pass."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, divisor: float):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        N = h.shape[0]
        losses = h.new_empty(N, dtype=torch.float32)
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = grad_b = None
        step = chunk_rows(weight.shape[0], weight.dtype)
        mm = gemm.mm if gemm.applies(h, weight) else torch.mm  # oneDNN for float32 where MKL is slow (kernels.gemm)
        for start in range(0, N, step):
            hc, tc = h[start : start + step], targets[start : start + step]
            z = gemm.linear(hc, weight, bias)
            losses[start : start + step] = _cross_entropy_rows_(z, tc, 1.0 / divisor)
            if need_h:
                grad_h[start : start + step] = mm(z, weight)
            if need_w:
                grad_w = mm(z.T, hc) if grad_w is None else grad_w.add_(mm(z.T, hc))
            if need_b:
                grad_b = z.sum(0) if grad_b is None else grad_b.add_(z.sum(0))
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return losses.sum() / divisor

    @staticmethod
    def backward(ctx, grad_out):
        grads = list(ctx.saved_tensors)  # already divided by the divisor
        # on the CPU, skip a pass over the (vocab, n_embd) gradient for a plain backward() (no accumulation)
        if not (grad_out.device.type == "cpu" and float(grad_out) == 1.0):
            grads = [None if g is None else g * grad_out.to(g.dtype) for g in grads]
        return grads[0], grads[1], grads[2], None, None


def output_loss(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    softcap: Optional[float] = None,
    project=None,
) -> torch.Tensor:
    """Mean cross entropy of ``head(hidden)`` (B, T, V) against ``targets`` (B, T) over non-ignored positions.

    A plain ``nn.Linear`` head without logit softcapping takes :class:`LinearCrossEntropy`; any other head (LoRA
    on the head, quantized layers, softcapping) goes through ``project`` (hidden -> logits) in row chunks.
    """
    keep = targets.reshape(-1) != ignore_index
    h = hidden.reshape(-1, hidden.shape[-1])[keep]
    t = targets.reshape(-1)[keep]
    divisor = float(max(1, t.numel()))
    fused = type(head) in (torch.nn.Linear, CPULinear) and softcap is None and h.dtype == head.weight.dtype
    if fused and not torch.is_autocast_enabled(h.device.type):
        return LinearCrossEntropy.apply(h, head.weight, head.bias, t, divisor)
    total = h[:0].float().sum()  # 0, in the graph: a batch without supervised positions still backpropagates
    step = chunk_rows(head.out_features if hasattr(head, "out_features") else 1 << 16, torch.float32)
    for start in range(0, h.shape[0], step):
        logits = project(h[start : start + step])
        total = total + F.cross_entropy(logits.float(), t[start : start + step], reduction="sum")
    return total / divisor
