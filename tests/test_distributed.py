"""Pretraining on 2 CPU processes (gloo): DDP and FSDP2 (Fabric's ModelParallelStrategy, fully_shard per block)
reach the weights of one process with the same global batch; the sharded checkpoint loads in one process and
resumes exactly. Fabric's launcher re-runs the launching script for each extra rank, so every multi-process run is a
subprocess running a small script written to tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litgpt.__main__ import main
from tests.conftest import TINY_TEXT, build_tiny_tokenizer

SCRIPT = """
import sys

from litgpt.__main__ import main

if __name__ == "__main__":
    main(sys.argv[1:])
"""

MODEL = dict(
    name="dist-tiny", block_size=32, vocab_size=320, padded_vocab_size=320, n_layer=2, n_head=2, n_query_groups=1,
    n_embd=32, head_size=16, intermediate_size=64, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
    mlp_class_name="LLaMAMLP", rotary_percentage=1.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("dist")
    tok = build_tiny_tokenizer(root / "tok")
    (root / "text").mkdir()
    (root / "text" / "a.txt").write_text(TINY_TEXT * 2)
    script = root / "run.py"
    script.write_text(SCRIPT)
    return tok, root / "text", script


def args(inputs, out: Path, *extra: str) -> list[str]:
    tok, text, _ = inputs
    model = [
        x for k, v in MODEL.items() for x in (f"--model_config.{k}", str(v).lower() if isinstance(v, bool) else str(v))
    ]
    return [
        "pretrain", *model, "--tokenizer_dir", str(tok), "--data", "TextFiles", "--data.train_data_path", str(text),
        "--out_dir", str(out), "--precision", "32-true", "--logger_name", "csv", "--train.max_steps", "3",
        "--train.global_batch_size", "4", "--train.micro_batch_size", "2", "--train.save_interval", "2",
        "--train.lr_warmup_steps", "1", "--train.max_norm", "0.5", "--optimizer.lr", "0.01",
        "--eval.interval", "2", "--eval.max_iters", "2", *extra,
    ]  # fmt: skip


def launch(inputs, argv: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen(
        [sys.executable, str(inputs[2]), *argv], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def finish(proc: subprocess.Popen, log: Path, timeout: float = 400) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, log.read_text()[-4000:]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "lit_model.pth", map_location="cpu")


def assert_same(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_ddp_and_fsdp_on_two_cpu_processes_match_one_process(inputs, tmp_path):
    single = tmp_path / "single"
    main(args(inputs, single, "--devices", "1"))  # also tokenizes the text once for the runs below
    ddp = launch(inputs, args(inputs, tmp_path / "ddp", "--devices", "2", "--strategy", "ddp"), tmp_path / "ddp.log")
    fsdp = launch(
        inputs, args(inputs, tmp_path / "fsdp", "--devices", "2", "--strategy", "fsdp"), tmp_path / "fsdp.log"
    )
    finish(ddp, tmp_path / "ddp.log")
    finish(fsdp, tmp_path / "fsdp.log")
    assert "Starting with 2 processes" in (tmp_path / "fsdp.log").read_text()

    reference = weights(single / "final")
    assert_same(weights(tmp_path / "ddp" / "final"), reference)
    assert_same(weights(tmp_path / "fsdp" / "final"), reference)
    assert_same(weights(tmp_path / "fsdp" / "step-00000002"), weights(single / "step-00000002"))

    # the sharded checkpoint: per-rank shards of the training state, and consolidated weights for one process
    step = tmp_path / "fsdp" / "step-00000002"
    shards = sorted(p.name for p in (step / "training_state.pth").iterdir())
    assert len([s for s in shards if s.endswith(".distcp")]) == 2
    from litgpt import LLM

    llm = LLM.load(str(step))
    assert isinstance(llm.generate("Llamas", max_new_tokens=2, top_k=1), str)
    # convert_pretrained_checkpoint also consolidates from the shards alone
    only_shards = tmp_path / "only-shards"
    shutil.copytree(step, only_shards)
    (only_shards / "lit_model.pth").unlink()
    main(["convert_pretrained_checkpoint", str(only_shards), str(tmp_path / "converted")])
    assert_same(weights(tmp_path / "converted"), weights(step), atol=0)

    # resume the sharded run from its step-2 checkpoint: the same final weights
    resumed = tmp_path / "fsdp-resumed"
    resumed.mkdir()
    shutil.copytree(step, resumed / step.name)
    argv = args(inputs, resumed, "--devices", "2", "--strategy", "fsdp", "--resume", "auto")
    proc = launch(inputs, argv, tmp_path / "resume.log")
    finish(proc, tmp_path / "resume.log")
    assert "Resuming from" in (tmp_path / "resume.log").read_text()
    assert_same(weights(resumed / "final"), weights(tmp_path / "fsdp" / "final"), atol=1e-6)


def test_token_counts_and_validation_loss_do_not_depend_on_the_process_count(inputs, tmp_path):
    """Finetuning on samples of unequal length: the reported token count is every process's (it was rank 0's count
    times the process count), and the validation loss is that of the same samples whatever the number of processes
    (the distributed sampler padded the 3 validation samples with a duplicate, and batch means were averaged)."""
    import json
    import re

    from tests.finetune_helpers import ROWS, make_checkpoint

    ckpt = make_checkpoint(tmp_path / "ckpt")
    data = tmp_path / "data"
    data.mkdir()
    rows = [dict(row, output=row["output"] * (1 + 2 * k)) for k, row in enumerate(ROWS * 2)]  # 8 lengths
    (data / "train.json").write_text(json.dumps(rows))
    (data / "val.json").write_text(json.dumps(rows[1:4]))
    runs = {}
    for devices in (1, 2):
        argv = [
            "finetune", "lora", str(ckpt), "--out_dir", str(tmp_path / f"out{devices}"), "--devices", str(devices),
            "--precision", "32-true", "--data", "JSON", "--data.json_path", str(data), "--data.num_workers", "0",
            "--train.epochs", "1", "--train.global_batch_size", "4", "--train.micro_batch_size", "2",
            "--train.lr_warmup_steps", "0", "--train.save_interval", "100", "--eval.interval", "100",
            "--eval.max_new_tokens", "0", "--logger_name", "csv",
        ]  # fmt: skip
        log = tmp_path / f"run{devices}.log"
        runs[devices] = (launch(inputs, argv, log), log)
    reports = {}
    for devices, (proc, log) in runs.items():
        finish(proc, log)
        text = log.read_text()
        tokens = re.search(r"^Tokens: ([\d,]+) \(processed with padding", text, re.M).group(1)
        val = re.findall(r"val loss ([\d.]+)", text)[-1]
        reports[devices] = (int(tokens.replace(",", "")), float(val))
    from litgpt.data import JSON
    from litgpt.tokenizer import Tokenizer

    module = JSON(json_path=data, num_workers=0)
    module.connect(Tokenizer(ckpt), batch_size=2, max_seq_length=128)
    module.setup()
    epoch = sum(len(module.train_dataset[i]["input_ids"]) for i in range(len(module.train_dataset)))
    assert reports[1][0] == reports[2][0] == epoch
    assert reports[1][1] == pytest.approx(reports[2][1], abs=2e-4)
