"""Turn a GGUF file (llama.cpp's single-file format) into an ordinary litgpt checkpoint folder.

``convert_gguf(path)`` writes ``lit_model.pth`` (every tensor dequantized to float32 or the requested dtype, in
our state-dict names), ``model_config.yaml``, a Hugging Face ``config.json``, and the tokenizer files rebuilt from
the vocabulary stored in the file's metadata (``tokenizer.json``, ``tokenizer_config.json``,
``generation_config.json``). The folder is built beside its destination and renamed into place at the end, and a
small marker (``gguf_source.json``) records which file it came from, so a second call with the same file returns at
once.

The metadata and tensor directory are read with a small parser of our own (the format is a short header, a list of
typed key/value pairs and a tensor table): ``gguf.GGUFReader`` builds one numpy view per vocabulary entry and takes
tens of seconds on a 262k-token vocabulary. Tensor payloads are memory-mapped and dequantized one at a time with
``gguf.quants.dequantize``.

Facts about llama.cpp's layout that matter here:

* tensors are stored with their dimensions reversed (ggml order), so the row-major payload already has PyTorch's
  (out_features, in_features) layout once the dimensions are flipped back;
* for the ``llama`` architecture the converter permutes the rows of the query and key projections so that pairs of
  adjacent features rotate together (interleaved rope); our model rotates the two halves of each head, so the rows
  are put back;
* for ``gemma3`` the converter stores every RMSNorm weight with 1 already added; our model keeps the raw weight and
  adds 1 itself, so 1 is subtracted again;
* without ``output.weight`` the output projection is tied to the token embedding.
"""

from __future__ import annotations

import difflib
import json
import mmap
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from litgpt.config import Config, _registry
from litgpt.errors import LitGPTError

SUPPORTED_ARCHITECTURES = ("gemma3", "llama")
MARKER_FILE = "gguf_source.json"
MARKER_FORMAT = 1
OUTPUT_FILES = (
    "lit_model.pth",
    "model_config.yaml",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
)

# token types of llama.cpp's vocabulary (tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


# ---------------------------------------------------------------------------------------------------------------
# reading the file
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # PyTorch order (ggml order reversed)
    ggml_type: int
    offset: int  # absolute byte offset of the payload in the file


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    _mm: Optional[mmap.mmap] = field(default=None, repr=False)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def load(self, name: str) -> np.ndarray:
        """Dequantize one tensor to a fresh float32 array of its PyTorch shape."""
        import gguf

        info = self.tensors[name]
        qtype = gguf.GGMLQuantizationType(info.ggml_type)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n = int(np.prod(info.shape)) if info.shape else 1
        if info.shape and info.shape[-1] % block:
            raise LitGPTError(f"GGUF tensor {name} has rows of {info.shape[-1]} values, not a multiple of {block}")
        nbytes = n // block * type_size
        raw = np.frombuffer(self._mm, dtype=np.uint8, count=nbytes, offset=info.offset)
        rows = raw.reshape(-1, info.shape[-1] // block * type_size) if info.shape else raw
        if qtype == gguf.GGMLQuantizationType.BF16:
            # reinterpret the 16 bits as the top half of a float32
            out = (rows.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            try:
                out = gguf.quants.dequantize(rows, qtype)
            except NotImplementedError:
                raise LitGPTError(
                    f"GGUF tensor {name} uses the {qtype.name} quantization, which cannot be dequantized yet"
                ) from None
        return np.array(out, dtype=np.float32, copy=True).reshape(info.shape)

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a view of the payload is still alive somewhere; the mapping goes with it
                pass
            self._mm = None


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


def read_gguf(path: Union[str, Path]) -> GGUFFile:
    """Parse the header, the metadata and the tensor table; tensor payloads stay on disk (memory-mapped)."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise LitGPTError(f"{path} is not a GGUF file (it is empty)") from None
    try:
        if mm[:4] != b"GGUF":
            raise LitGPTError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
        (version,) = struct.unpack_from("<I", mm, 4)
        if version not in (2, 3):
            hint = " (a big-endian file?)" if version > 0xFFFF else ""
            raise LitGPTError(f"{path} is GGUF version {version}{hint}; only versions 2 and 3 can be read")
        n_tensors, n_kv = struct.unpack_from("<QQ", mm, 8)
        pos = 24

        def string(p: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", mm, p)
            return mm[p + 8 : p + 8 + n].decode("utf-8", errors="replace"), p + 8 + n

        def value(vtype: int, p: int) -> tuple[Any, int]:
            if vtype == _STRING:
                return string(p)
            if vtype == _ARRAY:
                etype, count = struct.unpack_from("<IQ", mm, p)
                p += 12
                if etype == _STRING:
                    items = []
                    for _ in range(count):
                        (n,) = struct.unpack_from("<Q", mm, p)
                        items.append(mm[p + 8 : p + 8 + n].decode("utf-8", errors="replace"))
                        p += 8 + n
                    return items, p
                if etype in _NUMPY:
                    arr = np.frombuffer(mm, dtype=_NUMPY[etype], count=count, offset=p)
                    return arr.tolist(), p + arr.nbytes
                items = []
                for _ in range(count):
                    item, p = value(etype, p)
                    items.append(item)
                return items, p
            if vtype not in _SCALARS:
                raise LitGPTError(f"{path} has a metadata value of unknown type {vtype}; the file may be damaged")
            fmt = _SCALARS[vtype]
            return struct.unpack_from(fmt, mm, p)[0], p + struct.calcsize(fmt)

        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", mm, pos)
            metadata[key], pos = value(vtype, pos + 4)
        infos = []
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", mm, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", mm, pos + 4)
            ggml_type, offset = struct.unpack_from("<IQ", mm, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            infos.append((name, tuple(int(d) for d in reversed(dims)), ggml_type, offset))
        alignment = int(metadata.get("general.alignment", 32))
        data_start = (pos + alignment - 1) // alignment * alignment
        tensors = {name: TensorInfo(name, shape, t, data_start + off) for name, shape, t, off in infos}
    except (struct.error, UnicodeDecodeError, IndexError, ValueError) as e:
        mm.close()
        if isinstance(e, LitGPTError):
            raise
        raise LitGPTError(
            f"{path} could not be read as a GGUF file ({type(e).__name__}: {e}); is it truncated?"
        ) from None
    except BaseException:
        mm.close()
        raise
    return GGUFFile(path, metadata, tensors, mm)


# ---------------------------------------------------------------------------------------------------------------
# model configuration
# ---------------------------------------------------------------------------------------------------------------
def _single(value: Any, what: str) -> Any:
    """Some GGUF keys may hold one value per layer; we need them to be uniform."""
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise LitGPTError(f"GGUF metadata {what} varies per layer ({value}); this is not supported yet")
        return value[0]
    return value


def _required(g: GGUFFile, key: str) -> Any:
    value = g.arch(key)
    if value is None:
        raise LitGPTError(f"{g.path} lacks the metadata key {g.architecture}.{key}; the file is incomplete")
    return _single(value, f"{g.architecture}.{key}")


def _rope_adjustments(g: GGUFFile, n_rope: int, rope_base: float) -> Optional[dict]:
    kind = g.arch("rope.scaling.type")
    factor = g.arch("rope.scaling.factor")
    if "rope_freqs.weight" in g.tensors:
        # Llama 3.1-style scaling: llama.cpp stores the per-frequency divisors; recover the parameters and check them
        divisors = torch.from_numpy(g.load("rope_freqs.weight")).double()
        factor = float(divisors.max())
        inv_freq = 1.0 / (rope_base ** (torch.arange(0, n_rope, 2, dtype=torch.float64) / n_rope))
        for old_len in (8192, 4096, 2048, 16384, 32768, 131072):
            adj = {"factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_seq_len": old_len}
            from litgpt.model import adjust_inv_freq

            implied = inv_freq / adjust_inv_freq(inv_freq, adj)
            if implied.shape == divisors.shape and torch.allclose(implied, divisors, rtol=1e-3, atol=1e-3):
                return adj
        raise LitGPTError(f"{g.path} uses a rope frequency table (rope_freqs) that is not Llama 3.1 scaling")
    if kind in (None, "none") or factor in (None, 1.0):
        return None
    if kind == "linear":
        return {"factor": float(factor)}
    raise LitGPTError(f"{g.path} uses rope scaling type {kind!r}, which is not supported yet (supported: linear)")


def config_from_gguf(g: GGUFFile) -> Config:
    """The Config the metadata describes; a registered model of the same shape is used when one matches."""
    arch = g.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise LitGPTError(
            f"GGUF architecture {arch!r} is not supported yet (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    if "token_embd.weight" not in g.tensors:
        raise LitGPTError(f"{g.path} has no token_embd.weight tensor; the file is incomplete")
    n_layer = int(_required(g, "block_count"))
    n_embd = int(_required(g, "embedding_length"))
    n_head = int(_required(g, "attention.head_count"))
    n_kv = int(_single(g.arch("attention.head_count_kv", n_head), "head_count_kv"))
    head_size = int(_single(g.arch("attention.key_length", n_embd // n_head), "key_length"))
    value_size = int(_single(g.arch("attention.value_length", head_size), "value_length"))
    if value_size != head_size:
        raise LitGPTError(f"{g.path} has key_length {head_size} != value_length {value_size}; not supported yet")
    n_rope = int(g.arch("rope.dimension_count", head_size))
    rope_base = float(g.arch("rope.freq_base", 10000.0))
    vocab_size = g.tensors["token_embd.weight"].shape[0]
    common = dict(
        name=_display_name(g),
        block_size=int(g.arch("context_length", 4096)),
        vocab_size=vocab_size,
        padded_vocab_size=vocab_size,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_query_groups=n_kv,
        head_size=head_size,
        intermediate_size=int(_required(g, "feed_forward_length")),
        parallel_residual=False,
        bias=False,
        attn_bias="blk.0.attn_q.bias" in g.tensors,
        norm_class_name="RMSNorm",
        norm_eps=float(_required(g, "attention.layer_norm_rms_epsilon")),
        rotary_percentage=n_rope / head_size,
        rope_base=rope_base,
        rope_adjustments=_rope_adjustments(g, n_rope, rope_base),
    )
    if arch == "llama":
        config = Config(**common, mlp_class_name="LLaMAMLP")
    else:  # gemma3
        window = g.arch("attention.sliding_window")
        pattern = g.arch("attention.sliding_window_pattern")
        if isinstance(pattern, list):
            sliding = [int(bool(p)) for p in pattern]
        else:  # llama.cpp's default for Gemma 3: every sixth layer attends globally
            period = int(pattern) if pattern else 6
            sliding = [0 if (i + 1) % period == 0 else 1 for i in range(n_layer)]
        # llama.cpp scales Gemma 3 27B queries by 1/sqrt(n_embd / n_head) and every other size by 1/sqrt(head_size)
        scalar = n_embd // n_head if n_layer == 62 else head_size
        config = Config(
            **common,
            mlp_class_name="GemmaMLP",
            gelu_approximate="tanh",
            post_attention_norm=True,
            post_mlp_norm=True,
            norm_qk="blk.0.attn_q_norm.weight" in g.tensors,
            scale_embeddings=True,
            attention_scores_scalar=scalar,
            sliding_window_size=int(window) if window else None,
            sliding_window_indices=sliding if window else None,
            rope_indices=sliding,
            rope_local_base_freq=float(g.arch("rope.freq_base_swa", 10000.0)),
            attention_logit_softcapping=g.arch("attn_logit_softcapping"),
            final_logit_softcapping=g.arch("final_logit_softcapping"),
        )
    match = _registry_match(g, config)
    if match is not None:
        overrides = {} if match.block_size == config.block_size else {"block_size": config.block_size}
        return Config.from_name(match.name, **overrides)
    return config


_IGNORED_FIELDS = {"name", "hf_config", "block_size", "padded_vocab_size", "padding_multiple", "rope_n_elem"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b) <= 1e-4 * max(abs(a), abs(b))
    return a == b


def _registry_match(g: GGUFFile, config: Config) -> Optional[Config]:
    """The registered model with exactly this architecture; name hints break ties (base vs. instruct)."""
    mine = config.to_dict()
    candidates = []
    for entry in _registry().values():
        try:
            other = Config(**entry)
        except LitGPTError:
            continue
        theirs = other.to_dict()
        if other.padded_vocab_size < config.vocab_size:
            continue
        if all(_same(mine[k], theirs[k]) for k in mine if k not in _IGNORED_FIELDS):
            candidates.append(other)
    if not candidates:
        return None
    hints = " ".join(
        str(g.metadata.get(k, ""))
        for k in ("general.name", "general.basename", "general.finetune", "general.size_label")
    )
    hints = f"{hints} {g.path.stem}".lower()
    chat = "tokenizer.chat_template" in g.metadata or any(w in hints for w in ("instruct", "chat", "-it"))

    def score(c: Config) -> tuple:
        lname = c.name.lower()
        chatty = any(w in lname for w in ("instruct", "chat", "-it"))
        return (chatty == chat, difflib.SequenceMatcher(None, lname, hints).ratio(), -len(lname))

    return max(candidates, key=score)


def _display_name(g: GGUFFile) -> str:
    md = g.metadata
    name = md.get("general.name") or " ".join(
        str(md[k]) for k in ("general.basename", "general.size_label") if md.get(k)
    )
    return str(name).strip() or g.path.stem


def default_checkpoint_dir(g: GGUFFile) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", _display_name(g)).strip("-.") or "gguf-model"
    return Path("checkpoints") / name


def hf_config_dict(config: Config, g: GGUFFile, bos_id: Optional[int], eos_id: Any, pad_id: Optional[int]) -> dict:
    """A Hugging Face config.json for the same model (LlamaForCausalLM or Gemma3ForCausalLM)."""
    tied = "output.weight" not in g.tensors
    hf: dict[str, Any] = {
        "vocab_size": config.padded_vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_query_groups,
        "head_dim": config.head_size,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,
        "attention_bias": config.attn_bias,
        "tie_word_embeddings": tied,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }
    if config.rope_adjustments:
        adj = config.rope_adjustments
        if "low_freq_factor" in adj:
            hf["rope_scaling"] = {
                "rope_type": "llama3",
                "factor": adj["factor"],
                "low_freq_factor": adj["low_freq_factor"],
                "high_freq_factor": adj["high_freq_factor"],
                "original_max_position_embeddings": adj["original_max_seq_len"],
            }
        else:
            hf["rope_scaling"] = {"rope_type": "linear", "factor": adj["factor"]}
    if g.architecture == "gemma3":
        hf.update(
            architectures=["Gemma3ForCausalLM"],
            model_type="gemma3_text",
            hidden_activation="gelu_pytorch_tanh",
            query_pre_attn_scalar=config.attention_scores_scalar,
            sliding_window=config.sliding_window_size,
            layer_types=[
                "sliding_attention" if config.is_sliding(i) else "full_attention" for i in range(config.n_layer)
            ],
            rope_local_base_freq=config.rope_local_base_freq,
            attn_logit_softcapping=config.attention_logit_softcapping,
            final_logit_softcapping=config.final_logit_softcapping,
        )
    else:
        hf.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", mlp_bias=False)
    return hf


# ---------------------------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------------------------
def _unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of q/k rows: within each head it interleaves the two rotary halves
    (rows 0, h, 1, h+1, ...); put them back as [first half | second half]."""
    rows = w.shape[0]
    head = rows // n_heads
    return w.reshape(n_heads, head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


_BLOCK_NAMES = {
    "attn_norm.weight": "norm_1.weight",
    "attn_output.weight": "attn.proj.weight",
    "attn_q_norm.weight": "attn.norm_q.weight",
    "attn_k_norm.weight": "attn.norm_k.weight",
    "post_attention_norm.weight": "post_attention_norm.weight",
    "ffn_norm.weight": "norm_2.weight",
    "ffn_gate.weight": "mlp.fc_1.weight",
    "ffn_up.weight": "mlp.fc_2.weight",
    "ffn_down.weight": "mlp.proj.weight",
    "post_ffw_norm.weight": "post_mlp_norm.weight",
}
_QKV = ("attn_q", "attn_k", "attn_v")


def convert_weights(g: GGUFFile, config: Config, dtype: torch.dtype, progress: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor, dequantized one at a time, renamed to our keys; q/k/v fused into ``attn.qkv``."""
    from tqdm import tqdm

    arch = g.architecture
    gemma = arch == "gemma3"
    state: dict[str, torch.Tensor] = {}
    pending: dict[int, dict[str, torch.Tensor]] = {}  # layer -> parts of qkv still waiting for their siblings
    names = [n for n in g.tensors if n != "rope_freqs.weight"]
    unknown = []

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(g.load(name))

    def store(key: str, t: torch.Tensor) -> None:
        state[key] = t.to(dtype).contiguous()

    for name in tqdm(names, desc="Dequantizing GGUF tensors", unit="tensor", disable=not progress, file=sys.stderr):
        if name == "token_embd.weight":
            store("transformer.wte.weight", _pad_rows(tensor(name), config.padded_vocab_size))
            continue
        if name == "output.weight":
            store("lm_head.weight", _pad_rows(tensor(name), config.padded_vocab_size))
            continue
        if name == "output_norm.weight":
            t = tensor(name)
            store("transformer.ln_f.weight", t - 1.0 if gemma else t)
            continue
        m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
        if m is None:
            unknown.append(name)
            continue
        layer, rest = int(m.group(1)), m.group(2)
        prefix = f"transformer.h.{layer}."
        base, _, kind = rest.rpartition(".")
        if base in _QKV and kind in ("weight", "bias"):
            t = tensor(name)
            if arch == "llama" and base != "attn_v":
                t = _unpermute_rope_rows(t, config.n_head if base == "attn_q" else config.n_query_groups)
            parts = pending.setdefault(layer, {})
            parts[rest] = t
            if all(f"{b}.{kind}" in parts for b in _QKV):
                store(prefix + f"attn.qkv.{kind}", torch.cat([parts.pop(f"{b}.{kind}") for b in _QKV]))
            continue
        if rest in _BLOCK_NAMES:
            t = tensor(name)
            if gemma and rest.endswith("norm.weight"):
                t = t - 1.0
            store(prefix + _BLOCK_NAMES[rest], t)
            continue
        unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise LitGPTError(f"{g.path} holds tensors this converter does not know for {arch}: {shown}")
    leftover = [f"blk.{i}.{k}" for i, parts in pending.items() for k in parts]
    if leftover:
        raise LitGPTError(f"{g.path} lacks the q/k/v siblings of {', '.join(leftover[:5])}")
    if "lm_head.weight" not in state:
        state["lm_head.weight"] = state["transformer.wte.weight"]  # tied: saved once by torch.save, loads as two
    return state


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] >= rows:
        return t
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])


# ---------------------------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------------------------
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) grouped by the splitting they stand for
_DIGITS_THEN_GPT2 = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva"}
_REGEX_SPLITS = {
    **{k: _LLAMA3_SPLIT for k in ("llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx", "pixtral")},
    **{k: _QWEN2_SPLIT for k in ("qwen2", "deepseek-r1-qwen", "megrez")},
}


def _byte_level_pre_tokenizer(pre: str):
    from tokenizers import Regex, pre_tokenizers

    if pre in _DIGITS_THEN_GPT2:
        # llama.cpp splits every digit off first, then applies the GPT-2 pattern (as the original tokenizers do)
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    if pre in _REGEX_SPLITS:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_REGEX_SPLITS[pre]), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if pre not in ("gpt-2", "gpt2", "default", ""):
        print(f"Note: GGUF pre-tokenizer {pre!r} is not known; using GPT-2's splitting", file=sys.stderr)
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _merges_from_vocab(tokens: list[str], order: dict[str, float]) -> list[tuple[str, str]]:
    """SentencePiece BPE files carry no merges: every token that is the concatenation of two other tokens is a merge.
    Tokens are ranked by ``order`` (higher first, file position breaking ties); within a token, longer left
    pieces come first."""
    vocab = set(tokens)
    first_seen = {}
    for i, t in enumerate(tokens):
        first_seen.setdefault(t, i)
    ranked = sorted(first_seen, key=lambda t: (-order[t], first_seen[t]))
    merges = []
    for t in ranked:
        for cut in range(len(t) - 1, 0, -1):
            left, right = t[:cut], t[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return merges


def build_tokenizer(g: GGUFFile):
    """A ``tokenizers.Tokenizer`` equivalent to the vocabulary described in the metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    md = g.metadata
    kind = md.get("tokenizer.ggml.model")
    tokens = md.get("tokenizer.ggml.tokens")
    if not tokens:
        raise LitGPTError(f"{g.path} has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    types = md.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    special_ids = {md.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding", "eot")}
    special_ids.discard(None)
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in md.get("tokenizer.ggml.merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = _byte_level_pre_tokenizer(str(md.get("tokenizer.ggml.pre", "default")))
        tok.decoder = decoders.ByteLevel()
        added_tokens = tokens
    elif kind == "llama":
        unk_id = md.get("tokenizer.ggml.unknown_token_id")
        if g.architecture.startswith("gemma"):
            # Gemma's files spell the whitespace tokens with real spaces; the model sees them as '▁' runs.
            # Its scores do not follow the merge order; the order of the tokens in the file does.
            tokens = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
            order = {}
            for i, t in enumerate(tokens):
                order[t] = -float(i)
        else:
            scores = md.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
            order = {}
            for t, s in zip(tokens, scores):
                order[t] = float(s)
        vocab = {t: i for i, t in enumerate(tokens)}
        merges = _merges_from_vocab(tokens, order)
        unk = tokens[unk_id] if unk_id is not None and unk_id < len(tokens) else None
        tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
        if g.architecture.startswith("gemma"):
            tok.normalizer = normalizers.Replace(" ", "\u2581")
            tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
        else:
            from tokenizers import pre_tokenizers

            prefix = bool(md.get("tokenizer.ggml.add_space_prefix", True))
            tok.pre_tokenizer = pre_tokenizers.Metaspace(
                replacement="\u2581", prepend_scheme="first" if prefix else "never", split=False
            )
            steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
            if prefix:
                steps.append(decoders.Strip(content=" ", left=1, right=0))
            tok.decoder = decoders.Sequence(steps)
        added_tokens = tokens
    else:
        raise LitGPTError(
            f"GGUF tokenizer model {kind!r} is not supported yet (supported: gpt2 (byte-level BPE), llama (SentencePiece))"
        )
    special = [
        AddedToken(t, special=True, normalized=False)
        for i, (t, ty) in enumerate(zip(added_tokens, types))
        if ty in (CONTROL, UNKNOWN) or i in special_ids
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for i, (t, ty) in enumerate(zip(added_tokens, types))
        if ty == USER_DEFINED and i not in special_ids and t in vocab and vocab[t] == i
    ]
    tok.add_special_tokens(special)
    tok.add_tokens(user)

    bos_id, eos_id = md.get("tokenizer.ggml.bos_token_id"), md.get("tokenizer.ggml.eos_token_id")
    add_bos, add_eos = _add_bos(md), bool(md.get("tokenizer.ggml.add_eos_token", False))
    single, pair, specials = ["$A:0"], ["$A:0", "$B:1"], []
    if add_bos and bos_id is not None:
        single, pair = [f"{tokens[bos_id]}:0", *single], [f"{tokens[bos_id]}:0", "$A:0", f"{tokens[bos_id]}:1", "$B:1"]
        specials.append((tokens[bos_id], bos_id))
    if add_eos and eos_id is not None:
        single, pair = [*single, f"{tokens[eos_id]}:0"], [*pair, f"{tokens[eos_id]}:1"]
        specials.append((tokens[eos_id], eos_id))
    if specials:
        tok.post_processor = processors.TemplateProcessing(
            single=" ".join(single), pair=" ".join(pair), special_tokens=list(dict.fromkeys(specials))
        )
    elif kind == "gpt2":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _add_bos(md: dict) -> bool:
    flag = md.get("tokenizer.ggml.add_bos_token")
    if flag is None:  # llama.cpp's default: SentencePiece vocabularies get BOS, byte-level ones do not
        return md.get("tokenizer.ggml.model") == "llama"
    return bool(flag)


def tokenizer_files(g: GGUFFile, config: Config) -> dict[str, dict]:
    """tokenizer_config.json and generation_config.json contents."""
    md = g.metadata
    tokens = md["tokenizer.ggml.tokens"]

    def tok(key: str) -> Optional[str]:
        i = md.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    tok_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok("bos"),
        "eos_token": tok("eos"),
        "unk_token": tok("unknown"),
        "pad_token": tok("padding"),
        "add_bos_token": _add_bos(md),
        "add_eos_token": bool(md.get("tokenizer.ggml.add_eos_token", False)),
        "model_max_length": config.block_size,
        "clean_up_tokenization_spaces": False,
    }
    if md.get("tokenizer.chat_template"):
        tok_config["chat_template"] = md["tokenizer.chat_template"]
    tok_config = {k: v for k, v in tok_config.items() if v is not None}
    eos = md.get("tokenizer.ggml.eos_token_id")
    eot = md.get("tokenizer.ggml.eot_token_id")
    eos_ids = eos if eot is None or eot == eos else [eos, eot]
    gen = {
        "bos_token_id": md.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos_ids,
        "pad_token_id": md.get("tokenizer.ggml.padding_token_id"),
    }
    return {
        "tokenizer_config.json": tok_config,
        "generation_config.json": {k: v for k, v in gen.items() if v is not None},
    }


# ---------------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------------
def _parse_dtype(dtype: Union[None, str, torch.dtype]) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "32-true": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    key = str(dtype).lower().removeprefix("torch.")
    if key not in names:
        raise LitGPTError(f"dtype {dtype!r} is not supported for GGUF conversion (use float32, bfloat16 or float16)")
    return names[key]


def _source_stamp(src: Path, dtype: torch.dtype) -> dict:
    st = src.stat()
    return {
        "format": MARKER_FORMAT,
        "source": str(src.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "dtype": str(dtype).removeprefix("torch."),
    }


def _is_complete(folder: Path, stamp: dict) -> bool:
    marker = folder / MARKER_FILE
    if not marker.is_file() or not all((folder / f).is_file() for f in OUTPUT_FILES):
        return False
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _dump(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def convert_gguf(
    gguf_path: Union[str, Path],
    checkpoint_dir: Union[None, str, Path] = None,
    dtype: Union[None, str, torch.dtype] = None,
    progress: bool = True,
) -> Path:
    """Build (once) a litgpt checkpoint folder from a GGUF file and return its path.

    ``checkpoint_dir`` defaults to ``checkpoints/<model name from the file's metadata>``. Weights are dequantized to
    float32 unless ``dtype`` says otherwise. If the folder already holds a complete conversion of the same file
    (same path, size and modification time) and dtype, nothing is done.
    """
    src = Path(gguf_path).expanduser()
    if not src.is_file():
        raise LitGPTError(f"GGUF file {str(src)!r} does not exist")
    dtype = _parse_dtype(dtype)
    stamp = _source_stamp(src, dtype)
    if checkpoint_dir is not None and _is_complete(Path(checkpoint_dir), stamp):
        return Path(checkpoint_dir)

    started = time.perf_counter()
    g = read_gguf(src)
    try:
        out = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint_dir(g)
        if _is_complete(out, stamp):
            return out
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER_FILE).is_file())):
            raise LitGPTError(
                f"{out} already exists and is not a GGUF conversion; pass another checkpoint_dir or remove it"
            )
        config = config_from_gguf(g)  # raises for unsupported architectures before any work
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            _build(g, config, dtype, tmp, progress)
            _dump(tmp / MARKER_FILE, stamp)  # last: its presence means the folder is complete
            _normal_permissions(tmp)
            _install(tmp, out, stamp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        g.close()
    if progress:
        print(f"Converted {src.name} to {out} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return out


def _build(g: GGUFFile, config: Config, dtype: torch.dtype, folder: Path, progress: bool) -> None:
    config.save(folder / "model_config.yaml")
    tokenizer = build_tokenizer(g)
    tokenizer.save(str(folder / "tokenizer.json"))
    files = tokenizer_files(g, config)
    for name, data in files.items():
        _dump(folder / name, data)
    gen = files["generation_config.json"]
    _dump(
        folder / "config.json",
        hf_config_dict(config, g, gen.get("bos_token_id"), gen.get("eos_token_id"), gen.get("pad_token_id")),
    )
    state = convert_weights(g, config, dtype, progress=progress)
    torch.save(state, folder / "lit_model.pth")


def _normal_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp create private entries; give the result the usual umask-based modes."""
    from litgpt.utils import usual_mode

    os.chmod(folder, usual_mode(directory=True))
    for f in folder.iterdir():
        os.chmod(f, usual_mode(directory=False))


def _install(tmp: Path, out: Path, stamp: dict) -> None:
    """Rename the finished folder into place; an older conversion there is replaced only after the rename."""
    if not out.exists():
        try:
            os.rename(tmp, out)
            return
        except OSError:
            if _is_complete(out, stamp):  # someone else finished the same conversion meanwhile
                return
            if not out.exists():
                raise
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
