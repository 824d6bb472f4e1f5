"""Deita: 10k automatically selected conversations (HuggingFaceH4/deita-10k-v0-sft)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, require_keys
from litgpt.data.conversations import pairs
from litgpt.data.hub import load_hf_split
from litgpt.prompts import PromptStyle


@dataclass
class Deita(SFTDataModule):
    """Deita conversations (``messages`` lists of role/content) as instruction rows; own train and test splits."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    include_multiturn_conversations: bool = False
    """Whether to include multi-turn conversations in the dataset."""
    download_dir: Path = Path("./data/deita")
    """The directory in which the downloaded dataset gets saved."""
    repo_id: str = "HuggingFaceH4/deita-10k-v0-sft"
    """The repo from where the data is downloaded"""

    def prepare_data(self) -> None:
        for split in ("train_sft", "test_sft"):
            load_hf_split(self.repo_id, split, Path(self.download_dir))

    def _split(self, split: str) -> list:
        raw = load_hf_split(self.repo_id, split, Path(self.download_dir))
        require_keys(raw, ("messages",), f"{self.repo_id} ({split})", text=False)
        rows = []
        for conv in raw:
            turns = [m["content"] for m in conv["messages"] if m.get("role") in ("user", "assistant")]
            rows.extend(pairs(turns, self.include_multiturn_conversations))
        return rows

    def load_splits(self):
        return self._split("train_sft"), self._split("test_sft")
