"""Text <-> token ids for a checkpoint folder.

``tokenizer.json`` (the ``tokenizers`` library) is used when present, else ``tokenizer.model`` (sentencepiece).
Special ids come from ``tokenizer_config.json`` (then ``special_tokens_map.json``), with ``generation_config.json``
as the fallback and as the source of extra stop ids. Whether a BOS token starts every encoding follows
``add_bos_token`` when the config states it; otherwise a few known model families, then what the tokenizer itself
does (a post-processor that inserts BOS, or a Llama/Gemma style class).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

import torch

from litgpt.errors import LitGPTError

REPLACEMENT_CHAR = "\ufffd"

# Checkpoint folder names whose tokenizer must add BOS even though their files do not say so.
_ALWAYS_BOS_NAMES = (r"^(Meta-)?Llama-3", r"^SmolLM2.*Instruct")
# Tokenizer classes that add BOS by default when ``add_bos_token`` is not stated.
_BOS_CLASSES = {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "GemmaTokenizer"}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LitGPTError(f"Cannot read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string, ``{"content": ...}`` or null."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _id_list(value: Any) -> list[int]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _as_id_list(tokens: Union[torch.Tensor, Iterable[int], int]) -> list[int]:
    if isinstance(tokens, torch.Tensor):
        return [int(t) for t in tokens.reshape(-1).tolist()]
    if isinstance(tokens, int):
        return [tokens]
    return [int(t) for t in tokens]


class Tokenizer:
    """Encode and decode text for the model stored in ``checkpoint_dir``."""

    def __init__(self, checkpoint_dir: Union[str, Path]) -> None:
        checkpoint_dir = Path(checkpoint_dir)
        if not checkpoint_dir.is_dir():
            raise LitGPTError(f"The checkpoint directory {str(checkpoint_dir)!r} does not exist.")
        self.checkpoint_dir = checkpoint_dir
        self.model_name = checkpoint_dir.stem
        config = _read_json(checkpoint_dir / "tokenizer_config.json")
        special_map = _read_json(checkpoint_dir / "special_tokens_map.json")
        generation = _read_json(checkpoint_dir / "generation_config.json")
        self.tokenizer_config = config

        self._hf = None
        self._sp = None
        if (checkpoint_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer as HFTokenizer

            try:
                self._hf = HFTokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
            except Exception as err:  # the tokenizers library raises its own exception types
                raise LitGPTError(f"Cannot load {checkpoint_dir / 'tokenizer.json'}: {err}") from None
            self.backend = "huggingface"
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
        elif (checkpoint_dir / "tokenizer.model").is_file():
            import sentencepiece

            try:
                self._sp = sentencepiece.SentencePieceProcessor(model_file=str(checkpoint_dir / "tokenizer.model"))
            except Exception as err:  # sentencepiece raises OSError/RuntimeError depending on the failure
                raise LitGPTError(f"Cannot load {checkpoint_dir / 'tokenizer.model'}: {err}") from None
            self.backend = "sentencepiece"
            self.vocab_size = self._sp.vocab_size()
        else:
            raise LitGPTError(
                f"No tokenizer found in {str(checkpoint_dir)!r}: it needs a 'tokenizer.json' (Hugging Face tokenizers)"
                " or a 'tokenizer.model' (SentencePiece) file. Download the model's tokenizer files into that folder."
            )

        # -- special tokens
        self.bos_token = _token_text(config.get("bos_token")) or _token_text(special_map.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token")) or _token_text(special_map.get("eos_token"))
        gen_bos = _id_list(generation.get("bos_token_id"))
        gen_eos = _id_list(generation.get("eos_token_id"))
        self.bos_id = self._lookup(self.bos_token)
        if self.bos_id is None and gen_bos:
            self.bos_id = gen_bos[0]
        self.eos_id = self._lookup(self.eos_token)
        if self.eos_id is None and gen_eos:
            self.eos_id = gen_eos[0]
        if self._sp is not None:
            if self.bos_id is None and self._sp.bos_id() >= 0:
                self.bos_id = self._sp.bos_id()
            if self.eos_id is None and self._sp.eos_id() >= 0:
                self.eos_id = self._sp.eos_id()
        if self.bos_token is None and self.bos_id is not None:
            self.bos_token = self.id_to_token(self.bos_id)
        if self.eos_token is None and self.eos_id is not None:
            self.eos_token = self.id_to_token(self.eos_id)
        stops = ([self.eos_id] if self.eos_id is not None else []) + gen_eos
        self.stop_ids: list[int] = list(dict.fromkeys(stops))

        self.use_bos = self._uses_bos(config)
        self.chat_template = self._find_chat_template(config)

    # -- construction helpers
    def _lookup(self, token: str | None) -> int | None:
        if token is None:
            return None
        if self._hf is not None:
            return self._hf.token_to_id(token)
        idx = self._sp.piece_to_id(token)
        return None if idx == self._sp.unk_id() and token != self._sp.id_to_piece(idx) else idx

    def _post_processor_prefix(self) -> list[int]:
        """Ids that the ``tokenizers`` post-processor puts before the text (e.g. Llama-3's <|begin_of_text|>)."""
        if self._hf is None:
            return []
        plain = self._hf.encode("a", add_special_tokens=False).ids
        full = self._hf.encode("a", add_special_tokens=True).ids
        start = len(full) - len(plain)
        if start > 0 and full[start:] == plain:
            return full[:start]
        return []

    def _uses_bos(self, config: dict) -> bool:
        if isinstance(config.get("add_bos_token"), bool):
            return config["add_bos_token"] and self.bos_id is not None
        if any(re.search(pattern, self.model_name) for pattern in _ALWAYS_BOS_NAMES):
            return self.bos_id is not None
        prefix = self._post_processor_prefix()
        if prefix:
            if self.bos_id is None and len(prefix) == 1:
                self.bos_id = prefix[0]
                self.bos_token = self.id_to_token(prefix[0])
            return self.bos_id in prefix
        if config.get("tokenizer_class") in _BOS_CLASSES:
            return self.bos_id is not None
        if self._sp is not None and not config:
            # a bare SentencePiece model (Llama/Mistral style release) is used with a BOS token
            return self.bos_id is not None
        return False

    def _find_chat_template(self, config: dict) -> str | None:
        jinja = self.checkpoint_dir / "chat_template.jinja"
        if jinja.is_file():
            return jinja.read_text(encoding="utf-8")
        template = config.get("chat_template")
        if template is None:
            template = _read_json(self.checkpoint_dir / "chat_template.json").get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default") or next(iter(named.values()), None)
        return template if isinstance(template, str) else None

    # -- public API
    def token_to_id(self, token: str) -> int:
        idx = self._lookup(token)
        if idx is None:
            raise LitGPTError(
                f"Token {token!r} is not in the vocabulary of the tokenizer in {str(self.checkpoint_dir)!r}."
            )
        return idx

    def id_to_token(self, idx: int) -> str | None:
        if self._hf is not None:
            return self._hf.id_to_token(idx)
        return self._sp.id_to_piece(idx) if 0 <= idx < self._sp.vocab_size() else None

    def encode(
        self,
        text: str,
        device: Union[str, torch.device] | None = None,
        bos: bool | None = None,
        eos: bool = False,
        max_length: int = -1,
    ) -> torch.Tensor:
        """Token ids of ``text`` as a 1-D ``torch.long`` tensor.

        ``bos=None`` follows the tokenizer's own convention (``use_bos``). A BOS or EOS already produced by the text
        itself is never doubled, and ``bos=False`` never adds one. ``max_length > 0`` truncates the result.
        """
        if self._hf is not None:
            tokens = self._hf.encode(text, add_special_tokens=False).ids
        else:
            tokens = self._sp.encode(text)
        if bos is None:
            bos = self.use_bos
        if bos:
            if self.bos_id is None:
                raise LitGPTError(f"The tokenizer in {str(self.checkpoint_dir)!r} has no BOS token to add.")
            if not tokens or tokens[0] != self.bos_id:
                tokens = [self.bos_id] + tokens
        if eos:
            if self.eos_id is None:
                raise LitGPTError(f"The tokenizer in {str(self.checkpoint_dir)!r} has no EOS token to add.")
            if not tokens or tokens[-1] != self.eos_id:
                tokens = tokens + [self.eos_id]
        if max_length > 0:
            tokens = tokens[:max_length]
        return torch.tensor(tokens, dtype=torch.long, device=device)

    def decode(self, tokens: Union[torch.Tensor, Iterable[int], int], skip_special_tokens: bool = False) -> str:
        """Text of ``tokens`` (a tensor, a list of ids or one id). Special tokens are kept unless asked otherwise."""
        ids = _as_id_list(tokens)
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)
        # a padded vocabulary's rows past the model file decode to nothing
        return self._sp.decode([i for i in ids if 0 <= i < self.vocab_size])

    def decode_stream(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """An incremental decoder for generated ids: see :class:`StreamDecoder`."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return (
            f"Tokenizer({str(self.checkpoint_dir)!r}, backend={self.backend!r}, vocab_size={self.vocab_size},"
            f" bos_id={self.bos_id}, eos_id={self.eos_id}, use_bos={self.use_bos})"
        )


class StreamDecoder:
    """Turns ids, one at a time, into text pieces that are safe to print.

    A piece is only released once the text it ends with is complete: an unfinished multi-byte character (which
    decodes to U+FFFD) is held back until the bytes that complete it arrive. Text is decoded over a short window
    of recent ids so that context-dependent rules (SentencePiece's leading space, byte fallback) resolve exactly
    as in a full decode: joining every ``step`` result and the final ``flush`` equals ``decode(all_ids)``.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # window start: text before it has been released
        self._read = 0  # ids before this index have been released

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def step(self, token_id: Union[int, torch.Tensor]) -> str:
        """Add one id; return the newly completed text (possibly empty)."""
        self.ids.extend(_as_id_list(token_id))
        return self._release(final=False)

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character shows as U+FFFD, like ``decode`` does)."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self._read >= len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix : self._read])
        text = self._decode(self.ids[self._prefix :])
        if not final and (len(text) <= len(before) or text.endswith(REPLACEMENT_CHAR)):
            return ""
        if not text.startswith(before):
            # the decoder rewrote earlier text (rare): re-decode everything released so far to stay exact
            released = self._decode(self.ids[: self._read])
            full = self._decode(self.ids)
            if not full.startswith(released) or (not final and full.endswith(REPLACEMENT_CHAR)):
                return ""
            piece = full[len(released) :]
        else:
            piece = text[len(before) :]
        self._prefix = self._read
        self._read = len(self.ids)
        return piece
