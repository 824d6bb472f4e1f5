"""TinyStories: short synthetic stories for small language models (the ``roneneldan/TinyStories`` dataset)."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from litgpt.data.tokens import PretrainDataModule, write_tokens
from litgpt.errors import LitGPTError

REPO_ID = "roneneldan/TinyStories"
ARCHIVE = "TinyStories_all_data.tar.gz"


def fetch_archive(data_path: Path, repo_id: str = REPO_ID, filename: str = ARCHIVE) -> Path:
    """Download the archive of JSON shards from the Hugging Face Hub into ``data_path`` (once) and unpack it."""
    data_path = Path(data_path)
    shards = sorted(data_path.glob("data*.json"))
    if shards:
        return data_path
    from huggingface_hub import hf_hub_download

    try:
        archive = hf_hub_download(repo_id, filename, repo_type="dataset", local_dir=str(data_path))
    except Exception as e:  # network, missing file: one readable line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LitGPTError(f"Could not download {filename} from the {repo_id} dataset: {first}") from None
    with tarfile.open(archive) as tar:
        tar.extractall(data_path, filter="data")
    return data_path


def stories(shard: Path) -> list[str]:
    rows = json.loads(Path(shard).read_text(encoding="utf-8"))
    return [row["story"].strip() for row in rows if isinstance(row, dict) and row.get("story")]


@dataclass
class TinyStories(PretrainDataModule):
    """The TinyStories shards ``data00.json`` ... ``data49.json``: the first shard validates, the rest train.
    Downloaded and tokenized once into ``data_path``."""

    data_path: Path = Path("data/tinystories")
    """The folder to download the dataset to and keep the tokenized files in."""
    seed: int = 42
    """The random seed for shuffling."""
    num_workers: int = 0
    """How many DataLoader processes to use (reading memory-mapped tokens needs none)."""
    max_shards: Optional[int] = None
    """Use only this many training shards (a smaller run)."""

    def __post_init__(self) -> None:
        PretrainDataModule.__init__(self)
        self.data_path = Path(self.data_path)

    def cache_root(self) -> Path:
        return self.data_path / ".cache"

    def write_token_files(self, train: Path, val: Path) -> None:
        tokenizer = self._need_tokenizer()
        folder = fetch_archive(self.data_path)
        shards = sorted(folder.glob("data*.json"))
        if len(shards) < 2:
            raise LitGPTError(f"TinyStories needs at least two data*.json shards in {folder}, found {len(shards)}")
        val_shards, train_shards = shards[:1], shards[1:]
        if self.max_shards is not None:
            train_shards = train_shards[: self.max_shards]
        write_tokens(val, tokenizer, (s for shard in val_shards for s in stories(shard)))
        write_tokens(train, tokenizer, (s for shard in train_shards for s in stories(shard)))

    def token_files(self) -> tuple[Path, Path]:
        train, val = super().token_files()
        if self.max_shards is not None:
            train = train.with_name(f"train-{self.max_shards}shards.bin")
        return train, val
