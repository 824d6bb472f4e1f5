"""Model configuration: one dataclass with every architecture switch, and the registry of known models.

The registry lives in ``model_registry.json`` as data: each family is a template and each model lists only the
fields that differ from its family's template. ``Config.from_name`` resolves short names (``pythia-160m``) and
Hugging Face repo ids (``EleutherAI/pythia-160m``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from litgpt.errors import LitGPTError

REGISTRY_FILE = Path(__file__).parent / "model_registry.json"


def find_multiple(n: int, k: int) -> int:
    """The smallest multiple of ``k`` that is >= ``n``."""
    return n if n % k == 0 else n + k - (n % k)


@dataclass
class Config:
    name: str = ""
    hf_config: dict = field(default_factory=dict)
    # -- sizes
    block_size: int = 4096
    vocab_size: int = 50254
    padding_multiple: int = 512
    padded_vocab_size: int | None = None
    n_layer: int = 16
    n_head: int = 32
    head_size: int | None = None
    n_embd: int = 4096
    n_query_groups: int | None = None
    intermediate_size: int | None = None
    # -- residual layout and norms
    parallel_residual: bool = True
    shared_attention_norm: bool = False
    norm_class_name: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    norm_eps: float = 1e-5
    norm_1: bool = True
    norm_2: bool = True
    post_attention_norm: bool = False
    post_mlp_norm: bool = False
    norm_qk: bool = False
    norm_qk_type: Literal["default", "olmo2"] = "default"
    # -- biases
    bias: bool = True
    attn_bias: bool = False
    lm_head_bias: bool = False
    # -- rotary embeddings
    rotary_percentage: float = 0.25
    rope_base: int = 10000
    rope_condense_ratio: int = 1
    rope_adjustments: dict | None = None
    rope_interleave: bool = False
    rope_local_base_freq: float | None = None
    rope_indices: list | None = None
    # -- attention details
    sliding_window_size: int | None = None
    sliding_window_indices: list | None = None
    attention_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    attention_scores_scalar: int | None = None
    scale_embeddings: bool = False
    # -- MLP
    mlp_class_name: Literal["GptNeoxMLP", "LLaMAMLP", "GemmaMLP", "LLaMAMoE"] = "GptNeoxMLP"
    gelu_approximate: str = "none"
    n_expert: int = 0
    n_expert_per_token: int = 0
    moe_intermediate_size: int | None = None
    norm_topk_prob: bool = False
    # -- fields of the established release that no supported architecture uses yet (kept so its files load)
    routed_scaling_factor: float = 1.0
    n_shared_expert: int | None = None
    first_k_dense_replace: int | None = None
    n_expert_groups: int | None = None
    n_topk_groups: int | None = None
    n_topk_scores_per_group: int | None = None
    latent_attention: dict | None = None

    def __post_init__(self) -> None:
        """Every derived field is computed here and only here."""
        if not self.name:
            self.name = self.hf_config.get("name", "")
        if self.head_size is None:
            if self.n_embd % self.n_head:
                raise LitGPTError(f"n_embd ({self.n_embd}) is not divisible by n_head ({self.n_head}); set head_size")
            self.head_size = self.n_embd // self.n_head
        if self.padded_vocab_size is None:
            self.padded_vocab_size = find_multiple(self.vocab_size, self.padding_multiple)
        else:
            self.vocab_size = min(self.vocab_size, self.padded_vocab_size)
        if self.n_query_groups is None:
            self.n_query_groups = self.n_head
        if self.n_head % self.n_query_groups:
            raise LitGPTError(f"n_head ({self.n_head}) must be a multiple of n_query_groups ({self.n_query_groups})")
        if self.intermediate_size is None:
            if self.mlp_class_name != "GptNeoxMLP":
                raise LitGPTError(f"{self.mlp_class_name} needs intermediate_size")
            self.intermediate_size = 4 * self.n_embd
        if self.mlp_class_name == "LLaMAMoE" and (self.n_expert < 1 or self.n_expert_per_token < 1):
            raise LitGPTError("LLaMAMoE needs n_expert >= 1 and n_expert_per_token >= 1")
        self.rope_n_elem = int(self.rotary_percentage * self.head_size)
        if self.sliding_window_size is not None and self.sliding_window_indices is None:
            self.sliding_window_indices = [1] * self.n_layer
        if self.longrope_original_max_seq_len is not None:
            for key in ("short_factor", "long_factor"):
                if len(self.rope_adjustments[key]) != self.rope_n_elem // 2:
                    raise LitGPTError(
                        f"rope_adjustments {key} has {len(self.rope_adjustments[key])} entries but the model rotates "
                        f"{self.rope_n_elem // 2} frequencies (rope_n_elem / 2)"
                    )
        for key in ("sliding_window_indices", "rope_indices"):
            value = getattr(self, key)
            if value is not None and len(value) != self.n_layer:
                raise LitGPTError(f"{key} has {len(value)} entries but the model has n_layer={self.n_layer}")

    # -- derived, read-only views
    @property
    def attn_qkv_size(self) -> int:
        return (self.n_head + 2 * self.n_query_groups) * self.head_size

    @property
    def norm_unit_offset(self) -> bool:
        """Gemma's RMSNorm scales by (1 + weight); every Gemma model, and only those, uses GemmaMLP."""
        return self.mlp_class_name == "GemmaMLP"

    @property
    def hf_repo_id(self) -> str:
        return f"{self.hf_config['org']}/{self.hf_config['name']}" if self.hf_config else ""

    def is_sliding(self, layer: int) -> bool:
        return self.sliding_window_size is not None and bool(self.sliding_window_indices[layer])

    def rope_base_for(self, layer: int) -> float:
        """Gemma 3 uses a local RoPE base on layers whose rope index is 1 and the global base elsewhere."""
        if self.rope_indices is not None and self.rope_local_base_freq is not None and self.rope_indices[layer]:
            return self.rope_local_base_freq
        return self.rope_base

    @property
    def longrope_original_max_seq_len(self) -> int | None:
        """With longrope scaling (Phi-3.5, Phi-4-mini): the pretraining length past which the long factors apply."""
        adj = self.rope_adjustments
        return int(adj["original_max_seq_len"]) if adj and "long_factor" in adj else None

    def rope_adjustments_for(self, layer: int) -> dict | None:
        """Rope scaling applies to global layers only when local layers have a base of their own (Gemma 3)."""
        if self.rope_indices is not None and self.rope_local_base_freq is not None and self.rope_indices[layer]:
            return None
        return self.rope_adjustments

    # -- construction
    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> Config:
        registry = _registry()
        key = name.strip()
        if key not in registry:
            key = _repo_index().get(key.lower()) or _name_index().get(key.lower(), key)
        if key not in registry:
            raise LitGPTError(f"Unknown model name {name!r}. {suggest(name, list(registry) + repo_ids())}")
        entry = registry[key]
        if "n_layer" in overrides:  # a shallower or deeper variant: per-layer lists keep their pattern
            for field_name in PER_LAYER_FIELDS:
                if entry.get(field_name) is not None and field_name not in overrides:
                    overrides[field_name] = repeat_pattern(entry[field_name], overrides["n_layer"])
        return cls(**{**entry, **overrides})

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hints = "; ".join(f"{u!r}: {suggest(u, known, what='field')}" for u in unknown)
            raise LitGPTError(f"{source} has unknown field(s) {hints}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Config:
        path = Path(path)
        if not path.is_file():
            raise LitGPTError(f"Config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise LitGPTError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not data:  # else every field would take its default: a 4096-wide model
            raise LitGPTError(f"{path} is empty; it should hold the model's config fields (or `name: <model>`)")
        if not isinstance(data, dict):
            raise LitGPTError(f"{path} must hold a mapping of config fields")
        if set(data) == {"name"}:  # a file may just name a registered model
            return cls.from_name(data["name"], **overrides)
        return cls.from_dict({**data, **overrides}, source=str(path))

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, **overrides: Any) -> Config:
        checkpoint_dir = Path(checkpoint_dir)
        if (checkpoint_dir / "model_config.yaml").is_file():
            return cls.from_file(checkpoint_dir / "model_config.yaml", **overrides)
        if (checkpoint_dir / "config.json").is_file():
            from litgpt.hf_config import config_from_hf

            return config_from_hf(checkpoint_dir / "config.json", **overrides)
        if checkpoint_dir.name in _registry():
            return cls.from_name(checkpoint_dir.name, **overrides)
        raise LitGPTError(
            f"{checkpoint_dir} has neither model_config.yaml nor config.json; "
            "convert a Hugging Face checkpoint with `litgpt convert_to_litgpt` or download one with `litgpt download`"
        )

    @classmethod
    def from_hf_config(cls, config: str | Path | dict, **overrides: Any) -> Config:
        from litgpt.hf_config import config_from_hf

        return config_from_hf(config, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from litgpt.utils import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    def estimated_params(self) -> int:
        """Parameter count without materialising the model (used for size checks and FLOP estimates)."""
        import torch

        from litgpt.model import GPT

        with torch.device("meta"):
            return sum(p.numel() for p in GPT(self).parameters())


PER_LAYER_FIELDS = ("sliding_window_indices", "rope_indices")


def repeat_pattern(values: list, n: int) -> list:
    """``values`` continued (or cut) to ``n`` entries by repeating its shortest period ([1, 1, 0] * k for Gemma 3)."""
    period = next(p for p in range(1, len(values) + 1) if all(v == values[i % p] for i, v in enumerate(values)))
    return [values[i % period] for i in range(n)]


def suggest(name: str, candidates, what: str = "model name") -> str:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.4)]
    if close:
        return f"Did you mean: {', '.join(close)}?"
    return f"Run `litgpt pretrain list` to see every {what}." if what == "model name" else f"No close {what} name."


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict]:
    """name -> full field mapping, built from family templates plus per-model differences."""
    data = json.loads(REGISTRY_FILE.read_text())
    registry = {}
    for spec in data["families"].values():
        template = spec["template"]
        for variant in spec["models"]:
            entry = {**template, **variant}
            entry["hf_config"] = {"org": entry.pop("org"), "name": entry.pop("hf_name", entry["name"])}
            registry[entry["name"]] = entry
    return registry


@lru_cache(maxsize=1)
def _repo_index() -> dict[str, str]:
    """lower-cased 'org/name' -> short name."""
    return {f"{e['hf_config']['org']}/{e['hf_config']['name']}".lower(): n for n, e in _registry().items()}


@lru_cache(maxsize=1)
def _name_index() -> dict[str, str]:
    """lower-cased short name or bare Hugging Face name ('Meta-Llama-3.1-8B') -> short name."""
    index = {e["hf_config"]["name"].lower(): n for n, e in _registry().items()}
    index.update({n.lower(): n for n in _registry()})
    return index


def name_to_config() -> dict[str, dict]:
    return _registry()


def config_names() -> list[str]:
    return sorted(_registry())


def repo_ids() -> list[str]:
    return sorted(f"{e['hf_config']['org']}/{e['hf_config']['name']}" for e in _registry().values())
