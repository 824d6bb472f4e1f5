"""What the pretraining data modules share: documents tokenized once into a flat file of token ids, read back as
fixed-length blocks.

A tokenized corpus is one ``.bin`` file of ``uint16`` (or ``uint32`` for vocabularies past 65,535) token ids, every
document as ``[BOS] text EOS`` back to back, plus a small ``.json`` beside it that says the dtype, the token count and
which tokenizer made it. The cache folder's name includes a fingerprint of the tokenizer files, so a different
tokenizer never reuses stale ids. Blocks are ``max_seq_length + 1`` tokens (inputs plus the shifted targets); block
``i`` starts at token ``i * max_seq_length``, so consecutive blocks share their boundary token and no token is
wasted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from litgpt.data.base import DataModule
from litgpt.errors import LitGPTError
from litgpt.tokenizer import Tokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json")


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of the tokenizer's files (what decides the ids), used to name token caches."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = Path(tokenizer.checkpoint_dir) / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def encode_documents(tokenizer: Tokenizer, texts: Iterable[str], batch: int = 512) -> Iterator[list[int]]:
    """Token ids of each document with the tokenizer's BOS convention and a closing EOS.

    Hugging Face tokenizers encode a batch at a time in parallel (Rust threads); SentencePiece one by one.
    """
    hf = getattr(tokenizer, "_hf", None)

    def finish(ids: list[int]) -> list[int]:
        if tokenizer.use_bos and tokenizer.bos_id is not None and (not ids or ids[0] != tokenizer.bos_id):
            ids = [tokenizer.bos_id] + ids
        if tokenizer.eos_id is not None and (not ids or ids[-1] != tokenizer.eos_id):
            ids = ids + [tokenizer.eos_id]
        return ids

    if hf is None:
        for text in texts:
            yield tokenizer.encode(
                text, bos=tokenizer.use_bos and tokenizer.bos_id is not None, eos=tokenizer.eos_id is not None
            ).tolist()
        return
    pending: list[str] = []
    for text in texts:
        pending.append(text)
        if len(pending) >= batch:
            for enc in hf.encode_batch(pending, add_special_tokens=False):
                yield finish(enc.ids)
            pending = []
    if pending:
        for enc in hf.encode_batch(pending, add_special_tokens=False):
            yield finish(enc.ids)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


def write_tokens(path: Path, tokenizer: Tokenizer, texts: Iterable[str], desc: str = "Tokenizing") -> int:
    """Tokenize ``texts`` into ``path`` (``.bin`` + ``.json``), atomically; returns the number of tokens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(max(tokenizer.vocab_size, (tokenizer.bos_id or 0) + 1, (tokenizer.eos_id or 0) + 1))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    total = docs = 0
    try:
        with open(tmp, "wb") as f:
            for ids in encode_documents(tokenizer, texts):
                f.write(np.asarray(ids, dtype=dtype).tobytes())
                total += len(ids)
                docs += 1
                if docs % 10000 == 0:
                    print(f"{desc} {path.stem}: {docs:,} documents, {total:,} tokens", file=sys.stderr)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"dtype": dtype.name, "tokens": total, "documents": docs, "tokenizer": str(tokenizer.checkpoint_dir)}
    from litgpt.utils import atomic_write_text

    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return total


def is_cached(path: Path) -> bool:
    return Path(path).is_file() and Path(path).with_suffix(".json").is_file()


def read_tokens(path: Path) -> np.ndarray:
    """The token ids of a ``write_tokens`` file, memory-mapped (read-only)."""
    path = Path(path)
    if not is_cached(path):
        raise LitGPTError(f"No tokenized data at {path}; run the data module's prepare_data() first")
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta["tokens"] == 0:
        return np.zeros(0, dtype=np.dtype(meta["dtype"]))
    return np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["tokens"],))


class TokenBlocks(Dataset):
    """Blocks of ``block_size + 1`` consecutive tokens (a training sample: inputs and shifted targets)."""

    def __init__(self, tokens: np.ndarray, block_size: int) -> None:
        if block_size < 1:
            raise LitGPTError(f"block_size must be positive, got {block_size}")
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.block_size)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.block_size
        return torch.from_numpy(np.asarray(self.tokens[start : start + self.block_size + 1], dtype=np.int64))


class TokenModule(DataModule):
    """What every pretraining module holds after ``connect``: tokenizer, batch size, block length, datasets."""

    def _init_state(self) -> None:
        self.tokenizer: Optional[Tokenizer] = None
        self.batch_size = 1
        self.max_seq_length = 2048
        self.train_dataset: Optional[Dataset] = None
        self.val_dataset: Optional[Dataset] = None

    def connect(
        self, tokenizer: Optional[Tokenizer] = None, batch_size: int = 1, max_seq_length: Optional[int] = None
    ) -> None:
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if max_seq_length is not None and max_seq_length > 0:
            self.max_seq_length = max_seq_length


class PretrainDataModule(TokenModule):
    """Base of the token-file pretraining modules: subclasses say where the train/val token files are
    (``token_files``) and how to make them (``write_token_files``)."""

    def __init__(self) -> None:
        super().__init__()
        self._init_state()

    def _need_tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise LitGPTError(
                f"{type(self).__name__} needs a tokenizer: pass --tokenizer_dir (a folder with tokenizer.json or "
                "tokenizer.model, e.g. from `litgpt download ... --tokenizer_only true`)"
            )
        return self.tokenizer

    def cache_root(self) -> Path:
        """The folder under which this module's token files (one subfolder per tokenizer) live."""
        raise NotImplementedError

    def token_files(self) -> tuple[Path, Path]:
        folder = self.cache_root() / f"tokens-{tokenizer_fingerprint(self._need_tokenizer())}"
        return folder / "train.bin", folder / "val.bin"

    def write_token_files(self, train: Path, val: Path) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        train, val = self.token_files()
        if is_cached(train) and is_cached(val):
            return
        self.write_token_files(train, val)

    def setup(self, stage: str = "") -> None:
        train, val = self.token_files()
        if not (is_cached(train) and is_cached(val)):
            self.prepare_data()
        self.train_dataset = TokenBlocks(read_tokens(train), self.max_seq_length)
        self.val_dataset = TokenBlocks(read_tokens(val), self.max_seq_length)
        if len(self.train_dataset) == 0:
            raise LitGPTError(
                f"{type(self).__name__}: the training text has {len(self.train_dataset.tokens)} tokens, fewer than one "
                f"block of {self.max_seq_length + 1}; add text or lower --train.max_seq_length"
            )

    def _loader(self, dataset: Optional[Dataset], shuffle: bool) -> DataLoader:
        if dataset is None:
            raise LitGPTError(f"{type(self).__name__}.setup() must run before asking for dataloaders")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(getattr(self, "seed", 42)) if shuffle else None,
            num_workers=getattr(self, "num_workers", 0),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)


def split_documents(documents: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle of ``documents`` cut into (train, val); at least one validation document when possible."""
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(documents) - 1, max(1, round(val_fraction * len(documents)))) if len(documents) > 1 else 0
    val = [documents[i] for i in order[:n_val]]
    train = [documents[i] for i in order[n_val:]]
    return train, val
