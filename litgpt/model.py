"""One GPT, driven by :class:`litgpt.config.Config`, covering every supported architecture.

Families differ only in configuration: norms (LayerNorm / RMSNorm with Gemma's unit offset), residual layout
(sequential, parallel, shared norm, post norms), attention (MHA / GQA / MQA with a fused qkv, q/k norms, partial
rotary, sliding windows, soft-capping) and MLP (GPT-NeoX, LLaMA, Gemma, mixture of experts).

Decoding uses a static, preallocated KV cache indexed by ``input_pos`` so that the decode step has fixed shapes.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from litgpt.config import Config
from litgpt.errors import LitGPTError

PREFILL_ROWS = 128  # inference inputs of this many tokens or more run in the weights' dtype (GPT.compute_dtype)


def long_input(x: torch.Tensor) -> bool:
    """Whether activations ``x`` (..., features) hold ``PREFILL_ROWS`` tokens or more."""
    return x.numel() >= PREFILL_ROWS * x.shape[-1]


class GPT(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=config.lm_head_bias)
        self.transformer = nn.ModuleDict(
            dict(
                wte=Embedding(config.padded_vocab_size, config.n_embd),
                h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                ln_f=make_norm(config, config.n_embd),
            )
        )
        # one rope table per distinct (base, scaling) among the layers; layer i reads table rope_table_of[i]
        variants = [(config.rope_base_for(i), repr(config.rope_adjustments_for(i))) for i in range(config.n_layer)]
        distinct = list(dict.fromkeys(variants))
        self.rope_table_of = [distinct.index(v) for v in variants]
        self.rope_layers = [variants.index(v) for v in distinct]  # a representative layer per table
        self._max_seq_length = config.block_size
        # activations in this dtype instead of the weights' own (see compute_dtype); set by LLM.distribute on CPUs,
        # which store bfloat16 weights but compute faster in float32 (see litgpt.kernels)
        self.activation_dtype: torch.dtype | None = None
        # what the KV cache holds from the last generation (litgpt.generation.CachedPrefix), reused by the next one
        self.cached_prefix = None
        # training: keep only each block's input and recompute its activations in the backward pass
        self.activation_checkpointing = False
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self._long_rope: tuple[torch.Tensor, torch.Tensor] | None = None  # longrope's long-factor tables, when used
        # longrope with a KV cache: the tokens at each cache position, and how far the cache holds keys rotated with
        # the short factors (re-run with the long ones once a sequence outgrows the pretraining length)
        self._longrope_tokens: torch.Tensor | None = None
        self._longrope_short_end = 0

    @classmethod
    def from_name(cls, name: str, **overrides) -> GPT:
        return cls(Config.from_name(name, **overrides))

    # -- sequence length and caches
    @property
    def max_seq_length(self) -> int:
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if value > self.config.block_size:
            raise LitGPTError(
                f"max_seq_length {value} exceeds the model's block_size {self.config.block_size}; use a shorter length"
            )
        self._max_seq_length = value
        self._long_rope = None
        if self.rope_cos.numel() and self.rope_cos.shape[1] != value:
            self.rope_cos, self.rope_sin = self.build_rope_cache(device=self.rope_cos.device)

    def build_rope_cache(
        self, device: torch.device | None = None, long: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One (cos, sin) table per distinct rope variant; ``long``: longrope's long-factor tables."""
        cos, sin = zip(
            *(
                rope_cache(
                    self.max_seq_length,
                    self.config.rope_n_elem,
                    base=self.config.rope_base_for(layer),
                    condense_ratio=self.config.rope_condense_ratio,
                    adjustments=self.config.rope_adjustments_for(layer),
                    device=device,
                    long=long,
                )
                for layer in self.rope_layers
            )
        )
        return torch.stack(cos), torch.stack(sin)

    def _rope(self, device: torch.device, long: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if long:
            cached = self._long_rope
            if cached is None or cached[0].device != device or cached[0].shape[1] != self.max_seq_length:
                self._long_rope = cached = self.build_rope_cache(device=device, long=True)
            return cached
        if self.rope_cos.numel() == 0 or self.rope_cos.device != device or self.rope_cos.shape[1] != self.max_seq_length:
            self.rope_cos, self.rope_sin = self.build_rope_cache(device=device)
        return self.rope_cos, self.rope_sin

    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Preallocate a KV cache of ``max_seq_length`` (default: the model's) positions in every block."""
        self.cached_prefix = None
        if max_seq_length is not None:
            self.max_seq_length = max_seq_length
        specs = []
        for block in self.transformer.h:  # each cache lives beside its block (blocks may sit on different devices)
            param = block.attn.qkv.weight
            cfg = block.attn.config  # tensor parallelism keeps a share of the query groups per process
            shape = (batch_size, cfg.n_query_groups, self.max_seq_length, cfg.head_size)
            # the weights' dtype: bfloat16 keys and values for a bfloat16 model, also with float32 activations (its
            # decode steps read the cache: half the bytes of a float32 one)
            specs.append((shape, torch.device(device or param.device), dtype or param.dtype))
        pool = None
        if len(set(specs)) == 1 and specs[0][1].type == "cpu":
            # one block of memory for every layer's keys and values on the CPU, in 2 MB pages where Linux gives them
            # (a long context reads as many bytes of cache as of weights per token; 4 KB pages slow that down)
            from litgpt import hugepages

            pool = hugepages.zeros((2 * len(specs), *specs[0][0]), specs[0][2])
        for i, (block, (shape, dev, dt)) in enumerate(zip(self.transformer.h, specs)):
            kv = None if pool is None else (pool[2 * i], pool[2 * i + 1])
            block.attn.kv_cache = KVCache(*shape, device=dev, dtype=dt, tensors=kv)
        self._longrope_tokens, self._longrope_short_end = None, 0
        if self.config.longrope_original_max_seq_len is not None:
            self._longrope_tokens = torch.zeros(batch_size, self.max_seq_length, dtype=torch.long, device=device)

    def clear_kv_cache(self) -> None:
        self.cached_prefix = None
        self._longrope_tokens, self._longrope_short_end = None, 0
        for block in self.transformer.h:
            block.attn.kv_cache = None

    # -- forward
    def forward(
        self,
        idx: torch.Tensor,
        input_pos: torch.Tensor | None = None,
        *,
        input_pos_maxp1: int | None = None,
        key_padding_mask: torch.Tensor | None = None,
        lm_head_chunk_size: int = 0,
        return_hidden: bool = False,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Logits for ``idx`` of shape (B, T).

        ``input_pos`` (T,) selects the cache positions to write (decoding with a KV cache); without it the whole
        sequence is processed causally from position 0. ``input_pos_maxp1`` (one more than the last of the
        increasing ``input_pos``) bounds how much of the cache is read.
        ``key_padding_mask`` (B, S) marks valid cache positions (False for left padding in batched generation).
        ``lm_head_chunk_size`` > 0 returns a list of logits chunks along T (saves memory with chunked losses).
        With ``targets`` (B, T), the token each position should predict (-100: none), it returns the mean cross
        entropy instead, with the output layer run on the supervised positions only (:mod:`litgpt.loss`).
        """
        B, T = idx.shape
        device = self.transformer.wte.weight.device
        idx = idx.to(device)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.to(device)
        if input_pos is None:
            if T > self.max_seq_length:
                raise LitGPTError(f"Sequence of length {T} is longer than max_seq_length {self.max_seq_length}")
            positions = torch.arange(T, device=idx.device)
        else:
            if self.transformer.h[0].attn.kv_cache is None:
                raise LitGPTError("input_pos was given but the KV cache is not set; call model.set_kv_cache() first")
            positions = input_pos = input_pos.to(device)
        # longrope, as transformers computes it: a forward whose last position is past the pretraining length
        # rotates all its tokens with the long factors, any other with the short ones. When decoding first crosses
        # that length, the keys in the cache were rotated with the short factors: like transformers' generate, the
        # whole sequence is run again from position 0 with the long ones (once) and the new positions' rows returned
        original = self.config.longrope_original_max_seq_len
        long = original is not None and int(positions.max()) + 1 > original
        rows = T
        if original is not None and input_pos is not None:
            idx, positions = self._longrope_track(idx, positions, long)
            input_pos = positions
            B, T = idx.shape
        cos, sin = self._rope(device, long)
        cos, sin = cos[:, positions], sin[:, positions]
        S = input_pos_maxp1 if input_pos_maxp1 is not None else (self.max_seq_length if input_pos is not None else T)
        # no mask (the fast attention paths) for one new token reading a cache cut at its own position (it sees every
        # key), and for a prefill from position 0: T increasing positions below input_pos_maxp1 == T are 0..T-1, so
        # the cache cut at T is a causal square
        unmasked = (
            input_pos is not None
            and key_padding_mask is None
            and input_pos_maxp1 is not None
            and (T == 1 or input_pos_maxp1 == T)
        )
        mask = None
        if not unmasked and (input_pos is not None or key_padding_mask is not None or self.config.sliding_window_size):
            mask = build_mask(positions, S, key_padding_mask)

        x = self.transformer.wte(idx)
        dtype = self.compute_dtype(B * T)
        if dtype is not None:
            x = x.to(dtype)
        if self.config.scale_embeddings:
            x = x * torch.tensor(self.config.n_embd**0.5, dtype=x.dtype)
        window_mask = None  # built once, shared by every sliding-window layer (one window size per model)
        for i, block in enumerate(self.transformer.h):
            t = self.rope_table_of[i]
            layer_mask = mask
            if self.config.is_sliding(i):
                if window_mask is None:
                    window = sliding_mask(positions, S, self.config.sliding_window_size)
                    window_mask = window if mask is None else mask & window
                layer_mask = window_mask
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, cos[t], sin[t], layer_mask, input_pos, input_pos_maxp1, use_reentrant=False)
            else:
                x = block(x, cos[t], sin[t], layer_mask, input_pos, input_pos_maxp1)
        if rows != T:  # a longrope re-run of the prefix: only the rows asked for
            x = x[:, T - rows :]
        x = self.transformer.ln_f(x)
        if self.activation_dtype is not None:  # the output layer takes float32 inputs after a bfloat16 prefill too
            x = x.to(self.activation_dtype)
        if return_hidden:
            return x
        if targets is not None:
            from litgpt.loss import output_loss

            cap = self.config.final_logit_softcapping
            return output_loss(self.lm_head, x, targets.to(device), softcap=cap, project=self.project)
        if lm_head_chunk_size > 0:
            # contiguous chunks: a strided 3-D input makes F.linear fall back to a batched matmul that copies the
            # (vocab, n_embd) weight once per sequence, and transposes the logits, forward and backward
            return [self.project(chunk.contiguous()) for chunk in x.split(lm_head_chunk_size, dim=1)]
        return self.project(x)

    def _longrope_track(
        self, idx: torch.Tensor, positions: torch.Tensor, long: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Record the tokens written to the KV cache; at the first long forward after short ones, prepend the
        cached prefix so that it is rotated again, with the long factors (what transformers' generate does)."""
        tokens = self._longrope_tokens
        if tokens is None or tokens.shape[0] < idx.shape[0]:
            raise LitGPTError("longrope decoding needs the KV cache set with model.set_kv_cache(batch_size=...)")
        tokens = tokens[: idx.shape[0]]
        start = int(positions.min())
        if long and self._longrope_short_end > 0 and start > 0:
            if not torch.equal(positions, torch.arange(start, start + idx.shape[1], device=positions.device)):
                raise LitGPTError("longrope decoding past the pretraining length needs consecutive input_pos")
            idx = torch.cat((tokens[:, :start].to(idx.device), idx), dim=1)
            positions = torch.arange(idx.shape[1], device=positions.device)
        tokens[:, positions.to(tokens.device)] = idx.to(tokens.device)
        self._longrope_short_end = 0 if long else max(self._longrope_short_end, int(positions.max()) + 1)
        return idx, positions

    def compute_dtype(self, rows: int) -> torch.dtype | None:
        """The activations' dtype for an input of ``rows`` tokens; None: the weights' own. ``activation_dtype``
        (float32 over bfloat16 weights, CPU inference) applies to decode steps and short inputs. An inference input
        of ``PREFILL_ROWS`` tokens or more (a prefill) runs in the weights' dtype where the CPU has AVX512-BF16, as
        a bfloat16 model does: there bfloat16 products and attention are 2-4x faster than float32 ones (the casts
        of a float32 prefill took a quarter of its time); its keys and values go to the cache in the cache's dtype."""
        if self.activation_dtype is None:
            return None
        if rows >= PREFILL_ROWS and not torch.is_grad_enabled() and self.lm_head.weight.device.type == "cpu":
            from litgpt import kernels

            if kernels.native_bf16():
                return None
        return self.activation_dtype

    def project(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(x)
        if self.config.final_logit_softcapping is not None:
            logits = softcap(logits, self.config.final_logit_softcapping)
        return logits

    # -- initialisation for training from scratch
    def init_weights(self) -> None:
        """GPT-2 style init: N(0, 0.02), output projections scaled by 1/sqrt(2 * n_layer), zero biases, unit norms."""
        std = 0.02
        proj_std = std / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=proj_std if name.endswith("proj") else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, (RMSNorm, nn.LayerNorm)):
                module.reset_parameters()


class Block(nn.Module):
    def __init__(self, config: Config, index: int) -> None:
        super().__init__()
        if not config.parallel_residual and config.shared_attention_norm:
            raise LitGPTError("shared_attention_norm=True only makes sense with parallel_residual=True")
        self.config = config
        self.norm_1 = make_norm(config, config.n_embd) if config.norm_1 else nn.Identity()
        self.attn = CausalSelfAttention(config, index)
        self.post_attention_norm = make_norm(config, config.n_embd) if config.post_attention_norm else nn.Identity()
        self.norm_2 = (
            make_norm(config, config.n_embd) if config.norm_2 and not config.shared_attention_norm else nn.Identity()
        )
        self.mlp = MLP_CLASSES[config.mlp_class_name](config)
        self.post_mlp_norm = make_norm(config, config.n_embd) if config.post_mlp_norm else nn.Identity()

    def forward(self, x, cos, sin, mask, input_pos, input_pos_maxp1=None) -> torch.Tensor:
        x_normed = self.norm_1(x)
        attn_out = self.post_attention_norm(self.attn(x_normed, cos, sin, mask, input_pos, input_pos_maxp1))
        if self.config.parallel_residual:
            mlp_in = x_normed if self.config.shared_attention_norm else self.norm_2(x)
            return x + attn_out + self.post_mlp_norm(self.mlp(mlp_in))
        x = x + attn_out
        return x + self.post_mlp_norm(self.mlp(self.norm_2(x)))


class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config, index: int) -> None:
        super().__init__()
        self.config = config
        self.qkv = nn.Linear(config.n_embd, config.attn_qkv_size, bias=config.bias or config.attn_bias)
        self.proj = nn.Linear(config.n_head * config.head_size, config.n_embd, bias=config.bias)
        if config.norm_qk:
            olmo2 = config.norm_qk_type == "olmo2"
            self.norm_q = make_norm(config, config.head_size * (config.n_head if olmo2 else 1))
            self.norm_k = make_norm(config, config.head_size * (config.n_query_groups if olmo2 else 1))
        self.scale = 1.0 / math.sqrt(config.attention_scores_scalar or config.head_size)
        self.kv_cache: KVCache | None = None

    def forward(self, x, cos, sin, mask, input_pos, input_pos_maxp1=None) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv(x)
        heads = self.fused_heads(qkv, cos, sin)
        q, k, v = heads if heads is not None else self.heads(qkv, cos, sin)
        if input_pos is not None:
            cache = self.kv_cache.update(input_pos, k, v)
            if input_pos_maxp1 != T:  # else (positions 0..T-1) the cache's first T positions are this k and v
                k, v = cache if input_pos_maxp1 is None else (c[:, :, :input_pos_maxp1] for c in cache)
        y = self.attend(q, k, v, mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.config.n_head * self.config.head_size))

    def heads(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q (B, nh, T, hs), k and v (B, ng, T, hs) from the qkv output, with q/k norms and rotary embeddings."""
        cfg = self.config
        B, T, _ = qkv.shape
        hs, nh, ng = cfg.head_size, cfg.n_head, cfg.n_query_groups
        q, k, v = qkv.split((nh * hs, ng * hs, ng * hs), dim=-1)
        if cfg.norm_qk and cfg.norm_qk_type == "olmo2":
            q, k = self.norm_q(q), self.norm_k(k)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, ng, hs).transpose(1, 2)
        v = v.view(B, T, ng, hs).transpose(1, 2)
        if cfg.norm_qk and cfg.norm_qk_type != "olmo2":
            q, k = self.norm_q(q), self.norm_k(k)
        return apply_rope(q, cos, sin, cfg.rope_n_elem), apply_rope(k, cos, sin, cfg.rope_n_elem), v

    def fused_heads(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple | None:
        """:meth:`heads` in one pass (``litgpt.kernels``): layers without q/k norms for CPU training and long inference
        inputs (a prefill), both ways; layers with per-head q/k RMSNorms (Gemma 3, Qwen3) for long inference inputs;
        else None."""
        cfg = self.config
        training = qkv.requires_grad and torch.is_grad_enabled()
        if not (training or long_input(qkv)):
            return None
        from litgpt import kernels

        shape = (cfg.n_head, cfg.n_query_groups, cfg.head_size, cfg.rope_n_elem)
        if not cfg.norm_qk:
            return kernels.qkv_heads(qkv, cos, sin, *shape)
        norms = (self.norm_q, self.norm_k)
        if training or cfg.norm_qk_type == "olmo2" or any(type(n) is not RMSNorm for n in norms):
            return None
        return kernels.qkv_heads_norm(qkv, cos, sin, *shape, *(n.applied_weight() for n in norms), self.norm_q.eps)

    def attend(self, q, k, v, mask) -> torch.Tensor:
        cfg = self.config
        # the queries' dtype: float32 decode steps over a bfloat16 cache (exact), a bfloat16 prefill over float32 keys
        if k.dtype != q.dtype:
            k, v = k.to(q.dtype), v.to(q.dtype)
        if cfg.attention_logit_softcapping is not None:
            if cfg.n_query_groups != cfg.n_head:
                rep = cfg.n_head // cfg.n_query_groups
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            scores = softcap((q @ k.transpose(-2, -1)) * self.scale, cfg.attention_logit_softcapping)
            if mask is None and q.shape[2] > 1:
                mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v
        if (mask is None or mask.dim() == 2) and use_materialized_attention(q, k, v):
            return materialized_attention(q, k, v, self.scale, mask)
        gqa = cfg.n_query_groups != cfg.n_head
        if gqa and mask is not None:  # SDPA's GQA path with a mask is very slow on CPU: expand K/V instead
            rep = cfg.n_head // cfg.n_query_groups
            k, v, gqa = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1), False
        long_masked = mask is not None and mask.dim() == 2 and q.shape[2] >= 2 * BAND_ROWS
        if long_masked and q.device.type == "cpu" and not torch.compiler.is_compiling():
            return banded_attention(q, k, v, mask, self.scale)
        # mask None: causal over a square (prefill from position 0), or nothing to mask (one token, exact cache cut)
        causal = mask is None and q.shape[2] > 1
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale, enable_gqa=gqa)


BAND_ROWS = 256  # queries per chunk of banded_attention


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Masked attention of a long input (a prefill through a sliding window, or after a cached prefix) in chunks of
    ``BAND_ROWS`` queries, each over the keys its rows may see only: a masked attention kernel computes every score
    of the (T, S) square, so a 512-position window over a 1,900-token prompt (Gemma-3's local layers) cost as much as
    full attention, and a masked causal square twice what it needs. ``mask``: boolean (T, S); k, v: (B, nh, S, hs)."""
    out = [
        F.scaled_dot_product_attention(q[:, :, rows], k[:, :, keys], v[:, :, keys], attn_mask=bias, scale=scale)
        for rows, keys, bias in mask_bands(mask, q.dtype)
    ]
    return torch.cat(out, dim=2)


def mask_bands(mask: torch.Tensor, dtype: torch.dtype) -> list[tuple[slice, slice, torch.Tensor]]:
    """For each chunk of ``BAND_ROWS`` rows of a boolean (T, S) mask: its rows, the keys any of them may see, and the
    mask over those as an additive ``dtype`` term (what the attention kernel would convert it to on every call).
    Kept on the mask itself, so every window layer of a forward (they share one mask) reuses them and they go with it."""
    kept = mask.__dict__.setdefault("_litgpt_bands", {})
    if dtype in kept:
        return kept[dtype]
    bands = []
    for a in range(0, mask.shape[0], BAND_ROWS):
        rows = slice(a, a + BAND_ROWS)
        seen = mask[rows].any(0).nonzero()
        keys = slice(int(seen[0]), int(seen[-1]) + 1) if len(seen) else slice(None)  # none: as the full kernel
        allowed = mask[rows, keys]
        bias = torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill_(~allowed, float("-inf"))
        bands.append((rows, keys, bias))
    kept[dtype] = bands
    return bands


MATERIALIZED_ATTENTION_LIMIT = 1 << 24  # attention probabilities (B * n_head * T * T) kept per layer at most (32 MB)


def use_materialized_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """bfloat16 training on a CPU over short causal squares: where :func:`materialized_attention` pays."""
    B, nh, T, _ = q.shape
    return (
        q.device.type == "cpu"
        and q.dtype == torch.bfloat16
        and T > 1
        and k.shape[2] == T
        and B * nh * T * T <= MATERIALIZED_ATTENTION_LIMIT
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )


def materialized_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention over a causal square as batched products: scores (with the mask added inside the score product),
    softmax, values. ``mask`` is None (causal) or a boolean (T, T) one (causal and sliding-window layers).

    The query heads of one K/V group are stacked along the rows, so grouped-query attention shares K and V without
    copying them. For bfloat16 training on a CPU this runs forward and backward in about half the time of SDPA's
    flash kernel (whose backward is slow there), at the cost of keeping the (T, T) probabilities for the backward.
    Where the CPU kernels apply, the softmax and its backward are theirs (:func:`litgpt.kernels.attention`).
    """
    B, nh, T, hs = q.shape
    ng = k.shape[1]
    rep = nh // ng
    from litgpt import kernels

    rows = (B * ng, rep * T, hs)
    out = kernels.attention(q.reshape(rows), k.reshape(B * ng, T, hs), v.reshape(B * ng, T, hs), scale, mask)
    if out is not None:
        return out.view(B, nh, T, hs)
    bias = causal_bias(T, rep, q.dtype, q.device) if mask is None else mask_bias(mask, rep, q.dtype)
    queries = (q * scale).reshape(B * ng, rep * T, hs)
    keys_t = k.reshape(B * ng, T, hs).transpose(1, 2)
    scores = torch.baddbmm(bias, queries, keys_t)
    return (scores.softmax(dim=-1) @ v.reshape(B * ng, T, hs)).view(B, nh, T, hs)


def mask_bias(allowed: torch.Tensor, rep: int, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (T, S) mask as the additive (rep * T, S) term: 0 where query row ``i % T`` may see key ``j``, -inf
    elsewhere."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf")).repeat(rep, 1)


@functools.lru_cache(maxsize=8)
def causal_bias(T: int, rep: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return mask_bias(torch.ones(T, T, dtype=torch.bool, device=device).tril(), rep, dtype)


class KVCache(nn.Module):
    """Static cache: (B, n_query_groups, max_seq_length, head_size), written in place at ``input_pos``."""

    def __init__(self, batch_size, n_groups, max_seq_length, head_size, device=None, dtype=None, tensors=None) -> None:
        super().__init__()
        shape = (batch_size, n_groups, max_seq_length, head_size)
        k, v = tensors or (torch.zeros(shape, device=device, dtype=dtype) for _ in range(2))  # or given, zeroed
        self.register_buffer("k", k, persistent=False)
        self.register_buffer("v", v, persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = k.shape[0]
        if B != self.k.shape[0]:
            raise LitGPTError(f"batch of {B} does not fit a KV cache made for batch size {self.k.shape[0]}")
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k, self.v


# -- MLPs
class GptNeoxMLP(nn.Module):
    def __init__(self, config: Config, intermediate_size: int | None = None) -> None:
        super().__init__()
        size = intermediate_size or config.intermediate_size
        self.fc = nn.Linear(config.n_embd, size, bias=config.bias)
        self.proj = nn.Linear(size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class LLaMAMLP(nn.Module):
    def __init__(self, config: Config, intermediate_size: int | None = None) -> None:
        super().__init__()
        size = intermediate_size or config.intermediate_size
        self.fc_1 = nn.Linear(config.n_embd, size, bias=config.bias)
        self.fc_2 = nn.Linear(config.n_embd, size, bias=config.bias)
        self.proj = nn.Linear(size, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    glu_activation: str | None = "silu"  # the activation's name in litgpt.kernels.GLU_KINDS (None: PyTorch's)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from litgpt import kernels

        a, b = self.fc_1(x), self.fc_2(x)
        h = kernels.glu(a, b, self.glu_activation)  # one pass each way on a CPU (train.c)
        return self.proj(self.activation(a) * b if h is None else h)


class GemmaMLP(LLaMAMLP):
    @property
    def glu_activation(self) -> str | None:
        return "gelu_tanh" if self.approximate == "tanh" else None

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class LLaMAMoE(nn.Module):
    """Top-k routing over LLaMA-style experts; the chosen experts' weights are renormalised to sum to 1."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.gate = nn.Linear(config.n_embd, config.n_expert, bias=False)
        size = config.moe_intermediate_size or config.intermediate_size
        self.experts = nn.ModuleList(LLaMAMLP(config, size) for _ in range(config.n_expert))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(-1, C)
        logits = self.gate(x)
        top_logits, top_idx = torch.topk(logits, self.config.n_expert_per_token, dim=-1)
        weights = torch.softmax(top_logits, dim=-1, dtype=torch.float32).to(x.dtype)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(top_idx == e)
            if token.numel():
                out.index_add_(0, token, weights[token, slot, None] * expert(x[token]))
        return out.view(B, T, C)


MLP_CLASSES = {"GptNeoxMLP": GptNeoxMLP, "LLaMAMLP": LLaMAMLP, "GemmaMLP": GemmaMLP, "LLaMAMoE": LLaMAMoE}


class Embedding(nn.Embedding):
    """nn.Embedding that skips its random init on the meta device (that path imports the compiler stack: slow)."""

    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            super().reset_parameters()


# -- norms
class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32; ``unit_offset`` scales by (1 + weight) as Gemma does."""

    def __init__(self, size: int, eps: float = 1e-6, unit_offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size))
        self.eps = eps
        self.unit_offset = unit_offset
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight) if self.unit_offset else nn.init.ones_(self.weight)

    def applied_weight(self) -> torch.Tensor:
        """The float32 scale the norm multiplies by (Gemma's 1 + weight), detached and contiguous, for the kernels."""
        weight = self.weight.detach().float()
        return (weight + 1.0 if self.unit_offset else weight).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # training, or a long input (a prefill): the fused kernel (not inside a compiled graph)
        kernel = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) or long_input(x)
        if kernel and not torch.compiler.is_compiling():
            from litgpt import kernels

            y = kernels.rms_norm(x, self.weight, self.applied_weight(), self.eps)
            if y is not None:
                return y
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        weight = self.weight.float() + 1.0 if self.unit_offset else self.weight.float()
        return (x * weight).to(dtype)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters) that also normalises inputs of another dtype than its parameters, in the
    input's dtype: float32 activations over bfloat16 weights (``GPT.activation_dtype``, set for CPU decoding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if weight is not None and weight.dtype != x.dtype:
            weight, bias = weight.to(x.dtype), None if bias is None else bias.to(x.dtype)
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


def make_norm(config: Config, size: int) -> nn.Module:
    if config.norm_class_name == "RMSNorm":
        return RMSNorm(size, eps=config.norm_eps, unit_offset=config.norm_unit_offset)
    if "olmo" in config.name.lower():
        # OLMo (1) normalises without any parameters; the established release's OLMo checkpoints hold no norm tensors
        return LayerNorm(size, eps=config.norm_eps, elementwise_affine=False)
    # LayerNorm always has a weight and a bias, whatever ``config.bias`` says (Falcon, StableLM: bias-free linears,
    # biased norms), as in the established release's checkpoints and in Hugging Face's
    return LayerNorm(size, eps=config.norm_eps)


# -- functional pieces
def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(x / cap) * cap


def build_mask(positions: torch.Tensor, S: int, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean (T, S) causal mask for queries at ``positions``, or (B, 1, T, S) with a key padding mask."""
    keys = torch.arange(S, device=positions.device)
    mask = keys[None, :] <= positions[:, None]
    if key_padding_mask is not None:
        mask = mask[None, None] & key_padding_mask[:, None, None, :S]
    return mask


def sliding_mask(positions: torch.Tensor, S: int, window: int) -> torch.Tensor:
    """Boolean (T, S) mask of the keys at most ``window - 1`` positions back from each query, causal."""
    positions = positions.to(torch.int32)  # half the bytes of int64 through the (T, S) arithmetic
    distance = positions[:, None] - torch.arange(S, dtype=torch.int32, device=positions.device)[None, :]
    return (distance >= 0) & (distance < window)


def rope_cache(
    seq_len: int,
    n_elem: int,
    base: float = 10000,
    condense_ratio: int = 1,
    adjustments: dict | None = None,
    device: torch.device | None = None,
    long: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, n_elem) in float32, halves repeated (rotate-half layout).

    Longrope adjustments (``short_factor``, ``long_factor``, ``attention_factor``) divide each frequency by its own
    factor, the long ones when ``long``, and scale cos and sin by the attention factor."""
    powers = base ** (torch.arange(0, n_elem, 2, device=device, dtype=torch.int64).float() / n_elem)
    scale = None
    if adjustments and "long_factor" in adjustments:
        factors = adjustments["long_factor" if long else "short_factor"]
        inv_freq = 1.0 / (torch.tensor(factors, dtype=torch.float32, device=device) * powers)
        scale = float(adjustments["attention_factor"])
    else:
        inv_freq = 1.0 / powers
        if adjustments:
            inv_freq = adjust_inv_freq(inv_freq, adjustments)
    positions = torch.arange(seq_len, device=device).float() / condense_ratio
    angles = torch.outer(positions, inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    if scale is not None:
        return angles.cos() * scale, angles.sin() * scale
    return angles.cos(), angles.sin()


def adjust_inv_freq(inv_freq: torch.Tensor, adj: dict) -> torch.Tensor:
    """Linear scaling (``factor`` only) or Llama-3.1's frequency-dependent scaling (with low/high factors)."""
    factor = adj["factor"]
    if "low_freq_factor" not in adj:
        return inv_freq / factor
    low, high, old_len = adj["low_freq_factor"], adj["high_freq_factor"], adj["original_max_seq_len"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, blended, scaled)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_elem: int) -> torch.Tensor:
    """Rotate the first ``n_elem`` features of every head (rotate-half convention); the rest pass through."""
    if n_elem == 0:
        return x
    rot, rest = (x[..., :n_elem], x[..., n_elem:]) if n_elem < x.shape[-1] else (x, None)
    half = n_elem // 2
    rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    out = (rot.float() * cos + rotated.float() * sin).to(x.dtype)
    return out if rest is None else torch.cat((out, rest), dim=-1)
