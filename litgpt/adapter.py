"""Adapter (LLaMA-Adapter) and Adapter v2 for the GPT.

Adapter: from layer ``adapter_start_layer`` on, every attention learns ``adapter_prompt_length`` prefix embeddings
(``attn.adapter_wte``). The prefix goes through the layer's own qkv projection; the queries attend to its keys and
values (no causal mask, no rotary embedding) and the result is added to the attention output times a per-head
``attn.gating_factor`` (shape (1, 1, n_head, 1), as the established release stores it) that starts at zero, so
training starts from the base model exactly.

Adapter v2 adds, on every linear layer, a learned output bias (``adapter_bias``, zero) and scale (``adapter_scale``,
one): ``y = scale * (W x + b + bias)``; the blocks' norm_1/norm_2 and ln_f are trained as well. Parameter names
follow the established release (``<linear>.linear.weight`` for the wrapped weight), so its
``lit_model.pth.adapter(_v2)`` files load here.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from litgpt.errors import LitGPTError
from litgpt.model import CausalSelfAttention, softcap

ADAPTER_WEIGHTS = "lit_model.pth.adapter"
ADAPTER_V2_WEIGHTS = "lit_model.pth.adapter_v2"
ADAPTER_KEYS = ("adapter_wte", "gating_factor")
ADAPTER_V2_KEYS = ADAPTER_KEYS + ("adapter_bias", "adapter_scale")


class AdapterAttention(CausalSelfAttention):
    """Causal self-attention plus a gated attention over learned prefix embeddings (set up by :func:`add_adapter`)."""

    adapter_wte: nn.Embedding
    gating_factor: nn.Parameter

    def adapter_output(self, q: torch.Tensor) -> torch.Tensor:
        """The queries' attention over the prefix, (B, nh, T, hs).

        The prefix keys and values follow the established release, which reads the projected prefix as
        ``n_query_groups`` blocks of ``(q_per_kv + 2) * head_size`` features (the last two heads of a block being its
        key and value) although its qkv weight is laid out ``[Q | K | V]``; its checkpoints were trained with those
        numbers, so they are computed the same way here. Neither rotary embedding nor the q/k norms touch the prefix.
        """
        cfg = self.config
        hs, nh, ng = cfg.head_size, cfg.n_head, cfg.n_query_groups
        q_per_kv = nh // ng
        prefix = self.adapter_wte.weight  # (aT, C)
        aT = prefix.shape[0]
        blocks = self.qkv(prefix.to(q.dtype) if prefix.is_floating_point() else prefix).view(aT, ng, q_per_kv + 2, hs)
        ak = blocks[:, :, q_per_kv].transpose(0, 1).unsqueeze(0)  # (1, ng, aT, hs)
        av = blocks[:, :, q_per_kv + 1].transpose(0, 1).unsqueeze(0)
        if ng != nh:
            ak, av = ak.repeat_interleave(q_per_kv, dim=1), av.repeat_interleave(q_per_kv, dim=1)
        ak, av = ak.to(q.dtype), av.to(q.dtype)
        if cfg.attention_logit_softcapping is not None:
            scores = softcap((q @ ak.transpose(-2, -1)) * self.scale, cfg.attention_logit_softcapping)
            return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ av
        B = q.shape[0]
        return F.scaled_dot_product_attention(q, ak.expand(B, -1, -1, -1), av.expand(B, -1, -1, -1), scale=self.scale)

    def attend(self, q, k, v, mask) -> torch.Tensor:
        y = super().attend(q, k, v, mask)
        gate = self.gating_factor.to(y.dtype).transpose(1, 2)  # stored (1, 1, nh, 1); y is (B, nh, T, hs)
        return y + gate * self.adapter_output(q)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Earlier releases of this tool stored the gate as (1, n_head, 1, 1): read it in the established layout."""
        key = prefix + "gating_factor"
        gate = state_dict.get(key)
        if gate is not None and gate.dim() == 4 and gate.shape[1] == self.config.n_head and gate.shape[2] == 1:
            state_dict[key] = gate.transpose(1, 2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def add_adapter(model: nn.Module, prompt_length: int = 10, start_layer: int = 2) -> nn.Module:
    """Turn the attention of layers ``start_layer..`` of ``model`` (a GPT) into :class:`AdapterAttention`, in place."""
    config = model.config
    if prompt_length < 1:
        raise LitGPTError(f"adapter_prompt_length must be >= 1, got {prompt_length}")
    if not 0 <= start_layer < config.n_layer:
        raise LitGPTError(
            f"adapter_start_layer={start_layer} leaves no layer to adapt in a {config.n_layer}-layer model; "
            f"use a value in [0, {config.n_layer - 1}]"
        )
    for block in list(model.transformer.h)[start_layer:]:
        attn = block.attn
        if isinstance(attn, AdapterAttention):
            continue
        weight = attn.proj.weight
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        attn.__class__ = AdapterAttention
        attn.adapter_wte = nn.Embedding(prompt_length, config.n_embd, device=weight.device, dtype=dtype)
        attn.gating_factor = nn.Parameter(torch.zeros(1, 1, config.n_head, 1, device=weight.device, dtype=dtype))
        if weight.device.type != "meta":
            nn.init.normal_(attn.adapter_wte.weight, mean=0.0, std=0.02)
    return model


class AdapterV2Linear(nn.Module):
    """A frozen linear (``self.linear``) with a learned output bias and scale: ``scale * (linear(x) + bias)``."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        self.adapter_bias = nn.Parameter(torch.zeros(self.out_features, device=weight.device, dtype=dtype))
        self.adapter_scale = nn.Parameter(torch.ones(self.out_features, device=weight.device, dtype=dtype))

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return self.adapter_scale.to(out.dtype) * (out + self.adapter_bias.to(out.dtype))


def add_adapter_v2(model: nn.Module, prompt_length: int = 10, start_layer: int = 2) -> nn.Module:
    """Adapter prefixes (as :func:`add_adapter`) plus bias and scale on every linear of ``model``, in place."""
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (name.startswith("transformer.h.") or name == "lm_head")
    ]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if not isinstance(linear, AdapterV2Linear):
            setattr(parent, child, AdapterV2Linear(linear))
    return add_adapter(model, prompt_length, start_layer)


def is_adapter_param(name: str) -> bool:
    return any(k in name for k in ADAPTER_KEYS)


def is_adapter_v2_param(name: str) -> bool:
    """Adapter v2 trains the prefixes, gates, biases and scales, and (as the established release) the two norms of
    every block and the final norm; other norms (q/k norms, Gemma's post-attention/post-MLP norms) stay frozen."""
    modules = name.split(".")[:-1]
    return any(k in name for k in ADAPTER_V2_KEYS) or any(m in ("norm_1", "norm_2", "ln_f") for m in modules)


def mark_only_adapter_as_trainable(model: nn.Module, v2: bool = False) -> None:
    keep = is_adapter_v2_param if v2 else is_adapter_param
    for name, param in model.named_parameters():
        param.requires_grad = keep(name)
