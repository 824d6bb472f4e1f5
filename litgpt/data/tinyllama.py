"""TinyLlama: the SlimPajama + StarCoder mixture the TinyLlama models were pretrained on, streamed with litdata.

Layout under ``data_path`` (local or a cloud URL), each a folder written by ``litdata.optimize`` (token chunks):
``slimpajama/train``, ``slimpajama/val`` and ``starcoder``. ``prepare_data`` makes missing local folders from the
raw datasets: it fetches them from the Hugging Face Hub when ``download`` is set (``cerebras/SlimPajama-627B``, about
900 GB, and ``bigcode/starcoderdata``, gated: accept its terms and set ``HF_TOKEN``), or reads them from
``raw_path`` (``SlimPajama-627B/{train,validation}/**/*.jsonl.zst``, ``starcoderdata/**/*.parquet``), and
tokenizes them once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from litgpt.data.base import DataModule
from litgpt.data.litdata import Mixture, StreamingModule, WindowShuffle, is_optimized, optimize_texts, streaming_blocks
from litgpt.errors import LitGPTError

SLIMPAJAMA_REPO = "cerebras/SlimPajama-627B"
STARCODER_REPO = "bigcode/starcoderdata"
# the share of each source in the TinyLlama mixture (by tokens)
SLIMPAJAMA_WEIGHT, STARCODER_WEIGHT = 0.693584, 0.306416


def fetch_raw(raw_path: Path, use_starcoder: bool, access_token: Optional[str] = None) -> None:
    """Download the raw datasets into ``raw_path`` (resumable; files already there are kept)."""
    from huggingface_hub import snapshot_download

    snapshot_download(
        SLIMPAJAMA_REPO, repo_type="dataset", local_dir=str(Path(raw_path) / "SlimPajama-627B"),
        allow_patterns=["train/*", "validation/*"], token=access_token,
    )  # fmt: skip
    if use_starcoder:
        snapshot_download(
            STARCODER_REPO, repo_type="dataset", local_dir=str(Path(raw_path) / "starcoderdata"),
            allow_patterns=["*.parquet"], token=access_token,
        )  # fmt: skip


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in Path(folder).rglob(pattern) if p.is_file())


@dataclass
class TinyLlama(StreamingModule):
    """SlimPajama (natural language) mixed with StarCoder (code) by token share, as TinyLlama was trained."""

    data_path: Union[str, Path] = Path("data/")
    """The folder (or cloud URL) holding the optimized slimpajama/train, slimpajama/val and starcoder sets."""
    seed: int = 42
    """The random seed for the local shuffle."""
    num_workers: int = 8
    """How many DataLoader processes to use for loading."""
    use_starcoder: bool = True
    """Whether to mix in the StarCoder code data."""
    raw_path: Optional[Path] = None
    """Raw SlimPajama-627B / starcoderdata folders to optimize from when data_path is not optimized yet."""
    download: bool = False
    """Fetch the raw datasets from the Hugging Face Hub into raw_path (default data_path/raw) when needed."""
    shuffle_window: int = 4096
    """Blocks are shuffled within windows of this many consecutive blocks."""

    def __post_init__(self) -> None:
        DataModule.__init__(self)
        self._init_state()

    def _dirs(self) -> dict[str, str]:
        root = str(self.data_path).rstrip("/")
        dirs = {"slimpajama_train": f"{root}/slimpajama/train", "slimpajama_val": f"{root}/slimpajama/val"}
        if self.use_starcoder:
            dirs["starcoder"] = f"{root}/starcoder"
        return dirs

    def prepare_data(self) -> None:
        missing = {k: v for k, v in self._dirs().items() if not is_optimized(v)}
        if not missing:
            return
        raw = Path(self.raw_path) if self.raw_path is not None else Path(str(self.data_path)) / "raw"
        if self.download:
            fetch_raw(raw, self.use_starcoder, os.getenv("HF_TOKEN"))
        if not raw.is_dir():
            raise LitGPTError(
                f"TinyLlama data is not prepared: {', '.join(missing.values())} hold no litdata index.json. Pass "
                "--data.raw_path with the raw SlimPajama-627B/starcoderdata folders, or --data.download true"
            )
        if self.tokenizer is None:
            raise LitGPTError("TinyLlama needs --tokenizer_dir to tokenize the raw data")
        sources = {
            "slimpajama_train": (_files(raw / "SlimPajama-627B" / "train", "*.jsonl.zst"), "text"),
            "slimpajama_val": (_files(raw / "SlimPajama-627B" / "validation", "*.jsonl.zst"), "text"),
            "starcoder": (_files(raw / "starcoderdata", "*.parquet"), "content"),
        }
        for key, out in missing.items():
            files, text_key = sources[key]
            if not files:
                raise LitGPTError(f"No raw files for {key} under {raw}")
            optimize_texts(
                files, out, self.tokenizer.checkpoint_dir, chunk_tokens=(self.max_seq_length + 1) * 1024,
                text_key=text_key,
            )  # fmt: skip

    def setup(self, stage: str = "") -> None:
        dirs = self._dirs()
        block = self.max_seq_length + 1
        train = streaming_blocks(dirs["slimpajama_train"], block)
        if self.use_starcoder:
            train = Mixture([train, streaming_blocks(dirs["starcoder"], block)], [SLIMPAJAMA_WEIGHT, STARCODER_WEIGHT])
        self.train_dataset = WindowShuffle(train, self.shuffle_window, self.seed)
        self.val_dataset = WindowShuffle(streaming_blocks(dirs["slimpajama_val"], block), 1, 0)


@dataclass
class MicroLlama(TinyLlama):
    """SlimPajama alone (no StarCoder), as MicroLlama was trained: TinyLlama's module without the code data."""

    use_starcoder: bool = False
    """Whether to mix in the StarCoder code data."""
