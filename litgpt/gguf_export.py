"""Write a litgpt checkpoint folder as one GGUF file (llama.cpp's single-file format).

``export_gguf(checkpoint_dir, out_path, dtype)`` is the inverse of :mod:`litgpt.gguf_import`: the model's shape goes
into llama.cpp's metadata keys, the tokenizer into its ``tokenizer.ggml.*`` keys and every weight into a tensor of
llama.cpp's naming. Matrices are stored as F16 (``f16``, the default), Q8_0 (``q8_0``), BF16 (``bf16``) or F32
(``f32``); one-dimensional tensors (norm weights, biases) always stay F32, as llama.cpp keeps them.

The layout facts it relies on are the ones :mod:`litgpt.gguf_import` undoes:

* our fused ``attn.qkv`` is split into ``attn_q``/``attn_k``/``attn_v``;
* for the ``llama`` architecture the query and key rows of each head are reordered so that the two rotary halves
  are interleaved (llama.cpp rotates adjacent pairs); Gemma 3 rotates halves in llama.cpp too, so its rows stay;
* Gemma 3's RMSNorm weights are stored with 1 added (llama.cpp multiplies by the stored weight; we add 1 at run time);
* an output projection equal to the token embedding is left out (llama.cpp then ties them).

Only Llama-style models (llama.cpp's ``llama``: Llama 2/3, SmolLM2, TinyLlama, ...) and Gemma 3 are supported; anything
else is refused before any work with a one-line :class:`~litgpt.errors.LitGPTError`.

The file is written beside its destination and renamed into place at the end, one tensor at a time, so memory
holds one converted tensor besides the (memory-mapped) checkpoint.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError

# token types of llama.cpp's vocabulary (tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# dtype name -> (ggml type name for matrices, llama.cpp's general.file_type)
_DTYPES = {"f32": ("F32", 0), "f16": ("F16", 1), "q8_0": ("Q8_0", 7), "bf16": ("BF16", 32)}
_DTYPE_ALIASES = {
    "f32": "f32", "float32": "f32", "fp32": "f32", "32-true": "f32",
    "f16": "f16", "float16": "f16", "fp16": "f16", "half": "f16", "16-true": "f16",
    "bf16": "bf16", "bfloat16": "bf16", "bf16-true": "bf16",
    "q8_0": "q8_0", "q8": "q8_0",
}  # fmt: skip
_F16_MAX = float(np.finfo(np.float16).max)

# our per-block names -> llama.cpp's (q/k/v come from the fused qkv and are handled apart)
_BLOCK_NAMES = {
    "norm_1.weight": "attn_norm.weight",
    "attn.proj.weight": "attn_output.weight",
    "attn.norm_q.weight": "attn_q_norm.weight",
    "attn.norm_k.weight": "attn_k_norm.weight",
    "post_attention_norm.weight": "post_attention_norm.weight",
    "norm_2.weight": "ffn_norm.weight",
    "mlp.fc_1.weight": "ffn_gate.weight",
    "mlp.fc_2.weight": "ffn_up.weight",
    "mlp.proj.weight": "ffn_down.weight",
    "post_mlp_norm.weight": "post_ffw_norm.weight",
}


# ---------------------------------------------------------------------------------------------------------------
# which llama.cpp architecture a config is
# ---------------------------------------------------------------------------------------------------------------
def gguf_architecture(config: Config) -> str:
    """``"llama"`` or ``"gemma3"``; a LitGPTError for every other model."""
    c = config
    common = (
        c.norm_class_name == "RMSNorm"
        and not c.parallel_residual
        and not c.shared_attention_norm
        and c.norm_1
        and c.norm_2
        and not c.bias
        and not c.lm_head_bias
        and c.rotary_percentage == 1.0
        and not c.rope_interleave
        and c.n_expert == 0
        and c.latent_attention is None
        and c.norm_qk_type == "default"
    )
    if common and c.mlp_class_name == "LLaMAMLP":
        if (
            not c.post_attention_norm
            and not c.post_mlp_norm
            and not c.norm_qk
            and c.sliding_window_size is None
            and c.attention_logit_softcapping is None
            and c.final_logit_softcapping is None
            and not c.scale_embeddings
            and c.attention_scores_scalar in (None, c.head_size)
            and c.rope_indices is None
            and c.rope_local_base_freq is None
        ):
            return "llama"
    if common and c.mlp_class_name == "GemmaMLP":
        # llama.cpp scales Gemma 3 27B's queries by 1/sqrt(n_embd / n_head) and every other size by 1/sqrt(head_size)
        scalar = c.n_embd // c.n_head if c.n_layer == 62 else c.head_size
        if (
            c.post_attention_norm
            and c.post_mlp_norm
            and c.norm_qk
            and c.scale_embeddings
            and c.gelu_approximate == "tanh"
            and not c.attn_bias
            and c.sliding_window_size is not None
            and c.rope_local_base_freq is not None
            and (c.attention_scores_scalar or c.head_size) == scalar
            and (c.rope_indices is None or list(c.rope_indices) == list(c.sliding_window_indices))
        ):
            return "gemma3"
    raise LitGPTError(
        f"export to GGUF is not supported for {c.name or 'this model'} yet (supported: Llama-style models and Gemma 3)"
    )


# ---------------------------------------------------------------------------------------------------------------
# model metadata
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _KV:
    key: str
    value: Any
    vtype: str  # a GGUFValueType name
    sub_type: Optional[str] = None  # for arrays


def _model_metadata(config: Config, arch: str, vocab_size: int) -> list[_KV]:
    a = arch
    kv = [
        _KV(f"{a}.context_length", config.block_size, "UINT32"),
        _KV(f"{a}.embedding_length", config.n_embd, "UINT32"),
        _KV(f"{a}.block_count", config.n_layer, "UINT32"),
        _KV(f"{a}.feed_forward_length", config.intermediate_size, "UINT32"),
        _KV(f"{a}.attention.head_count", config.n_head, "UINT32"),
        _KV(f"{a}.attention.head_count_kv", config.n_query_groups, "UINT32"),
        _KV(f"{a}.attention.key_length", config.head_size, "UINT32"),
        _KV(f"{a}.attention.value_length", config.head_size, "UINT32"),
        _KV(f"{a}.attention.layer_norm_rms_epsilon", float(config.norm_eps), "FLOAT32"),
        _KV(f"{a}.rope.freq_base", float(config.rope_base), "FLOAT32"),
        _KV(f"{a}.rope.dimension_count", config.rope_n_elem, "UINT32"),
        _KV(f"{a}.vocab_size", vocab_size, "UINT32"),
    ]
    linear = _linear_rope_factor(config)
    if linear is not None:
        kv += [_KV(f"{a}.rope.scaling.type", "linear", "STRING"), _KV(f"{a}.rope.scaling.factor", linear, "FLOAT32")]
    if arch == "gemma3":
        kv += [
            _KV(f"{a}.attention.sliding_window", config.sliding_window_size, "UINT32"),
            _KV(f"{a}.rope.freq_base_swa", float(config.rope_local_base_freq), "FLOAT32"),
        ]
        sliding = [bool(x) for x in config.sliding_window_indices]
        if sliding != [(i + 1) % 6 != 0 for i in range(config.n_layer)]:  # llama.cpp's default: every sixth is global
            kv.append(_KV(f"{a}.attention.sliding_window_pattern", sliding, "ARRAY", "BOOL"))
        for name in ("attn_logit_softcapping", "final_logit_softcapping"):
            value = getattr(config, "attention_logit_softcapping" if name.startswith("attn") else name)
            if value is not None:
                kv.append(_KV(f"{a}.{name}", float(value), "FLOAT32"))
    return kv


def _linear_rope_factor(config: Config) -> Optional[float]:
    """Linear rope scaling (``rope_condense_ratio`` divides positions, which is the same thing)."""
    adj = config.rope_adjustments
    if adj and "long_factor" in adj:
        raise LitGPTError(f"export to GGUF is not supported for {config.name} yet (longrope rope scaling)")
    if adj and "low_freq_factor" in adj:
        if config.rope_condense_ratio != 1:
            raise LitGPTError(
                f"export to GGUF is not supported for {config.name} yet (Llama 3.1 rope scaling with a condense ratio)"
            )
        return None  # stored as the rope_freqs tensor
    factor = float(adj["factor"]) if adj else 1.0
    factor *= config.rope_condense_ratio
    return factor if factor != 1.0 else None


def _rope_freqs(config: Config) -> Optional[torch.Tensor]:
    """Llama 3.1-style scaling: llama.cpp stores the divisor of each rotary frequency as ``rope_freqs.weight``."""
    adj = config.rope_adjustments
    if not adj or "low_freq_factor" not in adj:
        return None
    from litgpt.model import adjust_inv_freq

    n = config.rope_n_elem
    inv_freq = 1.0 / (config.rope_base ** (torch.arange(0, n, 2, dtype=torch.float64) / n))
    return (inv_freq / adjust_inv_freq(inv_freq, adj)).float()


# ---------------------------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LitGPTError(f"Cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def _components(obj: Optional[dict], key: str) -> list[dict]:
    """A tokenizers normalizer/pre-tokenizer/decoder as a flat list of its steps."""
    if not obj:
        return []
    if obj.get("type") == "Sequence":
        return [s for step in obj.get(key, []) for s in _components(step, key)]
    return [obj]


def _split_pattern(step: dict) -> Optional[str]:
    pattern = step.get("pattern") or {}
    return pattern.get("Regex") if isinstance(pattern, dict) else None


def _gpt2_pre(pre_tokenizer: Optional[dict]) -> str:
    """llama.cpp's name (tokenizer.ggml.pre) for a byte-level pre-tokenizer; the importer knows the same names."""
    from litgpt.gguf_import import _LLAMA3_SPLIT, _QWEN2_SPLIT

    steps = _components(pre_tokenizer, "pretokenizers")
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = _split_pattern(steps[0])
        if pattern == _LLAMA3_SPLIT:
            return "llama-bpe"
        if pattern == _QWEN2_SPLIT:
            return "qwen2"
    raise LitGPTError(
        f"export to GGUF is not supported for this tokenizer yet: its byte-level pre-tokenizer ({'+'.join(kinds)}) "
        "matches none of llama.cpp's that litgpt knows (gpt-2, smollm, llama-bpe, qwen2)"
    )


def _space_prefix(data: dict) -> bool:
    """Whether a SentencePiece-style tokenizer.json puts '▁' before the text."""
    for step in _components(data.get("normalizer"), "normalizers"):
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
            return True
    for step in _components(data.get("pre_tokenizer"), "pretokenizers"):
        if step.get("type") == "Metaspace":
            scheme = step.get("prepend_scheme", "always" if step.get("add_prefix_space", True) else "never")
            return scheme != "never"
    return False


def _merge_pairs(merges: list) -> list[tuple[str, str]]:
    """tokenizer.json merges: ``"a b"`` strings (older files) or ``["a", "b"]`` pairs."""
    out = []
    for m in merges:
        if isinstance(m, str):
            left, _, right = m.partition(" ")
            out.append((left, right))
        else:
            out.append((m[0], m[1]))
    return out


@dataclass
class _Vocab:
    model: str  # "gpt2" or "llama"
    tokens: list[str]
    types: list[int]
    scores: Optional[list[float]] = None
    merges: Optional[list[str]] = None
    pre: str = "default"
    add_space_prefix: bool = False


_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _vocab_from_tokenizer_json(path: Path, arch: str) -> _Vocab:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LitGPTError(f"Cannot read {path}: {e}") from None
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise LitGPTError(
            f"export to GGUF is not supported for this tokenizer yet: {path} holds a {model.get('type')} model "
            "(supported: BPE, byte-level or SentencePiece-style)"
        )
    ids: dict[int, str] = {}
    for token, i in model.get("vocab", {}).items():
        ids[int(i)] = token
    added = {int(t["id"]): t for t in data.get("added_tokens", [])}
    for i, t in added.items():
        ids[i] = t["content"]
    if not ids:
        raise LitGPTError(f"{path} has an empty vocabulary")
    n = max(ids) + 1
    missing = [i for i in range(n) if i not in ids]
    tokens = [ids.get(i, f"[PAD{i}]") for i in range(n)]
    types = [UNUSED if i in missing else NORMAL for i in range(n)]
    byte_level = any(
        s.get("type") == "ByteLevel"
        for s in _components(data.get("pre_tokenizer"), "pretokenizers") + _components(data.get("decoder"), "decoders")
    )
    byte_fallback = bool(model.get("byte_fallback"))
    unk = model.get("unk_token")
    for i, t in enumerate(tokens):
        if i in added:
            types[i] = CONTROL if added[i].get("special") else USER_DEFINED
        elif byte_fallback and _BYTE_TOKEN.fullmatch(t):
            types[i] = BYTE
        elif unk is not None and t == unk:
            types[i] = UNKNOWN
    merges = _merge_pairs(model.get("merges", []))
    if byte_level:
        return _Vocab(
            "gpt2", tokens, types, merges=[f"{a} {b}" for a, b in merges], pre=_gpt2_pre(data.get("pre_tokenizer"))
        )
    # SentencePiece-style: llama.cpp stores no merges, only a score per token (higher merges first). A token made
    # by a merge scores minus that merge's rank; every other token scores below all of them.
    rank: dict[str, int] = {}
    for r, (a, b) in enumerate(merges):
        rank.setdefault(a + b, r)
    floor = -float(len(merges) + 1)
    scores = [-float(rank[t]) if t in rank and types[i] == NORMAL else floor for i, t in enumerate(tokens)]
    if arch == "gemma3":
        # llama.cpp spells Gemma's whitespace-only added tokens with real spaces (they match the raw text);
        # both readers (ours and transformers') turn them back into '▁' runs
        tokens = [
            t.replace("\u2581", " ") if types[i] == USER_DEFINED and t and set(t) == {"\u2581"} else t
            for i, t in enumerate(tokens)
        ]
    return _Vocab("llama", tokens, types, scores=scores, add_space_prefix=_space_prefix(data))


def _vocab_from_sentencepiece(path: Path) -> _Vocab:
    import sentencepiece

    try:
        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except Exception as e:  # sentencepiece raises OSError/RuntimeError depending on the failure
        raise LitGPTError(f"Cannot load {path}: {e}") from None
    tokens, types, scores = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(UNKNOWN)
        elif sp.is_control(i):
            types.append(CONTROL)
        elif sp.is_byte(i):
            types.append(BYTE)
        elif sp.is_unused(i):
            types.append(UNUSED)
        else:
            types.append(NORMAL)
    return _Vocab("llama", tokens, types, scores=scores, add_space_prefix=True)


def _tokenizer_metadata(checkpoint_dir: Path, arch: str, n_rows: int) -> list[_KV]:
    from litgpt.tokenizer import Tokenizer, _id_list, _token_text

    if (checkpoint_dir / "tokenizer.json").is_file():
        vocab = _vocab_from_tokenizer_json(checkpoint_dir / "tokenizer.json", arch)
    elif (checkpoint_dir / "tokenizer.model").is_file():
        vocab = _vocab_from_sentencepiece(checkpoint_dir / "tokenizer.model")
    else:
        raise LitGPTError(
            f"{checkpoint_dir} has no tokenizer (tokenizer.json or tokenizer.model); a GGUF file needs its vocabulary"
        )
    if len(vocab.tokens) > n_rows:
        raise LitGPTError(
            f"the tokenizer in {checkpoint_dir} has {len(vocab.tokens)} tokens but the model embeds only {n_rows}"
        )
    for i in range(len(vocab.tokens), n_rows):  # llama.cpp needs one token per embedding row
        vocab.tokens.append(f"[PAD{i}]")
        vocab.types.append(UNUSED)
        if vocab.scores is not None:
            vocab.scores.append(-float(len(vocab.scores) + 1e6))

    tok = Tokenizer(checkpoint_dir)
    config = tok.tokenizer_config
    generation = _read_json(checkpoint_dir / "generation_config.json")
    special_map = _read_json(checkpoint_dir / "special_tokens_map.json")

    def token_id(name: str, gen_key: str) -> Optional[int]:
        text = _token_text(config.get(name)) or _token_text(special_map.get(name))
        i = tok._lookup(text) if text is not None else None
        if i is None:
            ids = _id_list(generation.get(gen_key))
            i = ids[0] if ids else None
        return i

    kv = [_KV("tokenizer.ggml.model", vocab.model, "STRING"), _KV("tokenizer.ggml.pre", vocab.pre, "STRING")]
    kv.append(_KV("tokenizer.ggml.tokens", vocab.tokens, "ARRAY", "STRING"))
    if vocab.scores is not None:
        kv.append(_KV("tokenizer.ggml.scores", vocab.scores, "ARRAY", "FLOAT32"))
    kv.append(_KV("tokenizer.ggml.token_type", vocab.types, "ARRAY", "INT32"))
    if vocab.merges:
        kv.append(_KV("tokenizer.ggml.merges", vocab.merges, "ARRAY", "STRING"))
    ids = {
        "bos": tok.bos_id,
        "eos": tok.eos_id,
        "unknown": token_id("unk_token", "unk_token_id"),
        "padding": token_id("pad_token", "pad_token_id"),
    }
    extra_stops = [i for i in tok.stop_ids if i != tok.eos_id]
    if extra_stops:
        ids["eot"] = extra_stops[0]
    for name, i in ids.items():
        if i is not None and 0 <= i < len(vocab.tokens):
            kv.append(_KV(f"tokenizer.ggml.{name}_token_id", int(i), "UINT32"))
    kv += [
        _KV("tokenizer.ggml.add_bos_token", bool(tok.use_bos), "BOOL"),
        _KV("tokenizer.ggml.add_eos_token", bool(config.get("add_eos_token", False) is True), "BOOL"),
        _KV("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix, "BOOL"),
    ]
    if tok.chat_template:
        kv.append(_KV("tokenizer.chat_template", tok.chat_template, "STRING"))
    return kv


# ---------------------------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------------------------
def _permute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Our rows hold each head's rotary halves one after the other; llama.cpp wants them interleaved
    (rows 0, h, 1, h+1, ...), since it rotates adjacent pairs."""
    head = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


@dataclass
class _Plan:
    name: str  # llama.cpp's tensor name
    shape: tuple[int, ...]  # PyTorch order
    qtype: str  # GGMLQuantizationType name
    make: Callable[[], torch.Tensor]


def _tensor_plan(state: dict[str, torch.Tensor], config: Config, arch: str, matrix_type: str) -> list[_Plan]:
    gemma = arch == "gemma3"
    plans: list[_Plan] = []
    used: set[str] = set()

    def get(key: str) -> torch.Tensor:
        if key not in state:
            raise LitGPTError(f"the checkpoint lacks {key}; it does not match its model_config.yaml")
        used.add(key)
        return state[key]

    def add(name: str, make: Callable[[], torch.Tensor], shape: tuple[int, ...]) -> None:
        qtype = "F32"
        if len(shape) == 2:
            qtype = matrix_type
            if qtype == "Q8_0" and shape[1] % 32:
                qtype = "F16"  # Q8_0 needs rows in blocks of 32 values, as llama.cpp falls back too
        plans.append(_Plan(name, tuple(shape), qtype, make))

    def plain(key: str, name: str, norm: bool = False) -> None:
        t = get(key)
        add(name, (lambda: get(key).float() + 1.0) if (norm and gemma) else (lambda: get(key).float()), tuple(t.shape))

    rope = _rope_freqs(config)
    if rope is not None:
        add("rope_freqs.weight", lambda: rope, tuple(rope.shape))
    wte = get("transformer.wte.weight")
    plain("transformer.wte.weight", "token_embd.weight")
    q_rows, kv_rows = config.n_head * config.head_size, config.n_query_groups * config.head_size
    for i in range(config.n_layer):
        prefix = f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            key = f"{prefix}attn.qkv.{kind}"
            if kind == "bias" and key not in state:
                continue
            qkv = get(key)
            if qkv.shape[0] != q_rows + 2 * kv_rows:
                raise LitGPTError(f"{key} has {qkv.shape[0]} rows; the config implies {q_rows + 2 * kv_rows}")
            for part, start, rows, heads in (
                ("attn_q", 0, q_rows, config.n_head),
                ("attn_k", q_rows, kv_rows, config.n_query_groups),
                ("attn_v", q_rows + kv_rows, kv_rows, None),
            ):

                def make(key=key, start=start, rows=rows, heads=heads) -> torch.Tensor:
                    t = get(key)[start : start + rows].float()
                    return _permute_rope_rows(t, heads) if arch == "llama" and heads else t

                add(f"blk.{i}.{part}.{kind}", make, (rows, *qkv.shape[1:]))
        for ours, theirs in _BLOCK_NAMES.items():
            if prefix + ours in state:
                plain(prefix + ours, f"blk.{i}.{theirs}", norm=theirs.endswith("norm.weight"))
    plain("transformer.ln_f.weight", "output_norm.weight", norm=True)
    head = state.get("lm_head.weight")
    if head is not None:
        used.add("lm_head.weight")
        if not (head.shape == wte.shape and torch.equal(head, wte)):
            plain("lm_head.weight", "output.weight")
    leftover = sorted(k for k in state if k not in used and not k.endswith(("rope_cos", "rope_sin")))
    if leftover:
        shown = ", ".join(leftover[:5]) + (" ..." if len(leftover) > 5 else "")
        raise LitGPTError(f"export to GGUF is not supported for {config.name} yet (tensors with no GGUF name: {shown})")
    return plans


def _encode(t: torch.Tensor, qtype: str, name: str, warn: Callable[[str], None]) -> np.ndarray:
    """The tensor's payload in ``qtype``."""
    t = t.detach().to(torch.float32).contiguous()
    if qtype == "F32":
        return t.numpy()
    if qtype == "F16":
        peak = float(t.abs().max()) if t.numel() else 0.0
        if peak > _F16_MAX and math.isfinite(peak):
            warn(f"{name}: values up to {peak:g} are beyond float16's range and were clipped to ±{_F16_MAX:g}")
            t = t.clamp(-_F16_MAX, _F16_MAX)
        return t.to(torch.float16).numpy()
    if qtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy()
    import gguf

    return gguf.quants.quantize(t.numpy(), gguf.GGMLQuantizationType[qtype])


def _nbytes(shape: tuple[int, ...], qtype: str) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    return math.prod(shape) // block * size


# ---------------------------------------------------------------------------------------------------------------
# the file: a header, the key/value pairs, the tensor table, then the aligned payloads
# ---------------------------------------------------------------------------------------------------------------
# GGUF value types (the numbers of the format)
_VTYPES = {
    "UINT8": (0, "<u1"), "INT8": (1, "<i1"), "UINT16": (2, "<u2"), "INT16": (3, "<i2"), "UINT32": (4, "<u4"),
    "INT32": (5, "<i4"), "FLOAT32": (6, "<f4"), "BOOL": (7, "?"), "STRING": (8, None), "ARRAY": (9, None),
    "UINT64": (10, "<u8"), "INT64": (11, "<i8"), "FLOAT64": (12, "<f8"),
}  # fmt: skip
ALIGNMENT = 32  # general.alignment's default
GGUF_VERSION = 3


def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(value: Any, vtype: str, sub_type: Optional[str]) -> bytes:
    """The bytes of one value (without its type tag); arrays are packed in one go, vocabularies are long."""
    if vtype == "STRING":
        return _string(value)
    if vtype == "ARRAY":
        head = struct.pack("<IQ", _VTYPES[sub_type][0], len(value))
        if sub_type == "STRING":
            return head + b"".join(_string(v) for v in value)
        return head + np.asarray(value, dtype=_VTYPES[sub_type][1]).tobytes()
    return np.asarray(value, dtype=_VTYPES[vtype][1]).tobytes()


def _write_header(f, arch: str, metadata: list[_KV], plans: list[_Plan]) -> None:
    import gguf

    kvs = [_KV("general.architecture", arch, "STRING"), *metadata]
    parts = [b"GGUF", struct.pack("<IQQ", GGUF_VERSION, len(plans), len(kvs))]
    for kv in kvs:
        parts += [_string(kv.key), struct.pack("<I", _VTYPES[kv.vtype][0]), _value(kv.value, kv.vtype, kv.sub_type)]
    offset = 0
    for p in plans:
        dims = tuple(reversed(p.shape))  # ggml order
        qtype = int(gguf.GGMLQuantizationType[p.qtype])
        parts += [_string(p.name), struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, qtype, offset)]
        offset += _nbytes(p.shape, p.qtype) + (-_nbytes(p.shape, p.qtype) % ALIGNMENT)
    header = b"".join(parts)
    f.write(header)
    f.write(b"\0" * (-len(header) % ALIGNMENT))


# ---------------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------------
def _parse_dtype(dtype: Union[None, str, torch.dtype]) -> str:
    if dtype is None:
        return "f16"
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPE_ALIASES:
        raise LitGPTError(f"GGUF export dtype {dtype!r} is not supported (use f16, q8_0, bf16 or f32)")
    return _DTYPE_ALIASES[key]


def _output_file(out_path: Path, checkpoint_dir: Path, config: Config, dtype: str) -> Path:
    """``out_path`` itself when it names a .gguf file, else ``<out_path>/<model name>-<dtype>.gguf``."""
    if out_path.suffix.lower() == ".gguf" and not out_path.is_dir():
        return out_path
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", config.name or checkpoint_dir.name).strip("-.") or "model"
    return out_path / f"{stem}-{dtype}.gguf"


def export_gguf(
    checkpoint_dir: Union[str, Path],
    out_path: Union[str, Path],
    dtype: Union[None, str, torch.dtype] = "f16",
    progress: bool = True,
) -> Path:
    """Write the checkpoint in ``checkpoint_dir`` as a GGUF file and return its path.

    Args:
        checkpoint_dir: a litgpt checkpoint folder (``lit_model.pth``, ``model_config.yaml``, tokenizer files).
        out_path: the ``.gguf`` file to write, or a folder to write ``<model name>-<dtype>.gguf`` into.
        dtype: how matrices are stored: ``f16`` (default), ``q8_0``, ``bf16`` or ``f32`` (torch dtypes and their
            names are accepted too); one-dimensional tensors are always F32.
        progress: show a progress bar on stderr.
    """
    from tqdm import tqdm

    from litgpt.checkpoint import load_state_dict, model_state
    from litgpt.loading import ensure_lit_weights
    from litgpt.utils import atomic_path, require_folder

    checkpoint_dir = Path(checkpoint_dir).expanduser()
    require_folder(checkpoint_dir, "The checkpoint directory")
    dtype = _parse_dtype(dtype)
    matrix_type, file_type = _DTYPES[dtype]
    config = Config.from_checkpoint(checkpoint_dir)
    arch = gguf_architecture(config)  # refuses unsupported models before any work
    out = _output_file(Path(out_path).expanduser(), checkpoint_dir, config, dtype)

    weights = ensure_lit_weights(checkpoint_dir)
    state = model_state(load_state_dict(weights), weights)
    plans = _tensor_plan(state, config, arch, matrix_type)
    n_rows = int(state["transformer.wte.weight"].shape[0])

    metadata = [
        _KV("general.type", "model", "STRING"),
        _KV("general.name", config.name or checkpoint_dir.name, "STRING"),
        _KV("general.file_type", file_type, "UINT32"),
        _KV("general.quantization_version", 2, "UINT32"),
        *_model_metadata(config, arch, n_rows),
        *_tokenizer_metadata(checkpoint_dir, arch, n_rows),
    ]

    def warn(message: str) -> None:
        print(f"Warning: {message}", file=sys.stderr)

    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        _write_header(f, arch, metadata, plans)
        bar = tqdm(plans, desc=f"Writing GGUF ({dtype})", unit="tensor", disable=not progress, file=sys.stderr)
        for p in bar:
            data = _encode(p.make(), p.qtype, p.name, warn)
            if data.nbytes != _nbytes(p.shape, p.qtype):
                raise LitGPTError(f"{p.name}: encoded to {data.nbytes} bytes, expected {_nbytes(p.shape, p.qtype)}")
            f.write(np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)
            f.write(b"\0" * (-data.nbytes % ALIGNMENT))
    return out
