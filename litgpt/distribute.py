"""Spreading one model over several devices for inference.

- ``place_sequentially``: consecutive blocks live on consecutive devices; forward pre-hooks move activations (and
  the rope tables, masks, positions) to each stage's device, and every block's KV cache lives beside it. A model
  larger than one device fits. On CPU every stage maps to the CPU and the same placement/hand-off code runs.
- ``shard_tensor_parallel``: each process keeps a slice of the attention heads and of the MLP hidden units
  (column-parallel qkv / fc, row-parallel proj followed by an all-reduce), over torch.distributed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from litgpt.errors import LitGPTError
from litgpt.model import GPT, GptNeoxMLP, LLaMAMLP, LLaMAMoE


def _mover(device: torch.device):
    def hook(module, args):
        return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)

    return hook


def place_sequentially(model: GPT, devices: Sequence[torch.device]) -> GPT:
    """Assign blocks evenly to ``devices`` in order; embeddings go to the first, the head to the last."""
    n_layer = len(model.transformer.h)
    if len(devices) > n_layer:
        raise LitGPTError(f"{len(devices)} devices for {n_layer} layers: use at most {n_layer} devices")
    per_device = math.ceil(n_layer / len(devices))
    model.transformer.wte.to(devices[0])
    stages = [(f"transformer.h.{i}", block, devices[i // per_device]) for i, block in enumerate(model.transformer.h)]
    stages += [("transformer.ln_f", model.transformer.ln_f, devices[-1]), ("lm_head", model.lm_head, devices[-1])]
    progress = tqdm(stages, desc="Placing blocks")
    for name, module, device in progress:
        progress.set_description(f"Moving {name!r} to {device}")
        module.to(device)
        module.register_forward_pre_hook(_mover(device))
    return model


def head_split(n_head: int, n_groups: int, rank: int, world_size: int) -> tuple[list[int], list[int]]:
    """(query heads, key/value groups) this rank computes.

    With at least as many groups as processes, whole groups (and their heads) are dealt out in contiguous, nearly
    equal runs. With fewer, each group's heads are split between ``world_size / n_groups`` ranks that all keep
    that group's keys and values (e.g. Gemma-3-270M: 4 heads in 1 group over 2 processes)."""
    per_group = n_head // n_groups
    if n_groups >= world_size:
        groups = [int(g) for g in torch.arange(n_groups).tensor_split(world_size)[rank]]
        return [g * per_group + h for g in groups for h in range(per_group)], groups
    if world_size % n_groups or per_group % (world_size // n_groups):
        raise LitGPTError(
            f"cannot split {n_head} heads in {n_groups} key/value groups over {world_size} processes; "
            "use a number of devices that divides the heads of a group, or generate_strategy='sequential'"
        )
    share = world_size // n_groups
    group, part = divmod(rank, share)
    size = per_group // share
    return [group * per_group + part * size + h for h in range(size)], [group]


def shard_tensor_parallel(model: GPT, rank: int, world_size: int) -> GPT:
    """Keep this rank's slice of every block; outputs of the row-parallel projections are summed over ranks."""
    import torch.distributed as dist

    config = model.config
    nh, ng = config.n_head, config.n_query_groups
    if config.norm_qk and config.norm_qk_type == "olmo2":
        raise LitGPTError("tensor parallelism does not support OLMo-2's whole-projection q/k norm yet; use 'sequential'")
    heads, groups = head_split(nh, ng, rank, world_size)
    local = dataclasses.replace(config, n_head=len(heads), n_query_groups=len(groups))
    q_rows, qkv_rows = attention_rows(config, rank, world_size)

    def all_reduce(module, args, output):
        dist.all_reduce(output)
        return output

    def broadcast(module, args, output):
        dist.broadcast(output, src=0)  # every rank samples from identical logits
        return output

    for block in model.transformer.h:
        attn = block.attn
        bias = attn.qkv.bias[qkv_rows] if attn.qkv.bias is not None else None
        attn.qkv = _linear(attn.qkv.weight[qkv_rows], bias)
        attn.proj = _row_parallel(attn.proj, q_rows, rank)
        attn.proj.register_forward_hook(all_reduce)
        attn.config = local
        for mlp in block.mlp.experts if isinstance(block.mlp, LLaMAMoE) else [block.mlp]:
            _shard_mlp(mlp, rank, world_size)
        if isinstance(block.mlp, LLaMAMoE):
            block.mlp.register_forward_hook(all_reduce)
        else:
            block.mlp.proj.register_forward_hook(all_reduce)
    model.lm_head.register_forward_hook(broadcast)
    return model


def attention_rows(config, rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the query part and of the whole fused qkv layer that ``rank`` keeps (its heads and query groups)."""
    nh, ng, hs = config.n_head, config.n_query_groups, config.head_size
    heads, groups = head_split(nh, ng, rank, world_size)
    q_rows = torch.cat([torch.arange(h * hs, (h + 1) * hs) for h in heads])
    kv_rows = torch.cat([torch.arange(g * hs, (g + 1) * hs) for g in groups])
    return q_rows, torch.cat([q_rows, nh * hs + kv_rows, (nh + ng) * hs + kv_rows])


def gather_tensor_parallel(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """The full weights from every process's slice (see :func:`shard_tensor_parallel`) on rank 0
    (the others get an empty dict). Column-parallel layers (qkv, the MLP's input layers) were cut into rows,
    row-parallel ones (the projections) into columns, and only rank 0 kept their bias."""
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    slices = [None] * world if rank == 0 else None
    dist.gather_object({k: v.cpu() for k, v in state.items()}, slices, dst=0)
    if rank != 0:
        return {}
    from litgpt.convert_hf import expected_shapes

    shapes = expected_shapes(config)
    full = {}
    for key, value in slices[0].items():
        if value.shape == shapes[key]:
            full[key] = value  # a replicated tensor, or a row-parallel layer's bias (which only rank 0 kept)
            continue
        out = torch.empty(shapes[key], dtype=value.dtype)
        for r, part in enumerate(s[key] for s in slices):
            q_rows, qkv_rows = attention_rows(config, r, world)
            if key.endswith(("attn.qkv.weight", "attn.qkv.bias")):
                out[qkv_rows] = part
            elif key.endswith("attn.proj.weight"):
                out[:, q_rows] = part
            elif key.endswith("proj.weight"):  # the MLP's (or an expert's) output layer
                out[:, torch.arange(shapes[key][1]).tensor_split(world)[r]] = part
            else:  # the MLP's (or an expert's) input layers
                out[torch.arange(shapes[key][0]).tensor_split(world)[r]] = part
        full[key] = out
    return full


def _shard_mlp(mlp: nn.Module, rank: int, world_size: int) -> None:
    names = ("fc_1", "fc_2") if isinstance(mlp, LLaMAMLP) else ("fc",) if isinstance(mlp, GptNeoxMLP) else ()
    if not names:
        raise LitGPTError(f"tensor parallelism does not know how to split {type(mlp).__name__}")
    rows = torch.arange(getattr(mlp, names[0]).out_features).tensor_split(world_size)[rank]
    for name in names:
        layer = getattr(mlp, name)
        setattr(mlp, name, _linear(layer.weight[rows], layer.bias[rows] if layer.bias is not None else None))
    mlp.proj = _row_parallel(mlp.proj, rows, rank)


def _row_parallel(layer: nn.Linear, columns: torch.Tensor, rank: int) -> nn.Linear:
    """Keep this rank's input columns; the bias is added once (on rank 0) so the all-reduced sum is exact."""
    bias = None
    if layer.bias is not None:
        bias = layer.bias if rank == 0 else torch.zeros_like(layer.bias)
    return _linear(layer.weight[:, columns], bias)


def _linear(weight: torch.Tensor, bias) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return layer
