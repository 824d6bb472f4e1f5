"""Data modules with local fixture files (downloads are patched): SFT samples, collate, splits, malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from litgpt.data import JSON, Alpaca, Alpaca2k, Dolly, LongForm, SFTDataset, get_sft_collate_fn
from litgpt.errors import LitGPTError
from litgpt.prompts import PromptStyle
from tests.finetune_helpers import ROWS, build_tokenizer, prompt_texts


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from litgpt.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("tok")
    build_tokenizer(folder, prompt_texts())
    return Tokenizer(folder)


def test_sft_sample_prompt_response_eos_and_mask(tokenizer):
    style = PromptStyle.from_name("alpaca")
    row = ROWS[1]
    prompt = style.apply(row["instruction"], input=row["input"])
    assert "### Input:\n2 and 3" in prompt
    prompt_ids = tokenizer.encode(prompt)
    response_ids = tokenizer.encode(row["output"], bos=False, eos=True)

    masked = SFTDataset([row], tokenizer, "alpaca", mask_prompt=True)[0]
    assert masked["input_ids"].tolist() == prompt_ids.tolist() + response_ids.tolist()
    assert masked["input_ids"][-1] == tokenizer.eos_id
    assert masked["labels"][: len(prompt_ids)].tolist() == [-100] * len(prompt_ids)
    assert masked["labels"][len(prompt_ids) :].tolist() == response_ids.tolist()

    unmasked = SFTDataset([row], tokenizer, style, mask_prompt=False)[0]
    assert unmasked["labels"].tolist() == unmasked["input_ids"].tolist()

    short = SFTDataset([row], tokenizer, style, max_seq_length=7, mask_prompt=True)[0]
    assert len(short["input_ids"]) == 7 and short["input_ids"].tolist() == prompt_ids[:7].tolist()


def test_collate_right_pads():
    collate = get_sft_collate_fn(max_seq_length=-1)
    batch = collate(
        [
            {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7])},
            {"input_ids": torch.tensor([8]), "labels": torch.tensor([8])},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert get_sft_collate_fn(max_seq_length=2)([{"input_ids": torch.tensor([1, 2, 3]), "labels": torch.tensor([1, 2, 3])}])[
        "input_ids"
    ].shape == (1, 2)


def test_json_folder_and_single_file(tokenizer, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "train.json").write_text(json.dumps(ROWS * 3))
    (folder / "val.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS[:2]))
    data = JSON(folder, num_workers=0)
    data.connect(tokenizer, batch_size=2, max_seq_length=64)
    data.prepare_data()
    data.setup()
    assert len(data.train_dataset) == 12 and len(data.test_dataset) == 2
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].shape[1] <= 64

    single = tmp_path / "all.json"
    single.write_text(json.dumps(ROWS * 5))
    data = JSON(single, val_split_fraction=0.2, num_workers=0)
    data.connect(tokenizer, batch_size=1)
    data.setup()
    assert (len(data.train_dataset), len(data.test_dataset)) == (16, 4)
    with pytest.raises(LitGPTError, match="val_split_fraction"):
        JSON(single)


def test_malformed_row_names_index_and_key(tokenizer, tmp_path):
    def set_up(rows) -> None:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(rows))
        data = JSON(path, val_split_fraction=0.25, num_workers=0)
        data.connect(tokenizer)
        data.setup()

    rows = [dict(r) for r in ROWS]
    del rows[2]["output"]
    with pytest.raises(LitGPTError, match=r"row 2 has no 'output' key"):
        set_up(rows)
    with pytest.raises(LitGPTError, match=r"row 0 of the dataset has no 'instruction' key"):
        SFTDataset([{"output": "x"}], tokenizer, "alpaca")[0]
    # values that are not text: named at setup (a null output was trained as the text "None")
    for key, value in (("instruction", None), ("output", None), ("output", 3), ("input", ["a"])):
        rows = [dict(r) for r in ROWS]
        rows[1][key] = value
        with pytest.raises(LitGPTError, match=rf"row 1 has a \w+ as '{key}', expected a string"):
            set_up(rows)
    with pytest.raises(LitGPTError, match=r"row 0 of the dataset has a NoneType as 'output'"):
        SFTDataset([{"instruction": "x", "output": None}], tokenizer, "alpaca")[0]
    rows[1]["input"] = None  # a null input is no input
    set_up(rows)


def test_an_empty_training_set_is_a_one_line_error(tokenizer, tmp_path):
    (tmp_path / "train.json").write_text("[]")
    (tmp_path / "val.json").write_text(json.dumps(ROWS[:1]))
    data = JSON(tmp_path, num_workers=0)
    data.connect(tokenizer)
    data.setup()
    with pytest.raises(LitGPTError, match="the training set is empty"):
        data.train_dataloader()


def test_alpaca_with_patched_download(tokenizer, tmp_path, monkeypatch):
    """The download is patched to copy a local file; the split uses the established validation fraction."""
    import litgpt.data.alpaca as alpaca_module

    calls = []

    def fake_download(url, destination):
        calls.append(url)
        Path(destination).write_text(json.dumps(ROWS * 50))
        return destination

    monkeypatch.setattr(alpaca_module, "download_file", fake_download)
    data = Alpaca(download_dir=tmp_path / "alpaca", num_workers=0)
    assert data.val_split_fraction == 0.03865
    data.connect(tokenizer, batch_size=4, max_seq_length=32)
    data.prepare_data()
    data.prepare_data()  # fetched once: the patched download writes the cache file
    data.setup()
    assert calls[0].endswith("tloen/alpaca-lora/main/alpaca_data_cleaned_archive.json")
    assert len(data.test_dataset) == round(200 * 0.03865) and len(data.train_dataset) == 200 - len(data.test_dataset)
    batch = next(iter(data.train_dataloader()))
    assert set(batch) >= {"input_ids", "labels"} and batch["input_ids"].shape == batch["labels"].shape


def test_alpaca2k_with_patched_hub(tokenizer, tmp_path, monkeypatch):
    import litgpt.data.alpaca_2k as module

    seen = []

    def fake_split(repo_id, split, cache_dir, **kwargs):
        seen.append((repo_id, split))
        return [dict(r) for r in ROWS * 25]

    monkeypatch.setattr(module, "load_hf_split", fake_split)
    data = Alpaca2k(download_dir=tmp_path, num_workers=0)
    assert data.val_split_fraction == 0.05
    data.connect(tokenizer, batch_size=2, max_seq_length=512)
    data.prepare_data()
    data.setup()
    assert seen[0] == ("mhenrichsen/alpaca_2k_test", "train")
    assert (len(data.train_dataset), len(data.test_dataset)) == (95, 5)


def test_hub_split_is_cached(tmp_path):
    from litgpt.data.hub import load_hf_split

    (tmp_path / "train.json").write_text(json.dumps(ROWS))
    assert load_hf_split("any/repo", "train", tmp_path) == ROWS  # no network once cached


def test_dolly_and_longform_fields(tokenizer, tmp_path, monkeypatch):
    import litgpt.data.dolly as dolly_module
    import litgpt.data.longform as longform_module

    def fake_dolly(url, destination):
        lines = [{"instruction": "Q?", "context": "ctx", "response": "A.", "category": "qa"}] * 10
        Path(destination).write_text("\n".join(json.dumps(x) for x in lines))
        return destination

    monkeypatch.setattr(dolly_module, "download_file", fake_dolly, raising=False)
    monkeypatch.setattr("litgpt.data.alpaca.download_file", fake_dolly)
    dolly = Dolly(download_dir=tmp_path / "dolly", num_workers=0)
    dolly.connect(tokenizer)
    dolly.prepare_data()
    dolly.setup()
    assert (len(dolly.train_dataset), len(dolly.test_dataset)) == (9, 1)
    assert "### Input:\nctx" in dolly.train_dataset.prompt(0)

    def fake_longform(url, destination):
        Path(destination).write_text(json.dumps([{"input": "Write.", "output": "Text."}] * 3))
        return destination

    monkeypatch.setattr(longform_module, "download_file", fake_longform)
    longform = LongForm(download_dir=tmp_path / "lf", num_workers=0)
    longform.connect(tokenizer)
    longform.prepare_data()
    longform.setup()
    assert len(longform.train_dataset) == 3 and longform.train_dataset.example(0)["instruction"] == "Write."


def test_download_file_fetches_once_and_atomically(tmp_path):
    """The real fetch code, against a local stand-in (a file:// URL)."""
    from litgpt.data.base import download_file

    source = tmp_path / "source.json"
    source.write_text(json.dumps(ROWS))
    target = tmp_path / "cache" / "data.json"
    assert download_file(source.as_uri(), target) == target
    assert json.loads(target.read_text()) == ROWS
    source.write_text("[]")
    download_file(source.as_uri(), target)  # cached: not fetched again
    assert json.loads(target.read_text()) == ROWS
    with pytest.raises(LitGPTError, match="Could not download"):
        download_file((tmp_path / "missing.json").as_uri(), tmp_path / "other.json")
    assert not (tmp_path / "other.json").exists() and not list(tmp_path.glob(".other.json*"))


def test_hub_split_uses_datasets_and_caches(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from litgpt.data.hub import load_hf_split

    calls = []

    def fake_load_dataset(repo_id, split, cache_dir, token=None, **kwargs):
        calls.append((repo_id, split))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_hf_split("org/data", "train", tmp_path) == ROWS
    assert load_hf_split("org/data", "train", tmp_path) == ROWS
    assert calls == [("org/data", "train")]


def test_data_module_works_with_the_lightning_trainer(tmp_path):
    """The Python API's Trainer example: LLM.load(distribute=None) + a data module + L.Trainer.fit, then its third
    use case: a new module resumes from the Trainer's .ckpt (keys under "llm.model.") through trainer_setup."""
    import lightning as L

    from litgpt.api import LLM
    from tests.finetune_helpers import make_checkpoint, make_json_data

    torch.set_num_threads(1)
    ckpt = make_checkpoint(tmp_path / "ckpt")
    data = JSON(make_json_data(tmp_path / "data"), num_workers=0)

    class LitLLM(L.LightningModule):
        def __init__(self, trainer_ckpt_path=None):
            super().__init__()
            self.llm = LLM.load(ckpt, distribute=None)
            self.trainer_ckpt_path = trainer_ckpt_path

        def setup(self, stage):
            self.llm.trainer_setup(trainer_ckpt=self.trainer_ckpt_path)

        def training_step(self, batch):
            return self.llm(input_ids=batch["input_ids"], target_ids=batch["labels"])[1]

        def configure_optimizers(self):
            return torch.optim.AdamW(self.llm.model.parameters(), lr=1e-3)

    lit_model = LitLLM()
    data.connect(lit_model.llm.tokenizer, batch_size=2, max_seq_length=64)
    trainer = L.Trainer(
        max_steps=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, limit_val_batches=0,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(lit_model, data)
    assert trainer.global_step == 2
    saved = next(tmp_path.rglob("*.ckpt"))
    resumed = LitLLM(trainer_ckpt_path=saved)
    resumed.setup("fit")
    trained = lit_model.llm.model.state_dict()
    for key, value in resumed.llm.model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    with pytest.raises(LitGPTError, match="holds no GPT weights"):
        torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
        LitLLM(trainer_ckpt_path=tmp_path / "other.ckpt").setup("fit")


def test_the_hub_token_is_read_when_fetching_and_never_saved(monkeypatch, capsys):
    """$HF_TOKEN reaches the fetch code, but not hyperparameters.yaml nor --print_config."""
    from litgpt.__main__ import main
    from litgpt.data import LIMA
    from litgpt.training import _plain

    monkeypatch.setenv("HF_TOKEN", "hf_SECRET123")
    lima = LIMA()
    assert lima.token == "hf_SECRET123" and LIMA(access_token="hf_other").token == "hf_other"
    saved = _plain(LIMA(access_token="hf_other"))
    assert saved["class_path"] == "litgpt.data.LIMA" and "hf_" not in str(saved)
    with pytest.raises(SystemExit):
        main(["download", "org/name", "--print_config"])
    assert "hf_SECRET123" not in capsys.readouterr().out



def test_every_data_module_field_is_type_checked_on_the_command_line(tmp_path):
    """jsonargparse evaluates a module's field types with the annotations of all its bases in the module's own
    namespace; one it could not evaluate there (SFTDataModule's ``Optional[Callable]``) left every --data.* value of
    the module unvalidated: `--data.seed abc` failed mid-run, `--data.mask_prompt maybe` was taken as true."""
    import dataclasses
    import inspect
    import re
    from argparse import ArgumentError
    from typing import Optional

    from jsonargparse import ArgumentParser

    import litgpt.data

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=Optional[litgpt.data.DataModule])
    checked = []
    for name in litgpt.data.__all__:
        module = getattr(litgpt.data, name)
        if not (inspect.isclass(module) and dataclasses.is_dataclass(module)):
            continue
        fields = [f for f in dataclasses.fields(module) if f.init]
        required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        given = ["--data", name, *(arg for f in required for arg in (f"--data.{f.name}", str(tmp_path)))]
        for field in fields:
            if type(field.default) in (int, bool):
                with pytest.raises(ArgumentError, match=re.escape(f'Parser key "{field.name}"')):
                    parser.parse_args([*given, f"--data.{field.name}", "maybe"])
                checked.append(f"{name}.{field.name}")
    assert {"JSON.seed", "JSON.mask_prompt", "Alpaca.num_workers", "TextFiles.seed", "LIMA.seed"} <= set(checked)
