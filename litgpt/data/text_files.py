"""TextFiles: pretrain on your own plain-text files (a folder of ``.txt``, read recursively)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from litgpt.data.tokens import PretrainDataModule, is_cached, read_tokens, tokenizer_fingerprint, write_tokens
from litgpt.errors import LitGPTError


def text_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise LitGPTError(f"The text folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file() and ".cache" not in p.parts)
    if not files:
        raise LitGPTError(f"No .txt files found in {str(folder)!r}")
    return files


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


@dataclass
class TextFiles(PretrainDataModule):
    """Every ``.txt`` file below ``train_data_path`` is a document. Tokenized once into ``<train_data_path>/.cache``
    (or ``cache_dir``); the validation text is ``val_data_path`` or else the last ``val_split_fraction`` of the
    tokenized training text."""

    train_data_path: Path = Path("data/text")
    """A folder of .txt files (searched recursively) or one .txt file to pretrain on."""
    val_data_path: Optional[Path] = None
    """A folder of .txt files for validation. Default: hold out the end of the training text."""
    val_split_fraction: float = 0.05
    """The fraction of the training tokens held out for validation when no val_data_path is given."""
    cache_dir: Optional[Path] = None
    """Where the tokenized files go (default: a .cache folder inside train_data_path)."""
    seed: int = 42
    """The random seed for shuffling."""
    num_workers: int = 0
    """How many DataLoader processes to use (reading memory-mapped tokens needs none)."""

    def __post_init__(self) -> None:
        PretrainDataModule.__init__(self)
        self.train_data_path = Path(self.train_data_path)
        self.val_data_path = None if self.val_data_path is None else Path(self.val_data_path)

    def cache_root(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        base = self.train_data_path if self.train_data_path.is_dir() else self.train_data_path.parent
        return base / ".cache"

    def token_files(self) -> tuple[Path, Path]:
        """Named after the tokenizer and the text files (paths, sizes, modification times): edited or other text
        is tokenized again, never read from a stale cache."""
        folder = self.cache_root() / f"tokens-{tokenizer_fingerprint(self._need_tokenizer())}"
        train = _files_fingerprint(text_files(self.train_data_path))
        if self.val_data_path is not None:
            return folder / f"all-{train}.bin", folder / f"val-{_files_fingerprint(text_files(self.val_data_path))}.bin"
        holdout = f"holdout{self.val_split_fraction:g}"
        return folder / f"train-{train}-{holdout}.bin", folder / f"val-{train}-{holdout}.bin"

    def write_token_files(self, train: Path, val: Path) -> None:
        tokenizer = self._need_tokenizer()
        files = text_files(self.train_data_path)
        all_train = train.with_name(f"all-{_files_fingerprint(files)}.bin")
        if not is_cached(all_train):
            write_tokens(all_train, tokenizer, (_read(p) for p in files))
        if self.val_data_path is not None:
            write_tokens(val, tokenizer, (_read(p) for p in text_files(self.val_data_path)))
            return
        tokens = read_tokens(all_train)
        cut = len(tokens) - max(1, int(len(tokens) * self.val_split_fraction))
        _write_array(train, tokens[:cut])
        _write_array(val, tokens[cut:])


def _files_fingerprint(files: list[Path]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:12]


def _write_array(path: Path, tokens: np.ndarray) -> None:
    from litgpt.utils import atomic_path, atomic_write_text

    with atomic_path(path) as tmp:
        np.asarray(tokens).tofile(tmp)
    atomic_write_text(path.with_suffix(".json"), json.dumps({"dtype": tokens.dtype.name, "tokens": len(tokens)}))
