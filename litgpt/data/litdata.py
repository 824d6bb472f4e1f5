"""LitData: pretrain on token chunks written by ``litdata.optimize``, streamed from a local folder or the cloud.

Preparing: :func:`optimize_texts` (or ``LitData(source_path=...)``'s ``prepare_data``) tokenizes documents once with
``litdata.optimize`` into chunk files of token ids (``TokensLoader`` layout). Training: ``litdata.StreamingDataset``
with a ``TokensLoader(block_size=max_seq_length + 1)`` reads blocks from those chunks (``s3://``, ``gs://`` or local
paths), downloading chunks on demand into a bounded local cache.

The litgpt training loop resumes by position, so the streaming dataset is read by index, in chunk order, with a
seeded shuffle inside windows of consecutive blocks (see :class:`WindowShuffle`): reads stay local to a few chunks
(streaming-friendly) and a resumed run reads exactly what the interrupted one would have.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset

from litgpt.data.base import DataModule
from litgpt.data.tokens import TokenModule
from litgpt.errors import LitGPTError
from litgpt.tokenizer import Tokenizer


def _require_litdata():
    try:
        import litdata
    except ImportError:
        raise LitGPTError("Streaming pretraining data needs litdata: pip install litdata") from None
    return litdata


def is_optimized(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a local folder written by ``litdata.optimize`` (remote paths are assumed to be)."""
    text = str(path)
    if "://" in text:
        return True
    return (Path(text) / "index.json").is_file()


# ------------------------------------------------------------------------------------------------ preparing
def read_documents(path: Path, text_key: str = "text") -> list[str]:
    """The documents of one input file: a whole ``.txt`` file, or each row's ``text_key`` of ``.jsonl``/``.json``."""
    path = Path(path)
    if path.suffix == ".txt":
        return [path.read_text(encoding="utf-8", errors="replace")]
    if path.suffix in (".jsonl", ".json"):
        from litgpt.data.base import read_json_rows, read_json_rows_lines

        rows = read_json_rows_lines(path) if path.suffix == ".jsonl" else read_json_rows(path)
        return [str(row[text_key]) for row in rows if isinstance(row, dict) and row.get(text_key)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [str(t) for t in pq.read_table(path, columns=[text_key]).column(text_key).to_pylist() if t]
    if path.name.endswith(".jsonl.zst"):
        import io

        import zstandard

        with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as reader:
            lines = io.TextIOWrapper(reader, encoding="utf-8")
            return [json.loads(line)[text_key] for line in lines if line.strip()]
    raise LitGPTError(f"Don't know how to read documents from {path} (use .txt, .jsonl, .json, .parquet or .jsonl.zst)")


@functools.lru_cache(maxsize=4)
def _tokenizer(tokenizer_dir: str) -> Tokenizer:
    return Tokenizer(tokenizer_dir)


def tokenize_file(path: str, tokenizer_dir: str, text_key: str = "text"):
    """``litdata.optimize``'s per-input function: the token ids of each document in ``path`` (one tensor each)."""
    from litgpt.data.tokens import encode_documents

    tokenizer = _tokenizer(tokenizer_dir)
    for ids in encode_documents(tokenizer, read_documents(Path(path), text_key)):
        yield torch.tensor(ids, dtype=torch.int32 if tokenizer.vocab_size > 32767 else torch.int16)


def optimize_texts(
    inputs: Sequence[Union[str, Path]],
    output_dir: Union[str, Path],
    tokenizer_dir: Union[str, Path],
    chunk_tokens: int = 2049 * 8192,
    num_workers: Optional[int] = None,
    text_key: str = "text",
) -> None:
    """Tokenize the documents of ``inputs`` (files) once with ``litdata.optimize`` into ``output_dir``."""
    litdata = _require_litdata()
    from litdata.streaming.item_loader import TokensLoader

    if not inputs:
        raise LitGPTError(f"Nothing to optimize into {output_dir}: no input files")
    import multiprocessing

    previous = multiprocessing.get_start_method(allow_none=True)
    try:
        litdata.optimize(
            fn=functools.partial(tokenize_file, tokenizer_dir=str(tokenizer_dir), text_key=text_key),
            inputs=[str(p) for p in inputs],
            output_dir=str(output_dir),
            chunk_size=chunk_tokens,
            item_loader=TokensLoader(),
            num_workers=num_workers or min(len(inputs), _cpus()),
            reorder_files=False,
            verbose=False,
            # forked workers start at once (spawned ones re-import torch); CUDA cannot be forked once initialised
            start_method="spawn" if torch.cuda.is_initialized() else "fork",
        )
    finally:  # litdata sets the process-wide start method; put it back
        multiprocessing.set_start_method(previous, force=True)


def _cpus() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


# ------------------------------------------------------------------------------------------------ reading
class WindowShuffle(Dataset):
    """Index ``i`` of ``dataset`` read through a seeded permutation of each window of ``window`` consecutive indices.

    Read in order, the windows (and so the chunks) are visited one after another while the order inside each
    window is random; the permutation depends only on (seed, window index), so any position can be resumed.
    """

    def __init__(self, dataset: Dataset, window: int, seed: int, length: Optional[int] = None) -> None:
        self.dataset, self.window, self.seed = dataset, max(1, window), seed
        self.length = len(dataset) if length is None else length
        self._cached: tuple[int, list[int]] = (-1, [])

    def __len__(self) -> int:
        return self.length

    def _position(self, index: int) -> int:
        w, offset = divmod(index, self.window)
        if self._cached[0] != w:
            size = min(self.window, self.length - w * self.window)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + w)
            self._cached = (w, torch.randperm(size, generator=gen).tolist())
        return w * self.window + self._cached[1][offset]

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return torch.as_tensor(self.dataset[self._position(index)]).long()


class Mixture(Dataset):
    """Several datasets interleaved by fixed weights, deterministically: every prefix of the mixture holds each
    dataset in its weighted proportion (up to one sample), and position ``i`` is found without reading the others.

    Position ``i`` belongs to the first dataset when ``floor((i + 1) * w) > floor(i * w)`` (its ``floor(i * w)``-th
    sample); otherwise to the mixture of the rest (at position ``i - floor(i * w)``), recursively.
    """

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float]) -> None:
        if len(datasets) != len(weights) or not datasets or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise LitGPTError("Mixture needs one non-negative weight per dataset")
        total = float(sum(weights))
        self.datasets, self.weights = list(datasets), [w / total for w in weights]
        self.length = int(min(len(d) / w for d, w in zip(self.datasets, self.weights) if w > 0))

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset, index inside it) of mixture position ``index``."""
        remaining = 1.0
        for k, weight in enumerate(self.weights):
            share = weight / remaining if remaining > 0 else 1.0
            if k == len(self.weights) - 1 or share >= 1.0:
                return k, index
            taken = math.floor(index * share)
            if math.floor((index + 1) * share) > taken:
                return k, taken
            index -= taken
            remaining -= weight
        raise AssertionError("unreachable")

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        k, inner = self.locate(index)
        return self.datasets[k][inner % len(self.datasets[k])]


def streaming_blocks(input_dir: Union[str, Path], block_size: int, max_cache_size: str = "50GB") -> Dataset:
    """The ``block_size``-token blocks of optimized token chunks (a ``litdata.StreamingDataset``), by global index."""
    _require_litdata()
    from litdata import StreamingDataset
    from litdata.streaming.item_loader import TokensLoader

    return AllBlocks(
        StreamingDataset(
            input_dir=str(input_dir),
            item_loader=TokensLoader(block_size=block_size),
            shuffle=False,
            drop_last=True,
            max_cache_size=max_cache_size,
        )
    )


class AllBlocks(Dataset):
    """A ``StreamingDataset`` read by global index, as long as all of its blocks. Once torch.distributed is up,
    litdata's own ``len()`` is one rank's share; the training loop shards the indices across ranks itself, so with
    that length each rank would read only the first 1/world_size of the data (twice over)."""

    def __init__(self, dataset) -> None:
        from litdata.utilities.env import _DistributedEnv

        self.dataset = dataset
        env, dataset.distributed_env = dataset.distributed_env, _DistributedEnv(world_size=1, global_rank=0, num_nodes=1)
        try:
            self.length = dataset.get_len(1, 1)
        finally:
            dataset.distributed_env = env

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.dataset[index]


class StreamingModule(TokenModule):
    """Shared loaders of the streaming modules (``LitData``, ``TinyLlama``)."""

    shuffle_in_loop = False  # the training loop reads in order; WindowShuffle shuffles locally
    shuffle_window: int = 4096
    seed: int = 42
    num_workers: int = 4

    def _loader(self, dataset: Optional[Dataset]) -> Optional[DataLoader]:
        if dataset is None:
            return None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise LitGPTError(f"{type(self).__name__}.setup() must run before asking for dataloaders")
        return self._loader(self.train_dataset)

    def val_dataloader(self) -> Optional[DataLoader]:
        return self._loader(self.val_dataset)


@dataclass
class LitData(StreamingModule):
    """Token chunks optimized by litdata, local or in the cloud. With ``split_names`` the train and validation sets
    are those subfolders of ``data_path``; without, everything trains and nothing validates. With ``source_path``
    (a folder of .txt/.jsonl/.parquet files), ``prepare_data`` first optimizes those documents into ``data_path``
    (tokenized once; an existing optimized folder is reused)."""

    data_path: Union[str, Path] = Path("data/")
    """The optimized data: a local folder or a cloud URL (s3://...) with litdata's index.json and chunks."""
    split_names: Optional[tuple[str, str]] = None
    """The subfolders of data_path holding the (train, validation) sets, e.g. ["train", "val"]."""
    source_path: Optional[Path] = None
    """Raw documents to optimize into data_path when it is not optimized yet (.txt, .jsonl, .json, .parquet)."""
    val_split_fraction: float = 0.05
    """With source_path and split_names: the fraction of the source files used for validation (at least one)."""
    seed: int = 42
    """The random seed for the local shuffle."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    shuffle_window: int = 4096
    """Blocks are shuffled within windows of this many consecutive blocks."""

    def __post_init__(self) -> None:
        DataModule.__init__(self)
        self._init_state()
        if self.split_names is not None:
            self.split_names = tuple(self.split_names)
            if len(self.split_names) != 2:
                raise LitGPTError(f"--data.split_names needs two names (train, val), got {self.split_names}")

    def _dirs(self) -> tuple[str, Optional[str]]:
        root = str(self.data_path).rstrip("/")
        if self.split_names is None:
            return root, None
        return f"{root}/{self.split_names[0]}", f"{root}/{self.split_names[1]}"

    def prepare_data(self) -> None:
        train_dir, val_dir = self._dirs()
        if is_optimized(train_dir) and (val_dir is None or is_optimized(val_dir)):
            return
        if self.source_path is None:
            raise LitGPTError(
                f"{train_dir} is not a litdata-optimized folder (no index.json); optimize your data first "
                "(litgpt.data.litdata.optimize_texts) or pass --data.source_path with the raw documents"
            )
        if self.tokenizer is None:
            raise LitGPTError("LitData needs --tokenizer_dir to optimize --data.source_path")
        from litgpt.data.text_files import text_files

        files = [p for p in sorted(Path(self.source_path).rglob("*")) if p.is_file() and _readable(p)]
        if not files:
            files = text_files(Path(self.source_path))
        if val_dir is None:
            optimize_texts(files, train_dir, self.tokenizer.checkpoint_dir, chunk_tokens=self._chunk_tokens())
            return
        n_val = max(1, round(len(files) * self.val_split_fraction)) if len(files) > 1 else 0
        if n_val == 0:
            raise LitGPTError(f"{self.source_path} holds one file; a validation split needs at least two")
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(self.seed)).tolist()
        val_files, train_files = [files[i] for i in order[:n_val]], [files[i] for i in order[n_val:]]
        optimize_texts(train_files, train_dir, self.tokenizer.checkpoint_dir, chunk_tokens=self._chunk_tokens())
        optimize_texts(val_files, val_dir, self.tokenizer.checkpoint_dir, chunk_tokens=self._chunk_tokens())

    def _chunk_tokens(self) -> int:
        return (self.max_seq_length + 1) * 1024

    def setup(self, stage: str = "") -> None:
        train_dir, val_dir = self._dirs()
        block = self.max_seq_length + 1
        self.train_dataset = WindowShuffle(streaming_blocks(train_dir, block), self.shuffle_window, self.seed)
        self.val_dataset = WindowShuffle(streaming_blocks(val_dir, block), 1, 0) if val_dir is not None else None
        if len(self.train_dataset) == 0:
            raise LitGPTError(f"{train_dir} holds no block of {block} tokens")


def _readable(path: Path) -> bool:
    return path.suffix in (".txt", ".jsonl", ".json", ".parquet") or path.name.endswith(".jsonl.zst")
