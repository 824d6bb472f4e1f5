"""Convert Hugging Face checkpoints to litgpt's ``lit_model.pth`` and back.

Each Hugging Face layout is one table (data, below): a litgpt state-dict name pattern -> the Hugging Face name
pattern(s) it corresponds to, where ``{i}`` is a layer, ``{j}`` an expert and ``{w}`` ``weight`` or ``bias``. A
plain string is a rename; :class:`Fused` says how several tensors combine:

- ``qkv``: litgpt's fused ``attn.qkv`` ([all Q heads | K groups | V groups]) is the concatenation of separate
  q/k/v projections;
- ``interleaved``: one Hugging Face tensor with, per key/value group, that group's query heads then its key and
  value head (GPT-NeoX, Falcon); with one group per head this is GPT-NeoX's [q, k, v] per head;
- ``halves``: two litgpt tensors (MLP gate and up) stored as one Hugging Face tensor, gate first (Phi-3).

The same table and the same engine (:class:`_Assembler`) serve both directions, tensor by tensor, so converting
costs about one copy of the model in memory.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError
from litgpt.utils import require_folder

WEIGHTS = "lit_model.pth"
CONFIG_FILE = "model_config.yaml"


@dataclass(frozen=True)
class Fused:
    kind: str  # "qkv" | "interleaved" | "halves"
    hf: tuple[str, ...]


Rule = Union[str, Fused]

# -- the layouts ---------------------------------------------------------------------------------------------------

_M = "model.layers.{i}."
_H = "transformer.h.{i}."

LLAMA: dict = {
    "transformer.wte.weight": "model.embed_tokens.weight",
    _H + "norm_1.{w}": _M + "input_layernorm.{w}",
    _H + "attn.qkv.{w}": Fused(
        "qkv", (_M + "self_attn.q_proj.{w}", _M + "self_attn.k_proj.{w}", _M + "self_attn.v_proj.{w}")
    ),
    _H + "attn.proj.{w}": _M + "self_attn.o_proj.{w}",
    _H + "attn.norm_q.{w}": _M + "self_attn.q_norm.{w}",
    _H + "attn.norm_k.{w}": _M + "self_attn.k_norm.{w}",
    _H + "norm_2.{w}": _M + "post_attention_layernorm.{w}",
    _H + "mlp.fc_1.{w}": _M + "mlp.gate_proj.{w}",
    _H + "mlp.fc_2.{w}": _M + "mlp.up_proj.{w}",
    _H + "mlp.proj.{w}": _M + "mlp.down_proj.{w}",
    "transformer.ln_f.{w}": "model.norm.{w}",
    "lm_head.{w}": "lm_head.{w}",
}

# Gemma 2/3: a norm after attention and one before and after the MLP
GEMMA2 = {
    **LLAMA,
    _H + "post_attention_norm.{w}": _M + "post_attention_layernorm.{w}",
    _H + "norm_2.{w}": _M + "pre_feedforward_layernorm.{w}",
    _H + "post_mlp_norm.{w}": _M + "post_feedforward_layernorm.{w}",
}

# OLMo 2: no norms before attention and MLP, norms after them instead
OLMO2 = {
    **{k: v for k, v in LLAMA.items() if ".norm_1." not in k and ".norm_2." not in k},
    _H + "post_attention_norm.{w}": _M + "post_attention_layernorm.{w}",
    _H + "post_mlp_norm.{w}": _M + "post_feedforward_layernorm.{w}",
}

# OLMo 1: parameter-free LayerNorms (litgpt holds identity norm tensors when its config has them)
OLMO = {k: v for k, v in LLAMA.items() if ".norm_" not in k and "ln_f" not in k}

_LLAMA_ATTENTION = {k: v for k, v in LLAMA.items() if ".mlp." not in k}

MIXTRAL = {
    **_LLAMA_ATTENTION,
    _H + "mlp.gate.weight": _M + "block_sparse_moe.gate.weight",
    _H + "mlp.experts.{j}.fc_1.weight": _M + "block_sparse_moe.experts.{j}.w1.weight",
    _H + "mlp.experts.{j}.fc_2.weight": _M + "block_sparse_moe.experts.{j}.w3.weight",
    _H + "mlp.experts.{j}.proj.weight": _M + "block_sparse_moe.experts.{j}.w2.weight",
}

QWEN_MOE = {
    **_LLAMA_ATTENTION,
    _H + "mlp.gate.weight": _M + "mlp.gate.weight",
    _H + "mlp.experts.{j}.fc_1.weight": _M + "mlp.experts.{j}.gate_proj.weight",
    _H + "mlp.experts.{j}.fc_2.weight": _M + "mlp.experts.{j}.up_proj.weight",
    _H + "mlp.experts.{j}.proj.weight": _M + "mlp.experts.{j}.down_proj.weight",
}

PHI3 = {
    **{k: v for k, v in LLAMA.items() if ".mlp.fc_" not in k},
    _H + "attn.qkv.{w}": _M + "self_attn.qkv_proj.{w}",  # already [all Q | all K | all V]
    (_H + "mlp.fc_1.{w}", _H + "mlp.fc_2.{w}"): Fused("halves", (_M + "mlp.gate_up_proj.{w}",)),
}

PHI = {
    "transformer.wte.weight": "model.embed_tokens.weight",
    _H + "norm_1.{w}": _M + "input_layernorm.{w}",
    _H + "attn.qkv.{w}": LLAMA[_H + "attn.qkv.{w}"],
    _H + "attn.proj.{w}": _M + "self_attn.dense.{w}",
    _H + "mlp.fc.{w}": _M + "mlp.fc1.{w}",
    _H + "mlp.proj.{w}": _M + "mlp.fc2.{w}",
    "transformer.ln_f.{w}": "model.final_layernorm.{w}",
    "lm_head.{w}": "lm_head.{w}",
}

_N = "gpt_neox.layers.{i}."
GPT_NEOX = {
    "transformer.wte.weight": "gpt_neox.embed_in.weight",
    _H + "norm_1.{w}": _N + "input_layernorm.{w}",
    _H + "attn.qkv.{w}": Fused("interleaved", (_N + "attention.query_key_value.{w}",)),
    _H + "attn.proj.{w}": _N + "attention.dense.{w}",
    _H + "norm_2.{w}": _N + "post_attention_layernorm.{w}",
    _H + "mlp.fc.{w}": _N + "mlp.dense_h_to_4h.{w}",
    _H + "mlp.proj.{w}": _N + "mlp.dense_4h_to_h.{w}",
    "transformer.ln_f.{w}": "gpt_neox.final_layer_norm.{w}",
    "lm_head.{w}": "embed_out.{w}",
}

# Falcon 7B: one norm shared by the parallel attention and MLP
FALCON_7B = {
    "transformer.wte.weight": "transformer.word_embeddings.weight",
    _H + "norm_1.{w}": _H + "input_layernorm.{w}",
    _H + "attn.qkv.{w}": Fused("interleaved", (_H + "self_attention.query_key_value.{w}",)),
    _H + "attn.proj.{w}": _H + "self_attention.dense.{w}",
    _H + "mlp.fc.{w}": _H + "mlp.dense_h_to_4h.{w}",
    _H + "mlp.proj.{w}": _H + "mlp.dense_4h_to_h.{w}",
    "transformer.ln_f.{w}": "transformer.ln_f.{w}",
    "lm_head.{w}": "lm_head.{w}",
}

# Falcon 40B/180B ("new decoder architecture"): separate norms for attention and MLP
FALCON_40B = {
    **{k: v for k, v in FALCON_7B.items() if ".norm_1." not in k},
    _H + "norm_1.{w}": _H + "ln_attn.{w}",
    _H + "norm_2.{w}": _H + "ln_mlp.{w}",
}

# Falcon with parallel_attn=False (sequential residual): a norm before attention and one before the MLP
FALCON_SEQUENTIAL = {
    **FALCON_7B,
    _H + "norm_2.{w}": _H + "post_attention_layernorm.{w}",
}

# Other names a Hugging Face file may use for a tensor (read only): transformers' in-memory names
ALIASES: dict[str, dict[str, str]] = {
    "gpt_neox": {"lm_head.{w}": "embed_out.{w}"},
    "mixtral": {_M + "mlp.gate.weight": _M + "block_sparse_moe.gate.weight"},
}

# transformers 5 keeps all experts of a layer in one tensor in memory: (experts, out, in); gate_up is [gate; up]
STACKED_EXPERTS: dict[str, dict[str, tuple[str, ...]]] = {
    "mixtral": {
        _M + "mlp.experts.gate_up_proj": (
            MIXTRAL[_H + "mlp.experts.{j}.fc_1.weight"],
            MIXTRAL[_H + "mlp.experts.{j}.fc_2.weight"],
        ),
        _M + "mlp.experts.down_proj": (MIXTRAL[_H + "mlp.experts.{j}.proj.weight"],),
    },
    "qwen3_moe": {
        _M + "mlp.experts.gate_up_proj": (
            QWEN_MOE[_H + "mlp.experts.{j}.fc_1.weight"],
            QWEN_MOE[_H + "mlp.experts.{j}.fc_2.weight"],
        ),
        _M + "mlp.experts.down_proj": (QWEN_MOE[_H + "mlp.experts.{j}.proj.weight"],),
    },
}

# Hugging Face tensors that are buffers, not weights
IGNORED = re.compile(
    r"(^|\.)(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias|attn\.bias|attn\.masked_bias)$"
)

# Multimodal checkpoints (Gemma 3 4B-27B) hold the language model under a prefix, next to a vision tower that a text
# model has no place for: "language_model.model.*" (the Hub's files) or "model.language_model.*" (transformers 5)
_TEXT_MODEL_PREFIX = re.compile(r"^(?:language_model\.(?=model\.|lm_head\.)|model\.language_model\.)")
_VOCAB_ROWS = ("transformer.wte.weight", "lm_head.weight")  # past a registered vocabulary: image tokens
_VISION_TENSORS = re.compile(r"^(?:model\.)?(?:vision_tower|vision_model|multi_modal_projector)\.")


def _text_model_tensor(name: str) -> Optional[str]:
    """A multimodal checkpoint's tensor under its text-only name, or None for the vision tower's."""
    if _VISION_TENSORS.match(name):
        return None
    m = _TEXT_MODEL_PREFIX.match(name)
    if m is None:
        return name
    return ("model." if m.group(0).startswith("model.") else "") + name[m.end() :]


@dataclass(frozen=True)
class Family:
    layout: dict
    architecture: str


FAMILIES: dict[str, Family] = {
    "llama": Family(LLAMA, "LlamaForCausalLM"),
    "mistral": Family(LLAMA, "MistralForCausalLM"),
    "qwen2": Family(LLAMA, "Qwen2ForCausalLM"),
    "qwen3": Family(LLAMA, "Qwen3ForCausalLM"),
    "stablelm": Family(LLAMA, "StableLmForCausalLM"),
    "gemma": Family(LLAMA, "GemmaForCausalLM"),
    "gemma2": Family(GEMMA2, "Gemma2ForCausalLM"),
    "gemma3_text": Family(GEMMA2, "Gemma3ForCausalLM"),
    "olmo": Family(OLMO, "OlmoForCausalLM"),
    "olmo2": Family(OLMO2, "Olmo2ForCausalLM"),
    "mixtral": Family(MIXTRAL, "MixtralForCausalLM"),
    "qwen3_moe": Family(QWEN_MOE, "Qwen3MoeForCausalLM"),
    "phi": Family(PHI, "PhiForCausalLM"),
    "phi3": Family(PHI3, "Phi3ForCausalLM"),
    "gpt_neox": Family(GPT_NEOX, "GPTNeoXForCausalLM"),
    "falcon": Family(FALCON_40B, "FalconForCausalLM"),  # FALCON_7B when the config shares one norm, see layout_for
}
_MODEL_TYPE_ALIASES = {"RefinedWeb": "falcon", "RefinedWebModel": "falcon"}


def layout_for(model_type: str, config: Config) -> dict:
    if model_type == "falcon" and not config.parallel_residual:
        return FALCON_SEQUENTIAL
    if model_type == "falcon" and config.shared_attention_norm:
        return FALCON_7B
    return FAMILIES[model_type].layout


def hf_model_type(config: Config) -> str:
    """The Hugging Face ``model_type`` whose layout and modelling code match ``config``."""
    name = config.name.lower()
    if config.mlp_class_name == "GptNeoxMLP":
        if config.lm_head_bias:
            return "phi"
        return "gpt_neox" if config.bias else "falcon"
    if config.mlp_class_name == "LLaMAMoE":
        return "qwen3_moe" if config.norm_qk else "mixtral"
    if config.mlp_class_name == "GemmaMLP":
        if not config.post_attention_norm:
            return "gemma"
        return "gemma3_text" if config.norm_qk or config.rope_local_base_freq is not None else "gemma2"
    if config.norm_qk_type == "olmo2":
        return "olmo2"
    if config.norm_class_name == "LayerNorm":
        return "olmo" if "olmo" in name else "stablelm"
    # Phi-3's layout is LLaMA's with partial rotary embeddings and longrope, which LlamaForCausalLM lacks
    if name.startswith(("phi-3", "phi-4")) or (
        not (config.norm_qk or config.bias or config.attn_bias)
        and (config.rotary_percentage != 1.0 or "long_factor" in (config.rope_adjustments or {}))
    ):
        return "phi3"
    if config.norm_qk:
        return "qwen3"
    if config.attn_bias and not config.bias:
        return "qwen2"
    if config.sliding_window_size is not None:
        return "mistral"
    return "llama"


# -- the engine: one mechanism for both directions ----------------------------------------------------------------

_PLACEHOLDERS = {"i": r"(?P<i>\d+)", "j": r"(?P<j>\d+)", "w": r"(?P<w>weight|bias)"}


def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"\{([ijw])\}", pattern)
    regex = "".join(_PLACEHOLDERS[p] if k % 2 else re.escape(p) for k, p in enumerate(parts))
    return re.compile(regex + "$")


@dataclass(frozen=True)
class _Rule:
    lit: tuple[str, ...]
    hf: tuple[str, ...]
    kind: str  # "copy" | "qkv" | "interleaved" | "halves"


def _rules(layout: dict) -> list[_Rule]:
    rules = []
    for lit, target in layout.items():
        lit = lit if isinstance(lit, tuple) else (lit,)
        if isinstance(target, Fused):
            rules.append(_Rule(lit, target.hf, target.kind))
        else:
            rules.append(_Rule(lit, (target,), "copy"))
    return rules


class _Assembler:
    """Feeds tensors named on one side (``source`` = "hf" or "lit") and yields the other side's tensors as soon as
    every piece of a rule instance (e.g. q, k and v of one layer) has arrived."""

    def __init__(self, layout: dict, config: Config, source: str) -> None:
        self.config = config
        self.to_lit = source == "hf"
        self.rules = _rules(layout)
        self.matchers = []
        for r, rule in enumerate(self.rules):
            for pos, pattern in enumerate(rule.hf if self.to_lit else rule.lit):
                self.matchers.append((_compile(pattern), r, pos))
        self.pending: dict[tuple, dict[int, tuple[str, torch.Tensor]]] = {}

    def knows(self, name: str) -> bool:
        return any(regex.match(name) for regex, _, _ in self.matchers)

    def add(self, name: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor, tuple[str, ...]]]:
        """[(target name, tensor, source names)]; raises KeyError for a name no rule knows."""
        for regex, r, pos in self.matchers:
            m = regex.match(name)
            if m is None:
                continue
            rule = self.rules[r]
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            key = (r, tuple(sorted(groups.items())))
            parts = self.pending.setdefault(key, {})
            parts[pos] = (name, tensor)
            sources = rule.hf if self.to_lit else rule.lit
            if len(parts) < len(sources):
                return []
            del self.pending[key]
            names = tuple(parts[p][0] for p in range(len(sources)))
            tensors = [parts[p][1] for p in range(len(sources))]
            outputs = self._transform(rule.kind, tensors)
            targets = rule.lit if self.to_lit else rule.hf
            return [(t.format(**groups), out, names) for t, out in zip(targets, outputs)]
        raise KeyError(name)

    def leftovers(self) -> list[str]:
        return [name for parts in self.pending.values() for name, _ in parts.values()]

    def _transform(self, kind: str, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        cfg = self.config
        if kind == "copy":
            return parts
        if kind == "halves":
            return list(parts[0].chunk(2, dim=0)) if self.to_lit else [torch.cat(parts, dim=0)]
        q_size, kv_size = cfg.n_head * cfg.head_size, cfg.n_query_groups * cfg.head_size
        if kind == "qkv":
            if self.to_lit:
                return [torch.cat(parts, dim=0)]
            return list(_split_rows(parts[0], (q_size, kv_size, kv_size)))
        if kind == "interleaved":
            return [_deinterleave(parts[0], cfg) if self.to_lit else _interleave(parts[0], cfg)]
        raise ValueError(kind)


def _split_rows(t: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    if t.shape[0] != sum(sizes):
        raise LitGPTError(f"fused qkv tensor has {t.shape[0]} rows but the config expects {sum(sizes)}")
    return t.split(sizes, dim=0)


def _deinterleave(t: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Per group [q x (n_head / n_query_groups), k, v] -> [all q | all k | all v]."""
    ng, per, hs = cfg.n_query_groups, cfg.n_head // cfg.n_query_groups, cfg.head_size
    if t.shape[0] != ng * (per + 2) * hs:
        raise LitGPTError(
            f"fused query_key_value tensor has {t.shape[0]} rows but the config expects {ng * (per + 2) * hs}"
        )
    g = t.reshape(ng, per + 2, hs, *t.shape[1:])
    q, k, v = g[:, :per], g[:, per], g[:, per + 1]
    return torch.cat([x.reshape(-1, *t.shape[1:]) for x in (q, k, v)], dim=0)


def _interleave(t: torch.Tensor, cfg: Config) -> torch.Tensor:
    ng, per, hs = cfg.n_query_groups, cfg.n_head // cfg.n_query_groups, cfg.head_size
    q, k, v = _split_rows(t, (ng * per * hs, ng * hs, ng * hs))
    rest = t.shape[1:]
    g = torch.cat((q.reshape(ng, per, hs, *rest), k.reshape(ng, 1, hs, *rest), v.reshape(ng, 1, hs, *rest)), dim=1)
    return g.reshape(-1, *rest)


def _normalise_hf(name: str, tensor: torch.Tensor, model_type: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Map alternative Hugging Face names to the canonical ones of the layout, and unstack fused experts."""
    for pattern, parts in STACKED_EXPERTS.get(model_type, {}).items():
        m = _compile(pattern).match(name)
        if m is not None:
            for j in range(tensor.shape[0]):
                for target, piece in zip(parts, tensor[j].chunk(len(parts), dim=0)):
                    yield target.format(i=m["i"], j=j), piece
            return
    for alias, canonical in ALIASES.get(model_type, {}).items():
        m = _compile(alias).match(name)
        if m is not None:
            yield canonical.format(**m.groupdict()), tensor
            return
    yield name, tensor


# -- reading Hugging Face weight files -----------------------------------------------------------------------------

_NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin")


def find_weight_files(checkpoint_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face folder: safetensors preferred, then PyTorch ``.bin``, shards in order."""
    for suffix, index_name in (
        ("safetensors", "model.safetensors.index.json"),
        ("bin", "pytorch_model.bin.index.json"),
    ):
        index = checkpoint_dir / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise LitGPTError(f"{index} is not a valid shard index: {e}") from None
            files = [checkpoint_dir / f for f in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise LitGPTError(f"{index} lists shard(s) that are missing: {', '.join(missing[:3])}")
            return files
        files = sorted(f for f in checkpoint_dir.glob(f"*.{suffix}") if f.name not in _NOT_WEIGHTS)
        preferred = [f for f in files if f.name.startswith(("model", "pytorch_model"))]
        if preferred or files:
            return preferred or files
    return []


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as e:
        raise LitGPTError(f"{path} is not a readable safetensors file: {e}") from None


def iter_hf_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor in ``files``, one at a time; each file is closed before the next opens."""
    from litgpt.checkpoint import load_state_dict, model_state

    for path in files:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        else:
            state = model_state(load_state_dict(path, mmap=True), path)
            for name in list(state):
                yield name, state.pop(name)
            del state


def _parse_dtype(dtype: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise LitGPTError(f"Unknown dtype {dtype!r}; use e.g. float32, bfloat16 or float16")
    return value


def _cast(t: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.Tensor:
    return t.to(dtype) if dtype is not None and t.is_floating_point() else t


def _shape(t) -> tuple:
    return tuple(t.shape)


# -- Hugging Face -> litgpt ----------------------------------------------------------------------------------------


def _resolve_config(checkpoint_dir: Path, model_name: Optional[str]) -> tuple[Config, Optional[dict]]:
    hf = None
    if (checkpoint_dir / "config.json").is_file():
        try:
            hf = json.loads((checkpoint_dir / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise LitGPTError(f"{checkpoint_dir / 'config.json'} is not valid JSON: {e}") from None
    if model_name:
        return Config.from_name(model_name), hf
    if hf is not None:
        from litgpt.hf_config import config_from_hf

        try:
            return config_from_hf(checkpoint_dir / "config.json"), hf
        except LitGPTError as e:  # a setting we cannot read (Phi-3.5's longrope, ...): a registered model's config
            registered = _registered_config(checkpoint_dir)
            if registered is None:
                raise LitGPTError(f"{e}; or pass --model_name NAME to take a registered model's config") from None
            print(f"{e}; using the registered config of {registered.name} instead", file=sys.stderr)
            return registered, hf
    if (checkpoint_dir / CONFIG_FILE).is_file():
        return Config.from_file(checkpoint_dir / CONFIG_FILE), None
    registered = _registered_config(checkpoint_dir)
    if registered is None:
        raise LitGPTError(
            f"{checkpoint_dir} has no config.json or {CONFIG_FILE} and its name is not a known model; "
            "pass --model_name NAME"
        )
    return registered, None


def _registered_config(checkpoint_dir: Path) -> Optional[Config]:
    """The registered config of a folder named after a model (``checkpoints/org/name``), if there is one."""
    try:
        return Config.from_name(checkpoint_dir.name)
    except LitGPTError:
        return None


def _is_multimodal(hf: Optional[dict]) -> bool:
    """A Gemma 3 image-text checkpoint, of which the text model is converted (the vision tower is left out)."""
    return hf is not None and hf.get("model_type") == "gemma3" and isinstance(hf.get("text_config"), dict)


def _model_type_of(hf: Optional[dict], config: Config) -> str:
    if hf is not None:
        model_type = "gemma3_text" if _is_multimodal(hf) else hf.get("model_type")
        model_type = _MODEL_TYPE_ALIASES.get(model_type, model_type)
        if model_type in FAMILIES:
            return model_type
        if model_type:
            raise LitGPTError(
                f"Hugging Face model_type {model_type!r} is not supported; supported: {', '.join(sorted(FAMILIES))}"
            )
    return hf_model_type(config)


def convert_to_litgpt(
    checkpoint_dir: Path, model_name: Optional[str] = None, dtype: Optional[str] = None, debug_mode: bool = False
) -> Path:
    """Convert a Hugging Face checkpoint folder to ``lit_model.pth`` and ``model_config.yaml`` in the same folder.

    Args:
        checkpoint_dir: folder with ``*.safetensors`` (preferred) or ``*.bin`` weights, sharded or not, and normally
            a ``config.json``. A ``.gguf`` file is handed to the GGUF importer (output: its ``checkpoints/<name>``
            folder), as is a folder whose only weights are one ``.gguf`` file (output: that folder).
        model_name: a registered model name to take the config from instead of ``config.json``.
        dtype: cast floating-point weights to this dtype (e.g. ``bfloat16``); default: keep the stored dtypes.
        debug_mode: print where each tensor goes (source names, litgpt name, shape, dtype).
    """
    checkpoint_dir = Path(checkpoint_dir)
    if checkpoint_dir.suffix == ".gguf":
        if not checkpoint_dir.is_file():
            raise LitGPTError(f"GGUF file {str(checkpoint_dir)!r} does not exist")
        from litgpt.gguf_import import convert_gguf

        out = convert_gguf(checkpoint_dir, dtype=dtype)  # into the importer's checkpoints/<model name> folder
        print(f"Converted {checkpoint_dir} into {out}", file=sys.stderr)
        return out
    require_folder(checkpoint_dir)
    target_dtype = _parse_dtype(dtype)
    files = find_weight_files(checkpoint_dir)
    if not files:
        ggufs = sorted(checkpoint_dir.glob("*.gguf"))
        if len(ggufs) == 1:
            from litgpt.gguf_import import convert_gguf

            return convert_gguf(ggufs[0], checkpoint_dir=checkpoint_dir, dtype=dtype)
        raise LitGPTError(f"{checkpoint_dir} holds no weights to convert (no *.safetensors or *.bin files)")
    config, hf = _resolve_config(checkpoint_dir, model_name)
    model_type = _model_type_of(hf, config)
    multimodal = _is_multimodal(hf)
    if multimodal:
        print(f"{checkpoint_dir} is an image-text model: converting its language model only", file=sys.stderr)
    state = hf_to_lit_state(
        files, config, model_type, dtype=target_dtype, label=str(checkpoint_dir), text_only=multimodal,
        verbose=debug_mode,
    )

    from litgpt.checkpoint import save_state_dict

    save_state_dict(state, checkpoint_dir / WEIGHTS)
    del state
    config.save(checkpoint_dir / CONFIG_FILE)
    return checkpoint_dir / WEIGHTS


def expected_shapes(config: Config) -> dict[str, tuple]:
    """The shape of every tensor in the state dict of a GPT built from ``config`` (built on the meta device)."""
    from litgpt.model import GPT

    with torch.device("meta"):
        model = GPT(config)
    return {k: _shape(v) for k, v in model.state_dict().items()}


def hf_to_lit_state(
    files: list[Path],
    config: Config,
    model_type: str,
    dtype: Optional[torch.dtype] = None,
    label: str = "checkpoint",
    text_only: bool = False,
    verbose: bool = False,
) -> dict[str, torch.Tensor]:
    """Read Hugging Face weight files tensor by tensor into a litgpt state dict for ``config``.

    ``text_only``: the files are a multimodal model's; take its language model, leave out the vision tower, and keep
    only the embedding rows ``config`` has (the rows past them belong to image tokens the text model never sees)."""
    from tqdm import tqdm

    from litgpt.checkpoint import own_storage

    expected = expected_shapes(config)
    layout = layout_for(model_type, config)
    assembler = _Assembler(layout, config, source="hf")
    total = sum(len(_safetensors_keys(f)) for f in files) if all(f.suffix == ".safetensors" for f in files) else None
    state: dict[str, torch.Tensor] = {}
    with tqdm(total=total, desc="Converting", unit="tensor", disable=None, file=sys.stderr) as bar:
        for raw_name, raw in iter_hf_tensors(files):
            bar.update(1)
            if IGNORED.search(raw_name):
                continue
            text_name = _text_model_tensor(raw_name) if text_only else raw_name
            if text_name is None:
                continue
            for name, tensor in _normalise_hf(text_name, raw, model_type):
                try:
                    outputs = assembler.add(name, tensor)
                except KeyError:
                    raise LitGPTError(
                        f"{label}: tensor {raw_name!r} has no place in the {model_type} layout; "
                        "is this the right model type (config.json model_type / --model_name)?"
                    ) from None
                for lit_name, out, sources in outputs:
                    if lit_name not in expected:
                        raise LitGPTError(
                            f"{label}: tensor {', '.join(sources)} maps to {lit_name}, which the config "
                            f"({config.name or model_type}) has no place for; do the weights match the config?"
                        )
                    if text_only and lit_name in _VOCAB_ROWS and out.shape[0] > expected[lit_name][0]:
                        out = out[: expected[lit_name][0]]
                    if _shape(out) != expected[lit_name]:
                        raise LitGPTError(
                            f"{label}: tensor {lit_name} (from {', '.join(sources)}) has shape {_shape(out)} but "
                            f"the config expects {expected[lit_name]}; do the weights match the config?"
                        )
                    state[lit_name] = own_storage(_cast(out, dtype))
                    if verbose:
                        tensor = state[lit_name]
                        bar.write(f"{', '.join(sources)} -> {lit_name} {tuple(tensor.shape)} {tensor.dtype}", sys.stderr)
            del raw
    leftovers = assembler.leftovers()
    if leftovers:
        raise LitGPTError(f"{label}: incomplete fused tensors, only found {', '.join(leftovers[:4])}")
    _fill_implicit(state, expected, layout, config)
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 4} more)" if len(missing) > 4 else ""
        raise LitGPTError(
            f"{label}: the weights lack {len(missing)} tensor(s) the config needs: {', '.join(missing[:4])}{more}"
        )
    return state


def _fill_implicit(state: dict, expected: dict, layout: dict, config: Config) -> None:
    """Tensors a Hugging Face file may leave out: a tied lm_head, identity norms of parameter-free layouts."""
    if "lm_head.weight" not in state and "transformer.wte.weight" in state and "lm_head.weight" in expected:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    if layout is OLMO:
        dtype = state["transformer.wte.weight"].dtype if "transformer.wte.weight" in state else torch.float32
        for name, shape in expected.items():
            if name not in state and re.search(r"(norm_\d|ln_f)\.(weight|bias)$", name):
                state[name] = (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)


# -- litgpt -> Hugging Face ----------------------------------------------------------------------------------------

# format -> "module:function"; each takes (checkpoint_dir, output, dtype) and parses dtype itself
EXPORTERS: dict[str, str] = {"safetensors": "litgpt.convert_hf:export_hf", "gguf": "litgpt.gguf_export:export_gguf"}
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "generation_config.json", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
MAX_SHARD_BYTES = 5 * 1024**3


def convert_from_litgpt(
    checkpoint_dir: Path, output_dir: Path, dtype: Optional[str] = None, format: str = "safetensors"
) -> Path:
    """Write a Hugging Face folder (weights, ``config.json``, tokenizer files) from a litgpt checkpoint folder.

    Args:
        checkpoint_dir: folder with ``lit_model.pth`` and ``model_config.yaml``.
        output_dir: where to write the Hugging Face files; ``transformers`` loads it with ``from_pretrained``.
        dtype: cast floating-point weights to this dtype; default: keep the stored dtypes. With ``--format gguf``:
            ``f16`` (default), ``q8_0``, ``bf16`` or ``f32``.
        format: ``safetensors`` (a Hugging Face folder) or ``gguf`` (one file, written into ``output_dir`` unless it
            ends in ``.gguf``; llama and Gemma 3 architectures).
    """
    if format not in EXPORTERS:
        raise LitGPTError(f"Unknown output format {format!r}; supported: {', '.join(sorted(EXPORTERS))}")
    module, func = EXPORTERS[format].split(":")
    import importlib

    exporter = getattr(importlib.import_module(module), func)
    output_dir = Path(output_dir)
    names_a_file = format == "gguf" and output_dir.suffix.lower() == ".gguf"
    if output_dir.exists() and not names_a_file:  # a new folder is made only once there is something to write
        from litgpt.utils import writable_folder

        writable_folder(output_dir, option="output folder")
    if format == "gguf":
        return exporter(Path(checkpoint_dir), Path(output_dir), dtype or "f16")
    return exporter(Path(checkpoint_dir), Path(output_dir), _parse_dtype(dtype))


def lit_to_hf_state(
    state: dict[str, torch.Tensor], config: Config, model_type: str, dtype: Optional[torch.dtype] = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield Hugging Face (name, tensor) pairs for a litgpt state dict, one at a time."""
    from litgpt.checkpoint import own_storage

    layout = layout_for(model_type, config)
    assembler = _Assembler(layout, config, source="lit")
    for name in list(state):
        tensor = state[name]
        if layout is OLMO and re.search(r"(norm_\d|ln_f)\.(weight|bias)$", name):
            identity = torch.ones_like(tensor) if name.endswith("weight") else torch.zeros_like(tensor)
            if not torch.equal(tensor, identity):
                raise LitGPTError(f"{name} is not an identity norm; OLMo's Hugging Face layout has no norm weights")
            continue
        try:
            outputs = assembler.add(name, tensor)
        except KeyError:
            raise LitGPTError(f"tensor {name!r} has no place in the Hugging Face {model_type} layout") from None
        for hf_name, out, _ in outputs:
            yield hf_name, own_storage(_cast(out, dtype))
    leftovers = assembler.leftovers()
    if leftovers:
        raise LitGPTError(f"incomplete fused tensors, only found {', '.join(leftovers[:4])}")


def export_hf(checkpoint_dir: Path, output_dir: Path, dtype: Optional[torch.dtype] = None) -> Path:
    from litgpt.checkpoint import load_state_dict, model_state, require_shapes
    from litgpt.utils import atomic_path, atomic_write_text

    require_folder(checkpoint_dir)
    weights = checkpoint_dir / WEIGHTS
    if not weights.is_file():
        raise LitGPTError(f"{checkpoint_dir} has no {WEIGHTS}; convert or train a model first")
    config = Config.from_checkpoint(checkpoint_dir)
    model_type = _export_model_type(checkpoint_dir, config)
    state = model_state(load_state_dict(weights, mmap=True), weights)
    # else config.json would describe other weights (transformers refuses them)
    require_shapes(state, expected_shapes(config), weights, "model_config.yaml", "is it the config these weights belong to?")
    tied = (
        "lm_head.weight" in state
        and "lm_head.bias" not in state
        and torch.equal(state["lm_head.weight"], state.get("transformer.wte.weight", torch.empty(0)))
    )
    if tied:
        state.pop("lm_head.weight")
    output_dir = Path(output_dir)
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    sizes = [0]
    stored_dtype = None
    for name, tensor in lit_to_hf_state(state, config, model_type, dtype):
        nbytes = tensor.numel() * tensor.element_size()
        if sizes[-1] and sizes[-1] + nbytes > MAX_SHARD_BYTES:
            shards.append({})
            sizes.append(0)
        shards[-1][name] = tensor
        sizes[-1] += nbytes
        if tensor.is_floating_point():
            stored_dtype = tensor.dtype
    del state
    output_dir.mkdir(parents=True, exist_ok=True)  # only now: a layout that cannot be exported leaves no folder
    names = (
        ["model.safetensors"]
        if len(shards) == 1
        else [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    )
    for shard, file_name in zip(shards, names):
        with atomic_path(output_dir / file_name) as tmp:
            save_file(shard, str(tmp), metadata={"format": "pt"})
    if len(shards) > 1:
        index = {
            "metadata": {"total_size": sum(sizes)},
            "weight_map": {n: f for shard, f in zip(shards, names) for n in shard},
        }
        atomic_write_text(output_dir / "model.safetensors.index.json", json.dumps(index, indent=2))
    hf = hf_config_dict(config, model_type, dtype=stored_dtype, tied=tied, base=_original_hf_config(checkpoint_dir))
    atomic_write_text(output_dir / "config.json", json.dumps(hf, indent=2, sort_keys=True) + "\n")
    for file_name in TOKENIZER_FILES:
        src = checkpoint_dir / file_name
        if src.is_file() and src.resolve() != (output_dir / file_name).resolve():
            shutil.copyfile(src, output_dir / file_name)
    return output_dir


def _export_model_type(checkpoint_dir: Path, config: Config) -> str:
    """The folder's own config.json names the family when it has one we support and describes this model (a
    pretraining run's folder may hold its tokenizer's config.json, another model's); else infer it from the Config."""
    from litgpt.hf_config import describes

    path = checkpoint_dir / "config.json"
    if path.is_file() and describes(path, config):
        try:
            model_type = json.loads(path.read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError):
            model_type = None
        model_type = _MODEL_TYPE_ALIASES.get(model_type, model_type)
        if model_type in FAMILIES:
            return model_type
    return hf_model_type(config)


def _original_hf_config(checkpoint_dir: Path) -> dict:
    """Token ids and other non-architecture settings to carry over from the folder's own files."""
    base: dict = {}
    for file_name in ("generation_config.json", "config.json"):
        path = checkpoint_dir / file_name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
            base.update({k: data[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in data})
    return base


# the families whose transformers modelling code rotates only part of each head (the others ignore the setting, so it
# is left out and the round-trip check refuses a partial-rotary model there)
PARTIAL_ROTARY_TYPES = ("phi", "phi3", "stablelm", "gpt_neox")


def _rope_parameters(config: Config, model_type: str, base: float, adjustments: Optional[dict]) -> dict:
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": float(base)}
    if adjustments:
        if "long_factor" in adjustments:
            params.update(
                rope_type="longrope",
                short_factor=list(adjustments["short_factor"]),
                long_factor=list(adjustments["long_factor"]),
                original_max_position_embeddings=int(adjustments["original_max_seq_len"]),
                attention_factor=float(adjustments["attention_factor"]),
            )
        elif "low_freq_factor" in adjustments:
            params.update(
                rope_type="llama3",
                factor=float(adjustments["factor"]),
                low_freq_factor=float(adjustments["low_freq_factor"]),
                high_freq_factor=float(adjustments["high_freq_factor"]),
                original_max_position_embeddings=int(adjustments["original_max_seq_len"]),
            )
        else:
            params.update(rope_type="linear", factor=float(adjustments["factor"]))
    elif config.rope_condense_ratio != 1:
        params.update(rope_type="linear", factor=float(config.rope_condense_ratio))
    if model_type in PARTIAL_ROTARY_TYPES:
        params["partial_rotary_factor"] = config.rotary_percentage
    return params


def _layer_types(indices: Optional[list], n_layer: int) -> list[str]:
    indices = indices if indices is not None else [0] * n_layer
    return ["sliding_attention" if flag else "full_attention" for flag in indices]


def hf_config_dict(
    config: Config,
    model_type: str,
    dtype: Optional[torch.dtype] = None,
    tied: bool = False,
    base: Optional[dict] = None,
) -> dict:
    """A Hugging Face ``config.json`` for ``config`` in the layout of ``model_type``."""
    c = config
    gelu = "gelu_pytorch_tanh" if c.gelu_approximate == "tanh" else "gelu"
    rope = _rope_parameters(c, model_type, c.rope_base, c.rope_adjustments)
    hf: dict[str, Any] = {"pad_token_id": None, **(base or {})}  # a family's default pad id may not fit the vocab
    hf.update(
        architectures=[FAMILIES[model_type].architecture],
        model_type=model_type,
        vocab_size=c.padded_vocab_size,
        hidden_size=c.n_embd,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_query_groups,
        head_dim=c.head_size,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=c.block_size,
        tie_word_embeddings=tied,
        rope_theta=float(c.rope_base),
        rope_parameters=rope,
        hidden_act="silu",
        use_cache=True,
    )
    if rope["rope_type"] != "default":
        hf["rope_scaling"] = dict(rope)  # older transformers read this (and rope_theta)
    if model_type in PARTIAL_ROTARY_TYPES:  # always: StableLM's default is 0.25, Phi's 0.5
        hf["partial_rotary_factor"] = c.rotary_percentage
    if dtype is not None:
        hf["dtype"] = str(dtype).replace("torch.", "")
    if c.norm_class_name == "RMSNorm":
        hf["rms_norm_eps"] = c.norm_eps
    else:
        hf["layer_norm_eps"] = c.norm_eps

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise LitGPTError(
                f"{c.name or 'this config'}: {what} cannot be expressed as a Hugging Face {model_type} config"
            )

    window_everywhere = c.sliding_window_size is not None and all(c.sliding_window_indices)
    if model_type in ("llama", "qwen3", "olmo", "olmo2"):
        hf.update(attention_bias=c.bias or c.attn_bias, mlp_bias=c.bias)
        need(c.attn_bias == c.bias or not c.attn_bias, "attn_bias without bias")
    if model_type in ("mistral", "mixtral", "phi3"):
        need(c.sliding_window_size is None or window_everywhere, "a sliding window on some layers only")
        hf["sliding_window"] = c.sliding_window_size
    if model_type in ("qwen2", "qwen3", "qwen3_moe"):
        hf.update(use_sliding_window=c.sliding_window_size is not None, sliding_window=c.sliding_window_size)
        hf["layer_types"] = _layer_types(c.sliding_window_indices, c.n_layer)
        hf["max_window_layers"] = c.n_layer
    if model_type == "phi3":
        hf["original_max_position_embeddings"] = c.longrope_original_max_seq_len or c.block_size
    if model_type in ("gemma", "gemma2", "gemma3_text"):
        hf.update(hidden_act=gelu, hidden_activation=gelu, attention_bias=c.bias or c.attn_bias)
        need(not (c.bias or c.attn_bias), "biases")  # Gemma's MLP has none; its attention_bias covers o_proj
    if model_type in ("gemma2", "gemma3_text"):
        hf.update(
            query_pre_attn_scalar=c.attention_scores_scalar or c.head_size,
            # transformers needs a window even when no layer slides (layer_types says which do)
            sliding_window=c.sliding_window_size or c.block_size,
            layer_types=_layer_types(c.sliding_window_indices, c.n_layer),
            attn_logit_softcapping=c.attention_logit_softcapping,
            final_logit_softcapping=c.final_logit_softcapping,
        )
    if model_type == "gemma3_text":
        if c.rope_local_base_freq is not None:
            need(
                c.rope_indices == c.sliding_window_indices or c.sliding_window_size is None,
                "local rope layers that differ from sliding-window layers",
            )
            hf["rope_local_base_freq"] = float(c.rope_local_base_freq)
            hf["rope_parameters"] = {
                "full_attention": rope,
                "sliding_attention": _rope_parameters(c, model_type, c.rope_local_base_freq, None),
            }
            if c.rope_indices is not None and c.sliding_window_size is None:
                hf["layer_types"] = _layer_types(c.rope_indices, c.n_layer)
        else:
            hf["rope_parameters"] = {"full_attention": rope, "sliding_attention": rope}
    if model_type == "stablelm":
        need(c.parallel_residual == c.shared_attention_norm, "parallel residual without a shared norm")
        hf.update(use_qkv_bias=c.attn_bias, use_parallel_residual=c.parallel_residual, qk_layernorm=False)
    if model_type == "mixtral":
        hf.update(
            num_local_experts=c.n_expert,
            num_experts_per_tok=c.n_expert_per_token,
            intermediate_size=c.moe_intermediate_size or c.intermediate_size,
        )
    if model_type == "qwen3_moe":
        hf.update(
            num_experts=c.n_expert,
            num_experts_per_tok=c.n_expert_per_token,
            moe_intermediate_size=c.moe_intermediate_size or c.intermediate_size,
            norm_topk_prob=True,  # our router renormalises the chosen experts' weights
            decoder_sparse_step=1,
            mlp_only_layers=[],
        )
    if model_type == "gpt_neox":
        hf.update(
            hidden_act="gelu_new" if c.gelu_approximate == "tanh" else "gelu",
            use_parallel_residual=c.parallel_residual,
            rotary_pct=c.rotary_percentage,
            rotary_emb_base=float(c.rope_base),
            attention_bias=True,
        )
        need(c.n_query_groups == c.n_head, "grouped-query attention")
    if model_type == "phi":
        hf.update(hidden_act="gelu_new" if c.gelu_approximate == "tanh" else "gelu", qk_layernorm=False)
        need(c.shared_attention_norm and c.parallel_residual, "a non-parallel residual")
    if model_type == "falcon":
        need(c.n_embd == c.n_head * c.head_size, "head_size * n_head != n_embd")
        for key in ("head_dim", "num_key_value_heads", "intermediate_size", "hidden_act"):  # derived in FalconConfig
            hf.pop(key, None)
        # the old (7B) layout: one shared norm, parallel; or sequential with input/post-attention norms. The new one:
        # parallel with two norms, or with one (Falcon2-11B: num_ln_in_parallel_attn=1, grouped-query attention)
        old_groups = c.n_query_groups in (1, c.n_head)
        new_layout = c.parallel_residual and not (c.shared_attention_norm and old_groups)
        hf.update(
            num_kv_heads=c.n_query_groups,
            multi_query=c.n_query_groups == 1,
            new_decoder_architecture=new_layout,
            parallel_attn=c.parallel_residual,
            bias=c.bias,
            alibi=False,
            activation="gelu",
            ffn_hidden_size=c.intermediate_size,
            layer_norm_epsilon=c.norm_eps,
        )
        if new_layout:
            hf["num_ln_in_parallel_attn"] = 1 if c.shared_attention_norm else 2
        else:
            need(old_groups, "grouped-query attention with a sequential residual")
            need(c.parallel_residual or not c.shared_attention_norm, "a sequential residual with one shared norm")
    _require_round_trip(c, hf, model_type)
    return hf


def _effective(config: Config) -> dict:
    """The architecture fields of ``config`` with settings that change nothing normalised away (a window list
    without a window, the default attention scale spelled out, ...), for comparing two configs."""
    from litgpt.hf_config import NON_ARCHITECTURE

    d = {k: v for k, v in config.to_dict().items() if k not in NON_ARCHITECTURE}
    if d["attention_scores_scalar"] is None:
        d["attention_scores_scalar"] = config.head_size
    if d["sliding_window_size"] is None or not any(d["sliding_window_indices"] or ()):
        d["sliding_window_size"] = d["sliding_window_indices"] = None
    if d["rope_local_base_freq"] is None or not any(d["rope_indices"] or ()):
        d["rope_local_base_freq"] = d["rope_indices"] = None
    if not d["norm_qk"]:
        d["norm_qk_type"] = "default"
    if d["mlp_class_name"] == "LLaMAMoE":  # the experts' size is what counts
        d["moe_intermediate_size"] = d["moe_intermediate_size"] or d["intermediate_size"]
        d["intermediate_size"] = None
    else:
        d.update(n_expert=0, n_expert_per_token=0, moe_intermediate_size=None, norm_topk_prob=False)
    if d["mlp_class_name"] in ("LLaMAMLP", "LLaMAMoE"):  # SiLU: no GELU to approximate
        d["gelu_approximate"] = "none"
    d["rotary_percentage"] = config.rope_n_elem  # the rotated features, however the fraction is spelled
    return d


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-30)
    return a == b


def _require_round_trip(config: Config, hf: dict, model_type: str) -> None:
    """Refuse a config.json that transformers would read as another model: read it back with the Hugging Face
    config reader (which mirrors transformers) and compare the architecture."""
    from litgpt.hf_config import config_from_hf

    label = config.name or "this config"
    try:
        back = config_from_hf(hf)
    except LitGPTError as e:
        raise LitGPTError(f"{label} cannot be exported as a Hugging Face {model_type} config: {e}") from None
    mine, theirs = _effective(config), _effective(back)
    differ = [k for k in mine if not _same(mine[k], theirs[k])]
    if differ:
        raw_mine, raw_theirs = config.to_dict(), back.to_dict()
        what = ", ".join(f"{k}={raw_mine[k]!r} (would load as {raw_theirs[k]!r})" for k in differ)
        raise LitGPTError(
            f"{label}: {what} cannot be expressed as a Hugging Face {model_type} config; "
            "no Hugging Face family litgpt exports to has this architecture"
        )
