"""LoRA: low-rank adapters on the GPT's linear layers, their merge into the base weights, and PEFT export.

A LoRA layer wraps a frozen linear ``W`` and learns ``A`` (r x in) and ``B`` (out x r): ``y = W x + (alpha / r) B A x``.
``B`` starts at zero, so training starts from the base model exactly.

The fused ``attn.qkv`` projection (rows laid out as [all Q heads | K groups | V groups], with fewer K/V groups than
Q heads under grouped-query attention) gets one low-rank pair per enabled part: ``lora_A`` stacks the enabled parts'
A matrices (r rows each) and ``lora_B`` stacks their B matrices (the part's output rows each); disabled parts receive
no update. These shapes and the parameter names (``<module>.lora_A`` / ``<module>.lora_B``, the base weight at
``<module>.linear.weight``) are those of the established LitGPT release, so its ``lit_model.pth.lora`` files load here.

``add_lora`` turns a loaded GPT into a LoRA model in place (the base weights are shared, not copied), so the same
function serves finetuning, loading a finetuned folder and merging.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from litgpt.config import Config
from litgpt.errors import LitGPTError

LORA_WEIGHTS = "lit_model.pth.lora"


@dataclass
class LoRASettings:
    """Which linears get LoRA and with what rank, scale and dropout (the ``--lora_*`` options)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    query: bool = True
    key: bool = False
    value: bool = True
    projection: bool = False
    mlp: bool = False
    head: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise LitGPTError(f"--lora_r must be a positive integer, got {self.r}")
        if not self.alpha > 0:  # a zero scale trains a LoRA that changes nothing
            raise LitGPTError(f"--lora_alpha must be positive (the update is scaled by alpha / r), got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise LitGPTError(f"--lora_dropout must be in [0, 1), got {self.dropout}")
        if not any((self.query, self.key, self.value, self.projection, self.mlp, self.head)):
            raise LitGPTError(
                "LoRA is enabled on no layer: set at least one of --lora_query, --lora_key, --lora_value, "
                "--lora_projection, --lora_mlp, --lora_head to true"
            )

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    @classmethod
    def from_hyperparameters(cls, hparams: Mapping[str, Any]) -> LoRASettings:
        """The settings a run used, from its ``hyperparameters.yaml`` (``lora_r``, ``lora_alpha``, ...)."""
        defaults = asdict(cls())
        return cls(**{k: hparams.get(f"lora_{k}", v) for k, v in defaults.items()})


def lora_delta(
    lora_A: torch.Tensor, lora_B: torch.Tensor, scaling: float, sizes: Sequence[int], enabled: Sequence[bool]
) -> torch.Tensor:
    """The weight update (out x in) of a LoRA pair over output parts ``sizes`` of which ``enabled`` ones are adapted."""
    r = lora_A.shape[0] // max(1, sum(enabled))
    rows, a_start, b_start = [], 0, 0
    for size, on in zip(sizes, enabled):
        if on:
            A = lora_A[a_start : a_start + r].float()
            B = lora_B[b_start : b_start + size].float()
            rows.append(B @ A)
            a_start, b_start = a_start + r, b_start + size
        else:
            rows.append(torch.zeros(size, lora_A.shape[1], device=lora_A.device))
    return torch.cat(rows, dim=0) * scaling


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU masks come from :func:`litgpt.kernels.dropout_mask` (several times faster than
    torch's ``bernoulli_``, which was 6% of a LoRA step); elsewhere it is ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and 0 < self.p < 1 and not self.inplace:
            from litgpt import kernels

            mask = kernels.dropout_mask(x, self.p)
            if mask is not None:
                return x * mask
        return super().forward(x)


class LoRALinear(nn.Module):
    """A frozen linear (``self.linear``, possibly quantized) plus a trainable low-rank update on output ``parts``.

    ``sizes`` splits the output features into parts (one part for an ordinary linear; Q, K, V for the fused qkv) and
    ``enabled`` says which parts are adapted.
    """

    def __init__(
        self,
        linear: nn.Module,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        sizes: Optional[Sequence[int]] = None,
        enabled: Optional[Sequence[bool]] = None,
    ) -> None:
        super().__init__()
        self.linear = linear
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.sizes = tuple(sizes) if sizes is not None else (self.out_features,)
        self.enabled = tuple(enabled) if enabled is not None else (True,) * len(self.sizes)
        if sum(self.sizes) != self.out_features or len(self.enabled) != len(self.sizes) or not any(self.enabled):
            raise LitGPTError(f"Invalid LoRA parts {self.sizes} / {self.enabled} for {self.out_features} outputs")
        self.r = r
        self.scaling = alpha / r
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        weight = linear.weight
        dtype = weight.dtype if weight.is_floating_point() else torch.float32  # quantized weights are not float
        device = weight.device
        n_parts = sum(self.enabled)
        out_enabled = sum(s for s, on in zip(self.sizes, self.enabled) if on)
        self.lora_A = nn.Parameter(torch.empty(r * n_parts, self.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(out_enabled, r, device=device, dtype=dtype))
        self.merged = False
        if device.type != "meta":
            self.reset_lora_parameters()

    # the wrapped layer's tensors stay reachable under their usual names (e.g. ``model.lm_head.weight``)
    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.linear.bias

    def reset_lora_parameters(self) -> None:
        """A like a freshly initialised linear layer (Kaiming uniform), B zero: the update starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        return lora_delta(self.lora_A, self.lora_B, self.scaling, self.sizes, self.enabled)

    def lora_output(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x).to(self.lora_A.dtype)
        after_a = x @ self.lora_A.transpose(0, 1)  # (..., r * parts)
        if len(self.sizes) == 1:
            return (after_a @ self.lora_B.transpose(0, 1)) * self.scaling
        pieces, a_start, b_start = [], 0, 0
        for size, on in zip(self.sizes, self.enabled):
            if on:
                a = after_a[..., a_start : a_start + self.r]
                pieces.append(a @ self.lora_B[b_start : b_start + size].transpose(0, 1))
                a_start, b_start = a_start + self.r, b_start + size
            else:
                pieces.append(after_a.new_zeros(*after_a.shape[:-1], size))
        return torch.cat(pieces, dim=-1) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.merged:
            return out
        return out + self.lora_output(x).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (a plain, unquantized one) so that forward costs one matmul."""
        if self.merged:
            return
        weight = self.linear.weight
        if not weight.is_floating_point():
            raise LitGPTError("Cannot merge LoRA into quantized weights; merge from the unquantized base checkpoint")
        # out of place: a weight sharing its storage (an output layer loaded as the embedding it copies, a memory-
        # mapped file) must not change what else reads that storage
        weight.data = weight.data + self.delta_weight().to(weight.dtype)
        self.merged = True

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling}, parts={self.sizes}, enabled={self.enabled}"


def qkv_sizes(config: Config) -> tuple[int, int, int]:
    return (config.n_head * config.head_size, config.n_query_groups * config.head_size, config.n_query_groups * config.head_size)


def lora_targets(model: nn.Module, settings: LoRASettings) -> Iterator[tuple[str, Optional[tuple], Optional[tuple]]]:
    """(module name, parts, enabled) of every linear of ``model`` (a GPT) that ``settings`` adapts."""
    config = model.config
    qkv = (settings.query, settings.key, settings.value)
    for i, block in enumerate(model.transformer.h):
        prefix = f"transformer.h.{i}"
        if any(qkv):
            yield f"{prefix}.attn.qkv", qkv_sizes(config), qkv
        if settings.projection:
            yield f"{prefix}.attn.proj", None, None
        if settings.mlp:
            for name, module in block.mlp.named_modules():
                if isinstance(module, nn.Linear) and not name.endswith("gate"):  # the MoE router stays frozen
                    yield f"{prefix}.mlp.{name}", None, None
    if settings.head:
        yield "lm_head", None, None


def add_lora(model: nn.Module, settings: LoRASettings) -> nn.Module:
    """Wrap the targeted linears of ``model`` (a GPT) in :class:`LoRALinear`, in place; returns ``model``."""
    for name, sizes, enabled in lora_targets(model, settings):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if isinstance(linear, LoRALinear):
            continue
        setattr(parent, child, LoRALinear(linear, settings.r, settings.alpha, settings.dropout, sizes, enabled))
    return model


def is_lora_param(name: str) -> bool:
    return "lora_" in name


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = is_lora_param(name)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if is_lora_param(k)}


def lora_modules(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def merge_lora_weights(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight (the LoRA layers then act as their plain linears)."""
    for _, module in lora_modules(model):
        module.merge()


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` with LoRA merged and removed: the keys and shapes of a plain GPT."""
    merge_lora_weights(model)
    wrapped = {name for name, _ in lora_modules(model)}
    state = {}
    for key, value in model.state_dict().items():
        if is_lora_param(key):
            continue
        for name in wrapped:
            if key.startswith(name + ".linear."):
                key = name + "." + key[len(name) + len(".linear.") :]
                break
        state[key] = value
    return state


def unwrap_lora(model: nn.Module) -> nn.Module:
    """Merge and replace every LoRA layer by its base linear, in place: a plain GPT again."""
    merge_lora_weights(model)
    for name, module in list(lora_modules(model)):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.linear)
    return model


# -- working on state dicts (merge_lora, loading a finetuned folder, PEFT export) ------------------------------------


def lora_parts(name: str, config: Config, settings: LoRASettings) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """(parts, enabled) of the LoRA module ``name`` (e.g. ``transformer.h.0.attn.qkv``)."""
    if name.endswith("attn.qkv"):
        return qkv_sizes(config), (settings.query, settings.key, settings.value)
    return (0,), (True,)


def merge_lora_state(
    base: Mapping[str, torch.Tensor], lora: Mapping[str, torch.Tensor], config: Config, settings: LoRASettings
) -> dict[str, torch.Tensor]:
    """Base weights with the LoRA updates of ``lora`` (``<module>.lora_A/B`` keys) added; same keys as ``base``."""
    merged = dict(base)
    modules = sorted({k[: -len(".lora_A")] for k in lora if k.endswith(".lora_A")})
    if not modules:
        raise LitGPTError("The LoRA weights hold no lora_A/lora_B tensors")
    for name in modules:
        key = name + ".weight"
        if key not in merged:
            raise LitGPTError(f"LoRA module {name} has no base weight {key} in the base checkpoint")
        weight = merged[key]
        sizes, enabled = lora_parts(name, config, settings)
        if sizes == (0,):
            sizes = (weight.shape[0],)
        rank = lora[name + ".lora_A"].shape[0] // max(1, sum(enabled))
        if rank != settings.r:  # the scaling alpha / r would be wrong
            raise LitGPTError(
                f"LoRA module {name} has rank {rank} but hyperparameters.yaml says lora_r {settings.r}; "
                "are the --lora_* settings in hyperparameters.yaml those of the run?"
            )
        delta = lora_delta(lora[name + ".lora_A"], lora[name + ".lora_B"], settings.scaling, sizes, enabled)
        if delta.shape != weight.shape:
            raise LitGPTError(
                f"LoRA update of {name} has shape {tuple(delta.shape)} but the base weight has {tuple(weight.shape)}; "
                "are the --lora_* settings in hyperparameters.yaml those of the run?"
            )
        merged[key] = (weight.float() + delta).to(weight.dtype)
    return merged


def read_lora_file(path: Path) -> dict[str, torch.Tensor]:
    """A ``lit_model.pth.lora`` file: plain, or nested under ``model`` as the established release writes it."""
    from litgpt.checkpoint import load_state_dict, model_state

    state = model_state(load_state_dict(path), path)
    return {k: v for k, v in state.items() if is_lora_param(k)}


# -- PEFT export --------------------------------------------------------------------------------------------------


def _hf_module_names(config: Config, checkpoint_dir: Path) -> tuple[str, dict]:
    from litgpt import convert_hf

    model_type = None
    if (checkpoint_dir / "config.json").is_file():
        model_type = json.loads((checkpoint_dir / "config.json").read_text()).get("model_type")
    if model_type not in convert_hf.FAMILIES:
        model_type = convert_hf.hf_model_type(config)
    return model_type, convert_hf.layout_for(model_type, config)


def _hf_targets(name: str, layout: dict, sizes: tuple, enabled: tuple) -> list[tuple[str, int]]:
    """[(Hugging Face module, index of the part, or None for the whole module)] for the litgpt module ``name``."""
    import re

    from litgpt.convert_hf import Fused

    for lit_pattern, hf in layout.items():
        if not isinstance(lit_pattern, str):
            continue
        regex = re.escape(lit_pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
        regex = regex.replace(r"\{w\}", "weight")
        match = re.fullmatch(regex, name + ".weight")
        if match is None:
            continue
        fill = {k: v for k, v in match.groupdict().items()}

        def hf_name(pattern: str, fill=fill) -> str:
            out = pattern.replace("{w}", "weight")
            for k, v in fill.items():
                out = out.replace("{" + k + "}", v)
            return out[: -len(".weight")]

        if isinstance(hf, str):  # the whole module (all its parts: Phi-3's fused qkv_proj)
            return [(hf_name(hf), None)]
        if isinstance(hf, Fused) and hf.kind == "qkv":
            return [(hf_name(pattern), k) for k, pattern in enumerate(hf.hf) if enabled[k]]
        raise LitGPTError(
            f"PEFT export does not support {name}: its Hugging Face layout fuses it differently ({hf.kind}); "
            "export the merged model with `litgpt convert_from_litgpt` instead"
        )
    raise LitGPTError(f"{name} has no counterpart in the Hugging Face layout")


def export_peft(checkpoint_dir: Path, output_dir: Optional[Path] = None, base_model_name_or_path: Optional[str] = None) -> Path:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` for ``peft.PeftModel.from_pretrained``.

    Args:
        checkpoint_dir: A LoRA finetuning output (``lit_model.pth.lora``, ``model_config.yaml``,
            ``hyperparameters.yaml``).
        output_dir: Where to write the adapter files (default: ``checkpoint_dir``).
        base_model_name_or_path: Recorded in ``adapter_config.json`` (default: the base checkpoint of the run).
    """
    import yaml
    from safetensors.torch import save_file

    from litgpt.utils import atomic_path, atomic_write_text

    checkpoint_dir = Path(checkpoint_dir)
    output_dir = Path(output_dir) if output_dir is not None else checkpoint_dir
    lora_file = checkpoint_dir / LORA_WEIGHTS
    hparams_file = checkpoint_dir / "hyperparameters.yaml"
    for needed in (lora_file, hparams_file):
        if not needed.is_file():
            raise LitGPTError(f"{checkpoint_dir} is not a LoRA finetuning output: {needed.name} is missing")
    hparams = yaml.safe_load(hparams_file.read_text()) or {}
    settings = LoRASettings.from_hyperparameters(hparams)
    config = Config.from_checkpoint(checkpoint_dir)
    base_dir = Path(hparams.get("checkpoint_dir", checkpoint_dir))
    model_type, layout = _hf_module_names(config, base_dir if base_dir.is_dir() else checkpoint_dir)
    lora = read_lora_file(lora_file)
    tensors: dict[str, torch.Tensor] = {}
    targets: set[str] = set()
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, int] = {}
    for name in sorted({k[: -len(".lora_A")] for k in lora if k.endswith(".lora_A")}):
        A, B = lora[name + ".lora_A"], lora[name + ".lora_B"]
        sizes, enabled = lora_parts(name, config, settings)
        if sizes == (0,):
            sizes = (B.shape[0],)
        a_start = b_start = 0
        parts = {}
        for k, (size, on) in enumerate(zip(sizes, enabled)):
            if on:
                parts[k] = (A[a_start : a_start + settings.r], B[b_start : b_start + size])
                a_start, b_start = a_start + settings.r, b_start + size
        hf_targets = _hf_targets(name, layout, sizes, enabled)
        if len(sizes) > 1 and hf_targets[0][1] is None:
            # the Hugging Face module is fused too (Phi-3's qkv_proj): one pair of rank r x (enabled parts), B
            # block-diagonal over the output rows; alpha grows with the rank so that the scaling stays alpha / r
            (hf_module, _), n = hf_targets[0], len(parts)
            fused_B = B.new_zeros(sum(sizes), settings.r * n)
            offsets = [sum(sizes[:k]) for k in range(len(sizes))]
            for j, (k, (_, part_B)) in enumerate(sorted(parts.items())):
                fused_B[offsets[k] : offsets[k] + sizes[k], j * settings.r : (j + 1) * settings.r] = part_B
            fused_A = torch.cat([part_A for _, (part_A, _) in sorted(parts.items())])
            tensors[f"base_model.model.{hf_module}.lora_A.weight"] = fused_A.contiguous().clone()
            tensors[f"base_model.model.{hf_module}.lora_B.weight"] = fused_B
            leaf = hf_module.rsplit(".", 1)[-1]
            targets.add(leaf)
            if n > 1:
                rank_pattern[leaf], alpha_pattern[leaf] = settings.r * n, settings.alpha * n
            continue
        for hf_module, k in hf_targets:
            part_A, part_B = parts[0 if k is None else k]
            tensors[f"base_model.model.{hf_module}.lora_A.weight"] = part_A.contiguous().clone()
            tensors[f"base_model.model.{hf_module}.lora_B.weight"] = part_B.contiguous().clone()
            targets.add(hf_module.rsplit(".", 1)[-1])
    adapter_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path or str(hparams.get("checkpoint_dir", "")) or None,
        "r": settings.r,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_dir / "adapter_model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(output_dir / "adapter_config.json", json.dumps(adapter_config, indent=2) + "\n")
    print(f"Wrote a PEFT adapter ({model_type} layout, {len(tensors) // 2} LoRA modules) to {output_dir}")
    return output_dir
