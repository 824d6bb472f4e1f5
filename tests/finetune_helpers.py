"""Tiny, offline fixtures for the finetuning tests: a byte-level BPE tokenizer, a 2-layer Llama-like checkpoint with
grouped-query attention, and an instruction dataset small enough to overfit in a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from litgpt.config import Config

ROWS = [
    {"instruction": "Name the color of the sky.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hello.", "input": "", "output": "Hello!"},
    {"instruction": "Repeat the word.", "input": "llama", "output": "llama llama"},
]

TINY_CONFIG = dict(
    n_layer=2, n_embd=64, n_head=4, n_query_groups=2, head_size=16, intermediate_size=96,
    vocab_size=320, padded_vocab_size=320, block_size=128,
)  # fmt: skip


def build_tokenizer(folder: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True})
    )


def prompt_texts() -> list[str]:
    from litgpt.prompts import PromptStyle

    style = PromptStyle.from_name("alpaca")
    texts = []
    for row in ROWS:
        texts.append(style.apply(row["instruction"], input=row["input"]) + row["output"])
    return texts * 4


def make_checkpoint(folder: Path, seed: int = 0, tied: bool = False, **overrides) -> Path:
    """A tiny random Llama-like checkpoint (lit_model.pth + model_config.yaml + tokenizer); ``tied``: the output
    layer saved as the embedding (one storage in the file), as conversions write tied-embedding models."""
    from litgpt.model import GPT

    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(folder, prompt_texts())
    config = Config.from_name("tiny-llama-1.1b", **{**TINY_CONFIG, **overrides})
    torch.manual_seed(seed)
    model = GPT(config)
    model.init_weights()
    state = model.state_dict()
    if tied:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    torch.save(state, folder / "lit_model.pth")
    config.save(folder / "model_config.yaml")
    return folder


def make_json_data(folder: Path, rows=None, copies: int = 4) -> Path:
    """A folder with train.json and val.json."""
    rows = rows or ROWS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps(rows * copies))
    (folder / "val.json").write_text(json.dumps(rows[:2]))
    return folder


def fast_args(ckpt: Path, data_dir: Path, out_dir: Path, *extra: str, steps: int = 6) -> list[str]:
    """CLI options for a quick run: micro-batch 2, no accumulation surprises, no warmup."""
    return [
        str(ckpt),
        "--out_dir", str(out_dir),
        "--data", "JSON", "--data.json_path", str(data_dir), "--data.num_workers", "0",
        "--train.max_steps", str(steps), "--train.global_batch_size", "4", "--train.micro_batch_size", "2",
        "--train.lr_warmup_steps", "0", "--train.save_interval", "2", "--train.log_interval", "1",
        "--eval.interval", "3", "--eval.max_iters", "2", "--eval.max_new_tokens", "5",
        "--optimizer.lr", "0.01",
        *extra,
    ]  # fmt: skip


def read_csv_losses(out_dir: Path) -> dict[int, float]:
    """step -> train loss at the iterations that ended an optimizer step, from every CSV log of the run."""
    import csv

    losses = {}
    for path in sorted(Path(out_dir).rglob("metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("loss") and row.get("step") and row.get("iter"):
                    losses[int(float(row["iter"]))] = float(row["loss"])
    return losses
