"""OpenWebText: an open reproduction of GPT-2's WebText (``Skylion007/openwebtext`` on the Hugging Face Hub)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from litgpt.data.tokens import PretrainDataModule, write_tokens
from litgpt.errors import LitGPTError

REPO_ID = "Skylion007/openwebtext"


def fetch(repo_id: str, cache_dir: Path, num_proc: Optional[int] = None, access_token: Optional[str] = None):
    """The ``train`` split as a ``datasets.Dataset`` (downloaded once into ``cache_dir``)."""
    try:
        import datasets
    except ImportError:
        raise LitGPTError(f"Loading {repo_id} needs the `datasets` package: pip install datasets") from None
    try:
        return datasets.load_dataset(
            repo_id, split="train", cache_dir=str(cache_dir), num_proc=num_proc, token=access_token
        )
    except Exception as e:  # network, missing repo: one readable line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LitGPTError(f"Could not load {repo_id} from the Hugging Face Hub: {first}") from None


@dataclass
class OpenWebText(PretrainDataModule):
    """8 million web documents (about 9B GPT-2 tokens). Downloaded with ``datasets``, split with a fixed seed and
    tokenized once into ``data_path``."""

    data_path: Path = Path("data/openwebtext")
    """The folder for the downloaded dataset and the tokenized files."""
    repo_id: str = REPO_ID
    """The dataset on the Hugging Face Hub."""
    val_split_fraction: float = 0.0005
    """The fraction of the documents used for validation (the rest trains)."""
    seed: int = 42
    """The random seed for the train/validation split and shuffling."""
    num_workers: int = 0
    """How many DataLoader processes to use (reading memory-mapped tokens needs none)."""
    num_proc: Optional[int] = None
    """Processes used by `datasets` to download and prepare the dataset (default: one per CPU, up to 8)."""

    def __post_init__(self) -> None:
        PretrainDataModule.__init__(self)
        self.data_path = Path(self.data_path)

    def cache_root(self) -> Path:
        return self.data_path

    def write_token_files(self, train: Path, val: Path) -> None:
        tokenizer = self._need_tokenizer()
        num_proc = self.num_proc or min(8, os.cpu_count() or 1)
        dataset = fetch(
            self.repo_id,
            self.data_path / "hf",
            num_proc=num_proc if num_proc > 1 else None,
            access_token=os.getenv("HF_TOKEN"),
        )
        if len(dataset) < 2:
            raise LitGPTError(f"{self.repo_id} has {len(dataset)} document(s); a train/validation split needs two")
        n_val = max(1, round(len(dataset) * self.val_split_fraction))
        split = dataset.train_test_split(test_size=n_val, seed=self.seed, shuffle=True)
        write_tokens(val, tokenizer, (row["text"] for row in split["test"]))
        write_tokens(train, tokenizer, (row["text"] for row in split["train"]))
