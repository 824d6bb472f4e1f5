"""LIMA: 1,000 curated conversations (GAIR/lima on the Hugging Face Hub, gated: needs an access token)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, require_keys, split_rows
from litgpt.data.conversations import pairs
from litgpt.data.hub import load_hf_split
from litgpt.prompts import PromptStyle


@dataclass
class LIMA(SFTDataModule):
    """LIMA conversations as instruction rows (the first exchange, or every exchange with multi-turn on)."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    val_split_fraction: float = 0.1
    """The fraction of the dataset to use for the validation dataset. The rest is used for training."""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for creating the train/val splits and shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    include_multiturn_conversations: bool = False
    """Whether to include multi-turn conversations in the dataset."""
    download_dir: Path = Path("./data/lima")
    """The directory in which the downloaded dataset gets saved."""
    access_token: Optional[str] = field(repr=False, default=None)
    """The Hugging Face API token to use for authentication (LIMA is gated; default: $HF_TOKEN, read when fetching)."""
    repo_id: str = "GAIR/lima"
    """The Hugging Face dataset repository ID from where to download the data."""

    @property
    def token(self) -> Optional[str]:
        return self.access_token or os.getenv("HF_TOKEN")

    def prepare_data(self) -> None:
        load_hf_split(self.repo_id, "train", Path(self.download_dir), access_token=self.token)

    def load_splits(self):
        raw = load_hf_split(self.repo_id, "train", Path(self.download_dir), access_token=self.token)
        require_keys(raw, ("conversations",), self.repo_id, text=False)
        rows = [r for conv in raw for r in pairs(conv["conversations"], self.include_multiturn_conversations)]
        return split_rows(rows, self.val_split_fraction, self.seed)
