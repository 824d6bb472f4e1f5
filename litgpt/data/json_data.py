"""JSON: your own instruction data, as one file (split here) or a folder with train and val files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, read_json_rows, require_keys, split_rows
from litgpt.errors import LitGPTError
from litgpt.prompts import PromptStyle


@dataclass
class JSON(SFTDataModule):
    """Rows with ``instruction``, optional ``input`` and ``output`` keys, from ``.json`` (a list) or ``.jsonl``."""

    json_path: Path
    """A path to a JSON file (``.json`` or ``.jsonl``) containing the data, or a folder holding ``train.json`` and
    ``val.json`` (or ``.jsonl``). A single file is split into train and val with ``val_split_fraction``."""
    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    val_split_fraction: Optional[float] = None
    """The fraction of the dataset to use for the validation dataset. Only used with a single file."""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for creating the train/val splits and shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.json_path = Path(self.json_path)
        if self.json_path.is_file() and self.val_split_fraction is None:
            raise LitGPTError(
                "--data.json_path is a single file: also set --data.val_split_fraction "
                "(or give a folder with train.json and val.json)"
            )
        if self.json_path.is_dir() and self.val_split_fraction is not None:
            raise LitGPTError("--data.val_split_fraction only applies to a single file; the folder has its own val file")
        if not self.json_path.exists():
            raise LitGPTError(f"--data.json_path {str(self.json_path)!r} does not exist")

    def _rows(self, path: Path) -> list:
        rows = read_json_rows(path)
        require_keys(rows, ("instruction", "output"), str(path))
        return rows

    def _split_file(self, split: str) -> Path:
        for suffix in (".json", ".jsonl"):
            if (self.json_path / f"{split}{suffix}").is_file():
                return self.json_path / f"{split}{suffix}"
        raise LitGPTError(f"{self.json_path} has no {split}.json or {split}.jsonl")

    def load_splits(self):
        if self.json_path.is_dir():
            return self._rows(self._split_file("train")), self._rows(self._split_file("val"))
        return split_rows(self._rows(self.json_path), self.val_split_fraction, self.seed)
