"""LongForm: long-text generation instructions (akoksal/LongForm), with its own train and validation files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, download_file, read_json_rows, require_keys
from litgpt.prompts import PromptStyle

LONGFORM_URL = "https://raw.githubusercontent.com/akoksal/LongForm/main/dataset"


@dataclass
class LongForm(SFTDataModule):
    """The LongForm dataset; its rows hold the instruction in ``input`` and the text in ``output``."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    prompt_style: Union[str, PromptStyle] = "longform"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    download_dir: Path = Path("./data/longform")
    """The directory in which the downloaded dataset gets saved."""

    def prepare_data(self) -> None:
        Path(self.download_dir).mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            download_file(f"{LONGFORM_URL}/{split}.json", Path(self.download_dir) / f"{split}.json")

    def _split(self, split: str) -> list:
        path = Path(self.download_dir) / f"{split}.json"
        if not path.is_file():
            self.prepare_data()
        rows = read_json_rows(path)
        require_keys(rows, ("input", "output"), str(path))
        return [{"instruction": r["input"], "output": r["output"]} for r in rows]

    def load_splits(self):
        return self._split("train"), self._split("val")
