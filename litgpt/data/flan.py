"""FLAN: the Muennighoff/flan collection (one JSON-lines file per task and split, ten templates per task)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from litgpt.data.base import IGNORE_INDEX, SFTDataModule, download_file, read_json_rows, require_keys
from litgpt.errors import LitGPTError
from litgpt.prompts import PromptStyle

FLAN_URL = "https://huggingface.co/datasets/Muennighoff/flan/resolve/main"

_TASKS = """
aeslc ag_news_subset anli_r1 anli_r2 anli_r3 arc_challenge arc_easy bool_q cb cnn_dailymail cola common_gen copa coqa
cosmos_qa dart definite_pronoun_resolution drop e2e_nlg fix_punct gigaword glue_mrpc glue_qqp hellaswag imdb_reviews
math_dataset mnli_matched mnli_mismatched multi_news multirc natural_questions openbookqa opinion_abstracts_idebate
opinion_abstracts_rotten_tomatoes para_crawl_enes paws_wiki piqa qnli quac record rte samsum sentiment140 snli
squad_v1 squad_v2 sst2 story_cloze stsb trec trivia_qa true_case web_nlg_en wic wiki_lingua_english_en wmt14_enfr
wmt16_translate_csen wmt16_translate_deen wmt16_translate_fien wmt16_translate_roen wmt16_translate_ruen
wmt16_translate_tren wnli word_segment wsc yelp_polarity_reviews
"""
SUBSETS = tuple(f"{task}_10templates" for task in _TASKS.split())


@dataclass
class FLAN(SFTDataModule):
    """FLAN tasks (all of them unless ``subsets`` names some); rows hold ``inputs`` and ``targets``."""

    mask_prompt: bool = False
    """Whether to mask the prompt section from the label (with ``ignore_index``)."""
    prompt_style: Union[str, PromptStyle] = "flan"
    """The style to apply to instruction prompts. See ``litgpt.prompts`` for a list of available styles."""
    ignore_index: int = IGNORE_INDEX
    """The index to use for elements to be ignored in the label."""
    seed: int = 42
    """The random seed for shuffling the dataset."""
    num_workers: int = 4
    """How many DataLoader processes to use for loading."""
    download_dir: Path = Path("./data/flan")
    """The directory in which the downloaded dataset gets saved."""
    url: str = FLAN_URL
    """The URL from where to download the dataset."""
    subsets: Optional[str] = None
    """A comma separated list of subsets to use. If None, all subsets are used."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = SUBSETS if self.subsets is None else [s.strip() for s in str(self.subsets).split(",") if s.strip()]
        unknown = [s for s in names if s not in SUBSETS]
        if unknown:
            raise LitGPTError(f"Unknown FLAN subset(s) {unknown}; known: {', '.join(SUBSETS)}")
        self.subset_names = list(names)

    def prepare_data(self) -> None:
        Path(self.download_dir).mkdir(parents=True, exist_ok=True)
        for subset in self.subset_names:
            for split in ("train", "test"):
                name = f"{subset}_{split}.jsonl"
                download_file(f"{self.url}/{split}/{name}", Path(self.download_dir) / name)

    def _split(self, split: str) -> list:
        rows = []
        for subset in self.subset_names:
            path = Path(self.download_dir) / f"{subset}_{split}.jsonl"
            if not path.is_file():
                self.prepare_data()
            part = read_json_rows(path)
            require_keys(part, ("inputs", "targets"), str(path))
            rows.extend({"instruction": r["inputs"], "output": r["targets"]} for r in part)
        return rows

    def load_splits(self):
        return self._split("train"), self._split("test")
