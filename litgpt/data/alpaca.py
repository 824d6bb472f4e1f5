"""Alpaca: 52k instruction-following rows (the cleaned archive of the tloen/alpaca-lora repository)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, download_file, read_json_rows, require_keys, split_rows
from litgpt.prompts import PromptStyle

ALPACA_URL = "https://raw.githubusercontent.com/tloen/alpaca-lora/main/alpaca_data_cleaned_archive.json"


@dataclass
class Alpaca(SFTDataModule):
    """The cleaned Alpaca dataset, downloaded once into ``download_dir`` and split with a fixed seed."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    val_split_fraction: float = 0.03865  # to get exactly 2000 validation samples
    """The fraction of the dataset to use for the validation dataset. The rest is used for training."""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for creating the train/val splits and shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    download_dir: Path = Path("./data/alpaca")
    """The directory in which the downloaded dataset gets saved."""
    file_url: str = field(repr=False, default=ALPACA_URL)
    """The URL from where to download the dataset."""
    file_name: str = field(repr=False, default="alpaca_data_cleaned_archive.json")
    """The name of the dataset file to download."""

    def prepare_data(self) -> None:
        Path(self.download_dir).mkdir(parents=True, exist_ok=True)
        download_file(self.file_url, Path(self.download_dir) / self.file_name)

    def read_rows(self) -> list:
        path = Path(self.download_dir) / self.file_name
        if not path.is_file():
            self.prepare_data()
        rows = read_json_rows(path)
        require_keys(rows, ("instruction", "output"), str(path))
        return rows

    def load_splits(self):
        return split_rows(self.read_rows(), self.val_split_fraction, self.seed)
