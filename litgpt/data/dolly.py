"""Dolly: databricks-dolly-15k, human-written instruction/response pairs with optional context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from litgpt.data.alpaca import Alpaca
from litgpt.data.base import read_json_rows, read_json_rows_lines, require_keys

DOLLY_URL = "https://huggingface.co/datasets/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl"


def dolly_to_alpaca(row: dict) -> dict:
    """Dolly names the fields ``instruction``, ``context`` and ``response``."""
    return {"instruction": row["instruction"], "input": row.get("context", ""), "output": row["response"]}


@dataclass
class Dolly(Alpaca):
    """databricks-dolly-15k as an Alpaca-style dataset (context becomes the input)."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    val_split_fraction: float = 0.1
    """The fraction of the dataset to use for the validation dataset. The rest is used for training."""
    download_dir: Path = Path("./data/dolly")
    """The directory in which the downloaded dataset gets saved."""
    file_url: str = field(repr=False, default=DOLLY_URL)
    """The URL from where to download the dataset."""
    file_name: str = field(repr=False, default="dolly_data_cleaned.json")
    """The name of the dataset file to download."""

    transform: Optional[Callable] = field(default=None, init=False, repr=False)

    def read_rows(self) -> list:
        path = Path(self.download_dir) / self.file_name
        if not path.is_file():
            self.prepare_data()
        rows = _read_lines_or_list(path)  # the file holds JSON lines whatever its name says
        require_keys(rows, ("instruction", "response"), str(path))
        return [dolly_to_alpaca(r) for r in rows]


def _read_lines_or_list(path: Path) -> list:
    if path.read_text(encoding="utf-8").lstrip().startswith("["):
        return read_json_rows(path)
    return read_json_rows_lines(path)
