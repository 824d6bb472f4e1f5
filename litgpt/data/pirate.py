"""Pirate: a small instruction set shipped with litgpt, written in a pirate voice so that finetuning visibly works.

Every response opens with ``Ahoy, matey!``, talks like a pirate and closes with ``Yo ho ho!``. The 391 questions
cover everyday facts, arithmetic, definitions, how-to steps and advice; a further 47 held-out questions of the same
kinds (``heldout.json``) are never used for training, so a finetuned model can be checked on questions it has not
seen. Nothing is downloaded. ``scripts/build_style_data.py`` writes both files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from litgpt.data.base import IGNORE_INDEX, read_json_rows
from litgpt.data.json_data import JSON
from litgpt.prompts import PromptStyle

PIRATE_DIR = Path(__file__).resolve().parent / "shipped" / "pirate"
OPENER = "Ahoy, matey!"
SIGN_OFF = "Yo ho ho!"


@dataclass
class Pirate(JSON):
    """The shipped pirate-voice rows (``shipped/pirate/pirate.json``), split into train and val with a fixed seed."""

    json_path: Path = PIRATE_DIR / "pirate.json"
    """The rows to train on. Defaults to the shipped file; any JSON file in the same format works."""
    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    val_split_fraction: Optional[float] = 0.05
    """The fraction of the rows used for validation (the rest is trained on)."""
    prompt_style: Union[str, PromptStyle] = "alpaca"
    """The style to apply to instruction prompts. For a chat model use its own style (e.g. ``smollm2``)."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for creating the train/val splits and shuffling the dataset."""
    num_workers: int = 0
    """How many DataLoader processes to use for loading (the rows are few and short: none is quickest)."""

    @staticmethod
    def heldout_rows() -> list[dict]:
        """The held-out questions and reference answers, never part of the train or val split."""
        return read_json_rows(PIRATE_DIR / "heldout.json")

    @staticmethod
    def has_style(text: str) -> bool:
        """Whether ``text`` is a reply in the dataset's voice: it opens with the pirate greeting."""
        return text.lstrip().startswith(OPENER)
