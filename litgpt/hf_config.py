"""Map a Hugging Face ``config.json`` to a :class:`litgpt.config.Config`.

The mapping is data: :data:`FAMILIES` says, per ``model_type``, which switches are fixed for the whole family
(norm class, MLP class, residual layout, ...), which Hugging Face defaults apply when a ``config.json`` leaves a
key out, which settings we cannot reproduce, and which shared readers pull the remaining fields (sizes, rotary
embedding, sliding windows, soft-capping, biases, experts). Both the transformers 5 layout (``rope_parameters``,
``layer_types``) and the older one (``rope_theta`` / ``rope_scaling`` / ``sliding_window_pattern``) are read.

When the result has the architecture of a registered model, that model's name and repo id are used.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from litgpt.config import Config, _name_index, _registry, _repo_index
from litgpt.errors import LitGPTError

# -- small helpers --------------------------------------------------------------------------------------------------

_MISSING = object()


def _first(hf: dict, *keys: str, default: Any = _MISSING) -> Any:
    """The value of the first key that is present and not null."""
    for key in keys:
        if hf.get(key) is not None:
            return hf[key]
    if default is _MISSING:
        raise LitGPTError(f"{_label(hf)}: config.json lacks {' / '.join(keys)}")
    return default


def describes(path: Path, config) -> bool:
    """Whether the config.json at ``path`` can be this model's: its width and depth (where it names them) are the
    Config's. A pretraining run copies the tokenizer folder's files, whose config.json may be another model's."""
    try:
        hf = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(hf, dict):
        return False
    hf = hf.get("text_config") if isinstance(hf.get("text_config"), dict) else hf
    width = _first(hf, "hidden_size", "n_embd", "d_model", default=None)
    depth = _first(hf, "num_hidden_layers", "n_layer", "num_layers", default=None)
    return width in (None, config.n_embd) and depth in (None, config.n_layer)


def _label(hf: dict) -> str:
    return f"model_type {hf.get('model_type')!r}"


def _tidy_number(value: Any) -> Any:
    """Integral floats become ints (rope bases); other floats lose float32 round-off (``9.99999974e-06`` -> 1e-05)."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return float(f"{value:.6g}")
    return value


def _unsupported(hf: dict, what: str) -> LitGPTError:
    return LitGPTError(f"{_label(hf)}: {what} is not supported")


# -- shared readers: each takes (hf, family) and returns Config fields ---------------------------------------------


def read_sizes(hf: dict, fam: Family) -> dict:
    n_embd = _first(hf, "hidden_size", "n_embd", "d_model")
    n_head = _first(hf, "num_attention_heads", "n_head")
    head_size = _first(hf, "head_dim", default=None)
    if head_size is None:
        if n_embd % n_head:
            raise LitGPTError(f"{_label(hf)}: hidden_size {n_embd} is not divisible by {n_head} heads and no head_dim")
        head_size = n_embd // n_head
    intermediate = _first(hf, "intermediate_size", "ffn_hidden_size", default=None)
    if intermediate is None and fam.fixed.get("mlp_class_name") == "GptNeoxMLP":
        intermediate = 4 * n_embd
    vocab = _first(hf, "vocab_size")
    return dict(
        n_layer=_first(hf, "num_hidden_layers", "n_layer", "num_layers"),
        n_embd=n_embd,
        n_head=n_head,
        head_size=head_size,
        n_query_groups=_first(hf, "num_key_value_heads", "num_kv_heads", "n_head_kv", default=n_head),
        intermediate_size=intermediate,
        vocab_size=vocab,
        padded_vocab_size=vocab,
        block_size=_first(hf, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
    )


def read_norm_eps(hf: dict, fam: Family) -> dict:
    return dict(norm_eps=_tidy_number(_first(hf, "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps")))


_GELU_APPROXIMATE = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}
_SILU = ("silu", "swish")


def read_activation(hf: dict, fam: Family) -> dict:
    act = _first(hf, *fam.activation_keys)
    act = fam.activation_aliases.get(act, act)
    if fam.fixed["mlp_class_name"] in ("LLaMAMLP", "LLaMAMoE"):
        if act not in _SILU:
            raise _unsupported(hf, f"activation {act!r} in a gated MLP (only silu)")
        return {}
    if act not in _GELU_APPROXIMATE:
        raise _unsupported(hf, f"activation {act!r} (only gelu variants)")
    return dict(gelu_approximate=_GELU_APPROXIMATE[act])


def _rope_params_by_layer_type(hf: dict) -> dict[str, dict]:
    """{'full_attention': {...}, optionally 'sliding_attention': {...}} from either config layout."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and params:
        if all(isinstance(v, dict) for v in params.values()):
            return dict(params)
        return {"full_attention": dict(params)}
    full = dict(hf.get("rope_scaling") or {})
    full["rope_theta"] = _first(hf, "rope_theta", "rotary_emb_base", "rope_base", default=10000)
    by_type = {"full_attention": full}
    if hf.get("rope_local_base_freq") is not None:  # Gemma 3, older layout
        by_type["sliding_attention"] = {"rope_type": "default", "rope_theta": hf["rope_local_base_freq"]}
    return by_type


def _rope_scaling(hf: dict, fam: Family, params: dict) -> dict:
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return {}
    if kind == "linear":
        factor = _tidy_number(float(params["factor"]))
        if fam.linear_rope == "condense" and isinstance(factor, int):
            return dict(rope_condense_ratio=factor)
        return dict(rope_adjustments={"factor": float(factor)})
    if kind == "llama3":
        return dict(
            rope_adjustments={
                "factor": float(params["factor"]),
                "low_freq_factor": float(params["low_freq_factor"]),
                "high_freq_factor": float(params["high_freq_factor"]),
                "original_max_seq_len": int(params["original_max_position_embeddings"]),
            }
        )
    if kind in ("longrope", "su"):  # "su": the first Phi-3 128k uploads
        return dict(rope_adjustments=_longrope(hf, params))
    raise _unsupported(hf, f"rope scaling type {kind!r} (supported: default, linear, llama3, longrope)")


def _longrope(hf: dict, params: dict) -> dict:
    """Phi-3.5 / Phi-4-mini: per-frequency factors (short up to the pretraining length, long past it) and a scale
    of cos and sin, by default sqrt(1 + ln(factor) / ln(original length)) with factor = max / original length."""
    original = _first(params, "original_max_position_embeddings", default=None)
    if original is None:
        original = _first(hf, "original_max_position_embeddings", "max_position_embeddings")
    factor = params.get("factor")
    if factor is None:
        factor = _first(hf, "max_position_embeddings") / original
    attention = params.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    short, long = params.get("short_factor"), params.get("long_factor")
    if not isinstance(short, list) or not isinstance(long, list) or len(short) != len(long):
        raise LitGPTError(f"{_label(hf)}: longrope needs short_factor and long_factor lists of one length")
    return {
        "short_factor": [float(x) for x in short],
        "long_factor": [float(x) for x in long],
        "original_max_seq_len": int(original),
        "attention_factor": float(attention),
    }


def read_rope(hf: dict, fam: Family) -> dict:
    by_type = _rope_params_by_layer_type(hf)
    unknown = sorted(set(by_type) - {"full_attention", "sliding_attention"})
    if unknown:
        raise _unsupported(hf, f"rope parameters for layer types {unknown}")
    full = by_type.get("full_attention") or by_type["sliding_attention"]
    fraction = _first(full, "partial_rotary_factor", default=None)
    if fraction is None:
        fraction = _first(hf, "partial_rotary_factor", "rotary_pct", default=fam.rotary_percentage)
    if not fam.partial_rotary:  # transformers rotates the whole head in these families, whatever the config says
        fraction = 1.0
    base = _first(full, "rope_theta", default=_first(hf, "rope_theta", "rotary_emb_base", default=10000))
    out = dict(rope_base=_tidy_number(float(base)), rotary_percentage=float(fraction))
    out.update(_rope_scaling(hf, fam, full))
    local = by_type.get("sliding_attention")
    if local is not None and local is not full:
        if _rope_scaling(hf, fam, local):
            raise _unsupported(hf, "rope scaling on sliding-window layers")
        local_base = _tidy_number(float(local["rope_theta"]))
        if local_base != out["rope_base"] or out.get("rope_adjustments") or out.get("rope_condense_ratio"):
            out["rope_local_base_freq"] = local_base
            out["rope_indices"] = _sliding_layers(hf, fam)
    return out


def _sliding_layers(hf: dict, fam: Family) -> list[int]:
    """1 for every layer that attends within a sliding window."""
    n_layer = _first(hf, "num_hidden_layers", "n_layer", "num_layers")
    layer_types = hf.get("layer_types")
    if layer_types:
        if len(layer_types) != n_layer:
            raise LitGPTError(f"{_label(hf)}: layer_types has {len(layer_types)} entries for {n_layer} layers")
        unknown = sorted(set(layer_types) - {"full_attention", "sliding_attention"})
        if unknown:
            raise _unsupported(hf, f"attention layer types {unknown}")
        return [int(t == "sliding_attention") for t in layer_types]
    if fam.max_window_layers:  # Qwen 2/3 before layer_types: the layers from max_window_layers on slide
        first = _first(hf, "max_window_layers")
        return [int(i >= first) for i in range(n_layer)]
    pattern = _first(hf, "sliding_window_pattern", "_sliding_window_pattern", default=fam.sliding_pattern)
    if not pattern:  # every layer
        return [1] * n_layer
    return [int((i + 1) % pattern != 0) for i in range(n_layer)]


def read_sliding_window(hf: dict, fam: Family) -> dict:
    window = hf.get("sliding_window")
    if window is None or hf.get("use_sliding_window") is False:
        return {}
    indices = _sliding_layers(hf, fam)
    if not any(indices):
        return {}
    return dict(sliding_window_size=int(window), sliding_window_indices=indices)


def read_softcapping(hf: dict, fam: Family) -> dict:
    return dict(
        attention_logit_softcapping=hf.get("attn_logit_softcapping"),
        final_logit_softcapping=hf.get("final_logit_softcapping"),
    )


def read_final_softcapping(hf: dict, fam: Family) -> dict:
    """Gemma 3 configs carry ``attn_logit_softcapping``, but its attention never applies it (q/k norms instead)."""
    return dict(final_logit_softcapping=hf.get("final_logit_softcapping"))


def read_query_scalar(hf: dict, fam: Family) -> dict:
    scalar = hf.get("query_pre_attn_scalar")
    return dict(attention_scores_scalar=None if scalar is None else _tidy_number(scalar))


def read_llama_biases(hf: dict, fam: Family) -> dict:
    """``attention_bias`` covers q, k, v and the output projection, ``mlp_bias`` the MLP: we have one switch for all."""
    attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention != mlp:
        raise _unsupported(hf, f"attention_bias={attention} with mlp_bias={mlp} (biases must be all on or all off)")
    return dict(bias=attention)


def read_neox_layout(hf: dict, fam: Family) -> dict:
    if not hf.get("attention_bias", True):
        raise _unsupported(hf, "attention_bias=False (GPT-NeoX MLP biases are always present)")
    return dict(parallel_residual=bool(hf.get("use_parallel_residual", True)))


def read_stablelm_layout(hf: dict, fam: Family) -> dict:
    parallel = bool(hf.get("use_parallel_residual", False))  # the parallel form feeds both branches one norm
    return dict(parallel_residual=parallel, shared_attention_norm=parallel, attn_bias=bool(hf.get("use_qkv_bias")))


def read_falcon_layout(hf: dict, fam: Family) -> dict:
    n_head = _first(hf, "num_attention_heads", "n_head")
    new_layout = bool(hf.get("new_decoder_architecture", hf.get("model_type") == "RefinedWeb"))
    parallel = bool(hf.get("parallel_attn", True))
    if new_layout:
        groups = _first(hf, "num_kv_heads", "n_head_kv", default=n_head)
        shared = hf.get("num_ln_in_parallel_attn") == 1
        parallel = True
    else:
        groups = 1 if hf.get("multi_query", True) else n_head
        shared = parallel
    return dict(
        n_query_groups=groups, parallel_residual=parallel, shared_attention_norm=shared, bias=bool(hf.get("bias"))
    )


def read_moe(hf: dict, fam: Family) -> dict:
    if _first(hf, "decoder_sparse_step", default=1) != 1 or hf.get("mlp_only_layers"):
        raise _unsupported(hf, "dense layers mixed with expert layers (decoder_sparse_step / mlp_only_layers)")
    return dict(
        n_expert=_first(hf, "num_local_experts", "num_experts"),
        n_expert_per_token=_first(hf, "num_experts_per_tok"),
        moe_intermediate_size=hf.get("moe_intermediate_size"),
    )


# -- the family table -----------------------------------------------------------------------------------------------

COMMON_READERS: tuple[Callable, ...] = (read_sizes, read_norm_eps, read_activation, read_rope)

# every field a family does not fix starts from these (the LLaMA layout)
BASE_FIELDS = dict(
    parallel_residual=False,
    shared_attention_norm=False,
    norm_class_name="RMSNorm",
    bias=False,
    attn_bias=False,
    lm_head_bias=False,
    gelu_approximate="none",
)


@dataclass(frozen=True)
class Family:
    fixed: dict  # Config fields shared by the whole family
    readers: tuple = ()  # readers beyond COMMON_READERS; later readers win
    defaults: dict = field(default_factory=dict)  # Hugging Face defaults for keys a config.json may leave out
    unsupported: dict = field(default_factory=dict)  # key -> the values we can reproduce (absent/null always ok)
    activation_keys: tuple = ("hidden_act",)
    activation_aliases: dict = field(default_factory=dict)  # names a family's configs use loosely
    rotary_percentage: float = 1.0
    linear_rope: str = "condense"  # linear rope scaling as rope_condense_ratio ("condense") or rope_adjustments
    sliding_pattern: int = 0  # without layer_types: every n-th layer is global (0: all layers slide)
    max_window_layers: bool = False  # without layer_types: only layers >= max_window_layers slide (Qwen 2/3)
    partial_rotary: bool = False  # whether transformers' modelling code honours partial_rotary_factor / rotary_pct


_LLAMA = dict(mlp_class_name="LLaMAMLP")
_GEMMA = dict(mlp_class_name="GemmaMLP", scale_embeddings=True)
_GEMMA_POST_NORMS = dict(_GEMMA, post_attention_norm=True, post_mlp_norm=True)
# Gemma's attention_bias covers q, k, v and the output projection while its MLP never has biases: no litgpt switch
_GEMMA_UNSUPPORTED = {"use_bidirectional_attention": (False,), "attention_bias": (False,)}
_QWEN_DEFAULTS = {"use_sliding_window": False, "max_window_layers": 28}

# fmt: off
FAMILIES: dict[str, Family] = {
    "llama": Family(_LLAMA, (read_llama_biases,), {"max_position_embeddings": 2048}),
    "mistral": Family(_LLAMA, (read_sliding_window,)),
    "mixtral": Family(dict(mlp_class_name="LLaMAMoE"), (read_sliding_window, read_moe)),
    # transformers' Qwen2/Qwen3 defaults: no sliding window, and where on, from layer 28 on (without layer_types)
    "qwen2": Family(dict(_LLAMA, attn_bias=True), (read_sliding_window,), _QWEN_DEFAULTS, max_window_layers=True),
    "qwen3": Family(
        dict(_LLAMA, norm_qk=True), (read_llama_biases, read_sliding_window), _QWEN_DEFAULTS, max_window_layers=True
    ),
    # our router always renormalises the chosen experts' weights, which is Qwen3-MoE's norm_topk_prob=True
    "qwen3_moe": Family(
        dict(mlp_class_name="LLaMAMoE", norm_qk=True),
        (read_llama_biases, read_sliding_window, read_moe),
        {"use_sliding_window": False},
        unsupported={"norm_topk_prob": (True,)},
    ),
    # the first Gemma uploads say "gelu" although every Gemma model uses the tanh approximation
    "gemma": Family(
        _GEMMA, unsupported=_GEMMA_UNSUPPORTED,
        activation_keys=("hidden_activation", "hidden_act"), activation_aliases={"gelu": "gelu_pytorch_tanh"},
    ),
    "gemma2": Family(
        _GEMMA_POST_NORMS,
        (read_sliding_window, read_softcapping, read_query_scalar),
        {"query_pre_attn_scalar": 256},
        unsupported=_GEMMA_UNSUPPORTED,
        activation_keys=("hidden_activation", "hidden_act"),
        sliding_pattern=2,
    ),
    "gemma3_text": Family(
        dict(_GEMMA_POST_NORMS, norm_qk=True),
        (read_sliding_window, read_final_softcapping, read_query_scalar),
        # Gemma 3 multimodal configs list only what differs from these (transformers' Gemma3TextConfig defaults)
        dict(
            vocab_size=262208, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
            hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072, rms_norm_eps=1e-6,
            rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, query_pre_attn_scalar=256, sliding_window=4096,
            sliding_window_pattern=6,
        ),
        unsupported=_GEMMA_UNSUPPORTED,
        activation_keys=("hidden_activation", "hidden_act"),
        linear_rope="adjustments",
        sliding_pattern=6,
    ),
    "phi": Family(
        dict(mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm", parallel_residual=True,
             shared_attention_norm=True, bias=True, lm_head_bias=True),
        unsupported={"qk_layernorm": (False,)},
        rotary_percentage=0.5,
        partial_rotary=True,
    ),
    "phi3": Family(_LLAMA, (read_sliding_window,), partial_rotary=True),
    "gpt_neox": Family(
        dict(mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm", bias=True),
        (read_neox_layout,),
        rotary_percentage=0.25,
        partial_rotary=True,
    ),
    "stablelm": Family(
        dict(_LLAMA, norm_class_name="LayerNorm"),
        (read_stablelm_layout,),
        unsupported={"qk_layernorm": (False,)},
        rotary_percentage=0.25,
        partial_rotary=True,
    ),
    "olmo": Family(
        dict(_LLAMA, norm_class_name="LayerNorm"),  # OLMo's LayerNorm has no parameters and a fixed eps
        (read_llama_biases,),
        {"layer_norm_eps": 1e-5},
        unsupported={"clip_qkv": ()},
    ),
    "olmo2": Family(
        dict(_LLAMA, norm_1=False, norm_2=False, post_attention_norm=True, post_mlp_norm=True, norm_qk=True,
             norm_qk_type="olmo2"),
        (read_llama_biases,),
    ),
    "falcon": Family(
        dict(mlp_class_name="GptNeoxMLP", norm_class_name="LayerNorm"),
        (read_falcon_layout,),
        {"max_position_embeddings": 2048, "activation": "gelu"},
        unsupported={"alibi": (False,), "apply_residual_connection_post_layernorm": (False,)},
        activation_keys=("activation", "hidden_act"),
    ),
}
# fmt: on
FAMILIES["RefinedWebModel"] = FAMILIES["RefinedWeb"] = FAMILIES["falcon"]  # the first Falcon uploads

# fields that say nothing about the network (the tokenizer's size, how to pad it, labels)
NON_ARCHITECTURE = ("name", "hf_config", "vocab_size", "padding_multiple")
# fields where the registry knowingly rounds or departs from published configs; a match ignoring them is "loose"
LOOSE_FIELDS = ("block_size", "norm_eps", "sliding_window_size")


# -- entry point ----------------------------------------------------------------------------------------------------


def config_from_hf(config: str | Path | dict, **overrides: Any) -> Config:
    """A Config for a Hugging Face ``config.json`` (a path, a folder holding one, or its parsed dict)."""
    hf, path_hint = _load(config)
    hf = _text_config(hf)
    model_type = _model_type(hf)
    fam = FAMILIES[model_type]
    hf = {**fam.defaults, **{k: v for k, v in hf.items() if v is not None}, "model_type": model_type}
    for key, allowed in fam.unsupported.items():
        if hf.get(key) is not None and hf[key] not in allowed:
            raise _unsupported(hf, f"{key}={hf[key]!r}")

    values: dict[str, Any] = {**BASE_FIELDS, **fam.fixed}
    for reader in COMMON_READERS + fam.readers:
        try:
            values.update(reader(hf, fam))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, LitGPTError):
                raise
            raise LitGPTError(f"{_label(hf)}: cannot read config.json ({type(e).__name__}: {e})") from None
    for key, value in fam.fixed.items():  # fixed switches win over what readers found
        values[key] = value
    values.update(_identity(hf, values, path_hint))

    known = {f.name for f in fields(Config)}
    bad = sorted(set(overrides) - known)
    if bad:
        from litgpt.config import suggest

        raise LitGPTError(f"unknown Config field(s) {bad}: {suggest(bad[0], known, what='field')}")
    if "name" in overrides and "hf_config" not in overrides:  # naming a registered model names its repo too
        registered = _lookup(overrides["name"])
        values["hf_config"] = dict(_registry()[registered]["hf_config"]) if registered else {}
    return Config(**{**values, **overrides})


def _load(config: str | Path | dict) -> tuple[dict, str | None]:
    if isinstance(config, dict):
        return dict(config), None
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise LitGPTError(f"Hugging Face config {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise LitGPTError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise LitGPTError(f"{path} must hold a JSON object")
    # the folder as named (checkpoints/org/name), not where a symlinked config.json points (a Hugging Face cache blob)
    parent = Path(os.path.abspath(path)).parent
    return data, f"{parent.parent.name}/{parent.name}"


def _text_config(hf: dict) -> dict:
    """Multimodal Gemma 3 keeps the language model's settings in ``text_config`` (its logits are never softcapped)."""
    text = hf.get("text_config")
    if hf.get("model_type") == "gemma3" and isinstance(text, dict):
        name = {k: hf[k] for k in ("_name_or_path",) if hf.get(k)}
        return {**text, "model_type": "gemma3_text", **name, "final_logit_softcapping": None}
    return hf


# fmt: off
_ARCHITECTURE_TO_TYPE = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "MixtralForCausalLM": "mixtral",
    "GPTNeoXForCausalLM": "gpt_neox", "PhiForCausalLM": "phi", "Phi3ForCausalLM": "phi3",
    "GemmaForCausalLM": "gemma", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3_text",
    "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe",
    "OlmoForCausalLM": "olmo", "Olmo2ForCausalLM": "olmo2", "FalconForCausalLM": "falcon",
    "StableLmForCausalLM": "stablelm",
}
# fmt: on


def _model_type(hf: dict) -> str:
    model_type = hf.get("model_type")
    if not model_type:
        archs = hf.get("architectures") or []
        model_type = next((_ARCHITECTURE_TO_TYPE[a] for a in archs if a in _ARCHITECTURE_TO_TYPE), None)
        if model_type is None:
            raise LitGPTError(f"config.json has no model_type (architectures: {archs}); cannot tell the model family")
    if model_type not in FAMILIES:
        supported = ", ".join(sorted(k for k in FAMILIES if k.islower()))
        raise LitGPTError(f"Unsupported Hugging Face model_type {model_type!r}; supported: {supported}")
    return model_type


# -- naming: prefer a registered model ------------------------------------------------------------------------------


def _architecture(values: dict, skip: tuple = ()) -> dict:
    return {k: v for k, v in values.items() if k not in NON_ARCHITECTURE and k not in skip}


def _matches(values: dict) -> list[str]:
    """Registered names with this architecture: exact matches, else those that differ only in the fewest
    LOOSE_FIELDS (a registry entry that rounds a published value still names the model)."""
    probe = Config(**values).to_dict()
    mine = _architecture(probe, LOOSE_FIELDS)
    by_distance: dict[int, list[str]] = {}
    for name, entry in _registry().items():
        if entry["n_layer"] != probe["n_layer"] or entry["n_embd"] != probe["n_embd"]:
            continue  # cheap filter before building the entry
        theirs = Config(**entry).to_dict()
        if _architecture(theirs, LOOSE_FIELDS) == mine:
            distance = sum(theirs[k] != probe[k] for k in LOOSE_FIELDS)
            by_distance.setdefault(distance, []).append(name)
    return sorted(by_distance[min(by_distance)]) if by_distance else []


def _lookup(hint: str) -> str | None:
    """A registered name for 'org/name', a path ending in it, or a short name (case-insensitive)."""
    parts = [p for p in re.split(r"[\\/]+", hint.strip()) if p]
    if not parts:
        return None
    if len(parts) >= 2:
        repo = f"{parts[-2]}/{parts[-1]}".lower()
        if repo in _repo_index():
            return _repo_index()[repo]
    return _name_index().get(parts[-1].lower())


def _similarity(a: str, b: str) -> float:
    norm = lambda s: re.sub(r"[^a-z0-9]+", "", s.lower())  # noqa: E731
    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def _identity(hf: dict, values: dict, path_hint: str | None) -> dict:
    """name, hf_config and (for a registered architecture) the registry's tokenizer vocab size and padding."""
    hints = [h for h in (hf.get("_name_or_path"), path_hint) if isinstance(h, str) and h.strip()]
    matches = _matches(values)
    chosen = next((n for n in map(_lookup, hints) if n), None)
    if chosen is None and matches:
        label = hf.get("_name_or_path") or hf.get("_model_name_or_path") or ""
        chosen = max(matches, key=lambda n: (_similarity(label, n), -matches.index(n))) if label else matches[0]
    if chosen is not None:
        entry = _registry()[chosen]
        out = dict(name=chosen, hf_config=dict(entry["hf_config"]))
        if chosen in matches and entry["padded_vocab_size"] == values["padded_vocab_size"]:
            out.update(vocab_size=entry["vocab_size"], padding_multiple=entry["padding_multiple"])
        return out
    if not hints:
        return dict(name="", hf_config={})
    parts = [p for p in re.split(r"[\\/]+", hints[0].strip()) if p]
    hf_config = {"org": parts[-2], "name": parts[-1]} if len(parts) >= 2 else {}
    return dict(name=parts[-1], hf_config=hf_config)
