"""Fetching a dataset split from the Hugging Face Hub with the ``datasets`` library, cached as a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from litgpt.errors import LitGPTError


def load_hf_split(repo_id: str, split: str, cache_dir: Path, access_token: Optional[str] = None, **kwargs) -> list[dict]:
    """The rows of ``repo_id``'s ``split`` as plain dicts. The first call downloads and writes
    ``cache_dir/<split>.json``; later calls read that file, so no network is needed once cached."""
    from litgpt.utils import atomic_write_text

    cache = Path(cache_dir) / f"{split}.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    try:
        import datasets
    except ImportError:
        raise LitGPTError(f"Loading {repo_id} needs the `datasets` package: pip install datasets") from None
    try:
        dataset = datasets.load_dataset(repo_id, split=split, cache_dir=str(cache_dir), token=access_token, **kwargs)
    except Exception as e:  # network, gated repo, unknown split: one readable line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LitGPTError(f"Could not load the {split!r} split of {repo_id} from the Hugging Face Hub: {first}") from None
    rows = [dict(row) for row in dataset]
    atomic_write_text(cache, json.dumps(rows))
    return rows
