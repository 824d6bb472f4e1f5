"""The pieces every instruction-tuning data module shares: the module base class, the SFT dataset and its collate.

A data module is a ``LightningDataModule`` (so ``L.Trainer.fit(model, data)`` works) with one extra step,
``connect(tokenizer, batch_size, max_seq_length)``, which hands it what it cannot know on its own. The litgpt training
loop calls ``connect``, then ``prepare_data`` (download, once per machine), then ``setup`` and the dataloaders.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from litgpt.errors import LitGPTError
from litgpt.prompts import PromptStyle
from litgpt.tokenizer import Tokenizer

IGNORE_INDEX = -100


class DataModule(LightningDataModule):
    """Base class of litgpt's data modules."""

    @abstractmethod
    def connect(
        self, tokenizer: Optional[Tokenizer] = None, batch_size: int = 1, max_seq_length: Optional[int] = None
    ) -> None:
        """Give the module the tokenizer, the micro-batch size and the longest sample length (None or -1: no limit)."""

    def setup(self, stage: str = "") -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def require_keys(rows: Sequence[Mapping], keys: Sequence[str], source: str, offset: int = 0, text: bool = True) -> None:
    """Raise a one-line error naming the first row (by index) that is not a mapping or lacks one of ``keys``;
    ``text``: their values (and an ``input`` beside them, unless null) must be strings."""
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise LitGPTError(f"{source}: row {index + offset} is a {type(row).__name__}, expected an object with {list(keys)}")
        for key in keys:
            if key not in row:
                raise LitGPTError(f"{source}: row {index + offset} has no {key!r} key (it has {sorted(row)})")
        if text:
            _require_text(row, keys, f"{source}: row {index + offset}")


def _require_text(row: Mapping, keys: Sequence[str], where: str) -> None:
    for key in (*keys, "input"):
        value = row.get(key)
        if not isinstance(value, str) and (key != "input" or value is not None):
            raise LitGPTError(f"{where} has a {type(value).__name__} as {key!r}, expected a string")


class SFTDataset(Dataset):
    """Instruction/response pairs turned into token ids and labels.

    Each row is a mapping with ``instruction`` and ``output`` (and optionally ``input``); ``transform`` may map a raw
    row to that shape first. The prompt is the prompt style applied to the instruction (and input); the response is
    encoded with a closing EOS token; the concatenation is cut to ``max_seq_length``. With ``mask_prompt`` the labels
    of the prompt tokens are ``ignore_index`` so that only the response is learned.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        tokenizer: Tokenizer,
        prompt_style: Union[str, PromptStyle],
        max_seq_length: int = -1,
        mask_prompt: bool = True,
        ignore_index: int = IGNORE_INDEX,
        transform: Optional[Callable[[Mapping], Mapping]] = None,
    ) -> None:
        self.data = data
        self.tokenizer = tokenizer
        self.prompt_style = PromptStyle.from_name(prompt_style) if isinstance(prompt_style, str) else prompt_style
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length
        self.mask_prompt = mask_prompt
        self.ignore_index = ignore_index
        self.transform = transform
        self._lengths: Optional[list[int]] = None

    def __len__(self) -> int:
        return len(self.data)

    def example(self, index: int) -> Mapping[str, Any]:
        row = self.data[index]
        if self.transform is not None:
            row = self.transform(row)
        if not isinstance(row, Mapping):
            raise LitGPTError(f"row {index} of the dataset is a {type(row).__name__}, expected an object")
        for key in ("instruction", "output"):
            if key not in row:
                raise LitGPTError(f"row {index} of the dataset has no {key!r} key (it has {sorted(row)})")
        if not isinstance(row["instruction"], list):  # a list of messages is a conversation (prompt styles apply it)
            _require_text(row, ("instruction", "output"), f"row {index} of the dataset")
        return row

    def prompt(self, index: int) -> str:
        row = self.example(index)
        extra = {"input": row["input"]} if row.get("input") else {}
        return self.prompt_style.apply(row["instruction"], **extra)

    def lengths(self) -> list[int]:
        """Token count of every sample (tokenized once, then cached), for batching by length."""
        if self._lengths is None:
            import sys

            from tqdm import tqdm

            items = tqdm(range(len(self)), desc="Measuring sample lengths", unit="sample", file=sys.stderr,
                         disable=len(self) < 10_000)  # fmt: skip
            self._lengths = [len(self[i]["input_ids"]) for i in items]
        return self._lengths

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.example(index)
        limit = self.max_seq_length
        prompt_ids = self.tokenizer.encode(self.prompt(index), max_length=limit)
        response_ids = self.tokenizer.encode(row["output"], bos=False, eos=True, max_length=limit)
        input_ids = torch.cat((prompt_ids, response_ids))
        if limit > 0:
            input_ids = input_ids[:limit]
        labels = input_ids.clone()
        if self.mask_prompt:
            labels[: len(prompt_ids)] = self.ignore_index
        return {"input_ids": input_ids.long(), "labels": labels.long()}


def get_sft_collate_fn(max_seq_length: int = -1, pad_id: int = 0, ignore_index: int = IGNORE_INDEX) -> Callable:
    """A collate function that right-pads ``input_ids`` with ``pad_id`` and ``labels`` with ``ignore_index``."""
    return partial(_sft_collate, max_seq_length=max_seq_length, pad_id=pad_id, ignore_index=ignore_index)


def _sft_collate(
    samples: list[dict[str, torch.Tensor]], max_seq_length: int = -1, pad_id: int = 0, ignore_index: int = IGNORE_INDEX
) -> dict[str, torch.Tensor]:
    lengths = [len(s["input_ids"]) for s in samples]
    width = max(lengths)
    batch = {
        "input_ids": torch.full((len(samples), width), pad_id, dtype=torch.long),
        "labels": torch.full((len(samples), width), ignore_index, dtype=torch.long),
    }
    for row, sample in enumerate(samples):
        n = lengths[row]
        batch["input_ids"][row, :n] = sample["input_ids"]
        batch["labels"][row, :n] = sample["labels"]
    if max_seq_length is not None and max_seq_length > 0:
        batch = {k: v[:, :max_seq_length] for k, v in batch.items()}
    batch["token_counts"] = torch.tensor([min(n, max_seq_length) if max_seq_length and max_seq_length > 0 else n for n in lengths])
    return batch


def read_json_rows(path: Path) -> list:
    """Rows of a ``.json`` file (a list of objects) or a ``.jsonl`` file (one object a line)."""
    path = Path(path)
    if not path.is_file():
        raise LitGPTError(f"Data file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return read_json_rows_lines(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LitGPTError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise LitGPTError(f"{path} must hold a list of objects, found a {type(data).__name__}")
    return data


def read_json_rows_lines(path: Path) -> list:
    """Rows of a JSON-lines file, whatever its suffix."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LitGPTError(f"{path}, line {number}, is not valid JSON: {e}") from None
    return rows


def download_file(url: str, destination: Path) -> Path:
    """Fetch ``url`` to ``destination`` once (atomically: an interrupted download leaves nothing behind)."""
    import sys
    import urllib.request

    from litgpt.utils import atomic_path

    destination = Path(destination)
    if destination.is_file() and destination.stat().st_size > 0:
        return destination
    print(f"Downloading {url} to {destination}", file=sys.stderr)
    try:
        with atomic_path(destination) as tmp, urllib.request.urlopen(url, timeout=60) as response:
            with open(tmp, "wb") as f:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
    except OSError as e:
        raise LitGPTError(f"Could not download {url}: {e}") from None
    return destination


def split_rows(rows: Sequence, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded random split into (train, val) with ``val_fraction`` of the rows in val."""
    if not 0.0 <= val_fraction < 1.0:
        raise LitGPTError(f"val_split_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(len(rows) * val_fraction))
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    val = [rows[i] for i in order[:n_val]]
    train = [rows[i] for i in order[n_val:]]
    return train, val


class SFTDataModule(DataModule):
    """Shared behaviour of the instruction-tuning modules: subclasses fill ``self.train_rows`` and ``self.val_rows``
    in ``setup`` (through ``load_splits``) and may set ``self.transform`` for rows that need reshaping."""

    # not annotated: jsonargparse reads a subclass's field types by evaluating the annotations of all its bases in
    # the subclass's module, where ``Callable`` may be unknown, and then validates none of the --data.* values
    transform = None
    """An optional function that maps a raw row to the ``instruction``/``input``/``output`` shape"""

    def __post_init__(self) -> None:
        super().__init__()
        if isinstance(self.prompt_style, str):
            self.prompt_style = PromptStyle.from_name(self.prompt_style)
        self.tokenizer: Optional[Tokenizer] = None
        self.batch_size = 1
        self.max_seq_length = -1
        self.train_dataset: Optional[SFTDataset] = None
        self.test_dataset: Optional[SFTDataset] = None

    def connect(
        self, tokenizer: Optional[Tokenizer] = None, batch_size: int = 1, max_seq_length: Optional[int] = None
    ) -> None:
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length

    @abstractmethod
    def load_splits(self) -> tuple[Sequence, Sequence]:
        """(train rows, validation rows)."""

    def setup(self, stage: str = "") -> None:
        if self.tokenizer is None:
            raise LitGPTError(f"{type(self).__name__}.connect(tokenizer, ...) must be called before setup()")
        train, val = self.load_splits()
        common = dict(
            tokenizer=self.tokenizer,
            prompt_style=self.prompt_style,
            max_seq_length=self.max_seq_length,
            mask_prompt=self.mask_prompt,
            ignore_index=self.ignore_index,
            transform=self.transform,
        )
        self.train_dataset = SFTDataset(train, **common)
        self.test_dataset = SFTDataset(val, **common)

    def _loader(self, dataset: Optional[SFTDataset], shuffle: bool) -> DataLoader:
        if dataset is None:
            raise LitGPTError(f"{type(self).__name__}.setup() must run before asking for dataloaders")
        if shuffle and len(dataset) == 0:  # torch's sampler would fail with a traceback
            raise LitGPTError(f"{type(self).__name__}: the training set is empty (check the data and val_split_fraction)")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=get_sft_collate_fn(self.max_seq_length, ignore_index=self.ignore_index),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)
