"""Alpaca-GPT4: the Alpaca instructions answered by GPT-4 (Instruction-Tuning-with-GPT-4/GPT-4-LLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from litgpt.data.alpaca import Alpaca

ALPACA_GPT4_URL = "https://raw.githubusercontent.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/main/data/alpaca_gpt4_data.json"


@dataclass
class AlpacaGPT4(Alpaca):
    """Same rows and format as Alpaca, with GPT-4 responses."""

    val_split_fraction: float = 0.03847  # to get exactly 2000 validation samples
    """The fraction of the dataset to use for the validation dataset. The rest is used for training."""
    download_dir: Path = Path("./data/alpacagpt4")
    """The directory in which the downloaded dataset gets saved."""
    file_url: str = field(repr=False, default=ALPACA_GPT4_URL)
    """The URL from where to download the dataset."""
    file_name: str = field(repr=False, default="alpacagpt4_data_cleaned_archive.json")
    """The name of the dataset file to download."""
