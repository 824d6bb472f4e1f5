"""Alpaca2k: a 2,000-row sample of Alpaca on the Hugging Face Hub (mhenrichsen/alpaca_2k_test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from litgpt.data.alpaca import Alpaca
from litgpt.data.base import require_keys, split_rows
from litgpt.data.hub import load_hf_split


@dataclass
class Alpaca2k(Alpaca):
    """The small Alpaca sample, fetched with the ``datasets`` library and cached in ``download_dir``."""

    val_split_fraction: float = 0.05  # to get exactly 100 validation samples
    """The fraction of the dataset to use for the validation dataset. The rest is used for training."""
    download_dir: Path = Path("./data/alpaca2k")
    """The directory in which the downloaded dataset gets saved."""
    repo_id: str = field(repr=False, default="mhenrichsen/alpaca_2k_test")
    """The Hugging Face dataset repository ID from where to download the data."""
    file_name: str = field(repr=False, default="alpaca2k_data_cleaned_archive.json")
    """The name of the local cache file."""

    def prepare_data(self) -> None:
        load_hf_split(self.repo_id, "train", Path(self.download_dir))

    def read_rows(self) -> list:
        rows = load_hf_split(self.repo_id, "train", Path(self.download_dir))
        require_keys(rows, ("instruction", "output"), self.repo_id)
        return rows

    def load_splits(self):
        return split_rows(self.read_rows(), self.val_split_fraction, self.seed)
