"""Finetuning end to end on a tiny random model: every method trains, saves, resumes and loads back."""

from __future__ import annotations

import re
import shutil
import stat
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml

from litgpt.__main__ import main
from litgpt.utils import usual_mode
from tests.finetune_helpers import fast_args, make_checkpoint, make_json_data, read_csv_losses

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return make_checkpoint(root / "ckpt"), make_json_data(root / "data")


WEIGHTS = {
    "lora": "lit_model.pth.lora",
    "adapter": "lit_model.pth.adapter",
    "adapter_v2": "lit_model.pth.adapter_v2",
    "full": "lit_model.pth",
}
EXTRA = {
    "lora": ["--lora_r", "4", "--lora_mlp", "true", "--lora_projection", "true"],
    # the zero-initialised gates make adapters start slowly: a larger learning rate shows the fall in 6 steps
    "adapter": ["--adapter_start_layer", "0", "--adapter_prompt_length", "4", "--optimizer.lr", "0.2"],
    "adapter_v2": ["--adapter_start_layer", "1", "--adapter_prompt_length", "4", "--optimizer.lr", "0.05"],
    "full": ["--logger_name", "tensorboard"],
}


def saved_keys_ok(method: str, keys: set[str], all_keys: set[str]) -> bool:
    if method == "lora":
        return keys == {k for k in all_keys if "lora_" in k}
    if method == "adapter":
        return bool(keys) and all("adapter_wte" in k or "gating_factor" in k for k in keys)
    if method == "adapter_v2":
        return any("adapter_scale" in k for k in keys) and any("norm_1" in k for k in keys) and not any(
            k.endswith("linear.weight") for k in keys
        )
    return "transformer.wte.weight" in keys and not any("lora" in k or "adapter" in k for k in keys)


@pytest.mark.parametrize("method", ["lora", "adapter", "adapter_v2", "full"])
def test_method_trains_saves_and_loads(method, tiny, tmp_path):
    ckpt, data = tiny
    out = tmp_path / "out"
    main(["finetune", method, *fast_args(ckpt, data, out, *EXTRA[method], steps=6)])

    # the loss falls on the repeated tiny dataset
    if method == "full":  # TensorBoard on request
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(next(out.rglob("events.out.tfevents*")).parent))
        events.Reload()
        losses = [e.value for e in events.Scalars("loss")]
    else:
        losses = [loss for _, loss in sorted(read_csv_losses(out).items())]
    assert len(losses) == 12
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.02, losses

    # output layout
    for folder in ("step-000002", "step-000004", "step-000006", "final"):
        for name in (WEIGHTS[method], "model_config.yaml", "hyperparameters.yaml", "prompt_style.yaml", "tokenizer.json"):
            assert (out / folder / name).is_file(), (folder, name)
    assert (out / "step-000002" / "training_state.pth").is_file()
    assert next(out.rglob("metrics.csv" if method != "full" else "events.out.tfevents*"), None) is not None
    assert next(out.rglob("loss.png"), None) is not None
    assert not list(out.glob(".*")), "no temporary folders are left behind"
    usual = usual_mode(directory=False)  # readable by whoever may read the folder (mkstemp makes private files)
    assert {stat.S_IMODE(f.stat().st_mode) for f in (out / "final").iterdir()} == {usual}
    assert yaml.safe_load((out / "final" / "prompt_style.yaml").read_text())["class_path"] == "litgpt.prompts.Alpaca"
    hparams = yaml.safe_load((out / "final" / "hyperparameters.yaml").read_text())
    assert hparams["checkpoint_dir"] == str(ckpt)
    assert hparams["train"]["max_steps"] == 6
    assert hparams["data"]["class_path"] == "litgpt.data.JSON"

    # only the trained parameters are saved
    saved = set(torch.load(out / "final" / WEIGHTS[method], weights_only=True))
    from litgpt.finetuned import load_finetuned

    full_keys = set(torch.load(ckpt / "lit_model.pth", weights_only=True))
    if method == "lora":
        assert all("lora_" in k for k in saved) and len(saved) == 2 * 2 * 5  # 2 layers x (qkv, proj, 3 mlp) x (A, B)
        assert (out / "final" / "lit_model.pth").is_file()  # merged
    else:
        model = load_finetuned(out / "final") if method != "full" else None
        all_keys = set(model.state_dict()) if model is not None else full_keys
        assert saved_keys_ok(method, saved, all_keys), sorted(saved)[:8]

    # a finetuned folder loads directly (step folders hold only the trained params)
    from litgpt.api import LLM

    for folder in ("final", "step-000004"):
        llm = LLM.load(out / folder)
        text = llm.generate("Say hello.", max_new_tokens=3, temperature=0)
        assert isinstance(text, str)
    # and through the command line, with the established release's spellings
    command = {"lora": "generate", "full": "generate_full"}.get(method, f"generate_{method}")
    main([command, str(out / "final"), "--max_new_tokens", "3", "--precision", "32-true"])
    if method != "lora":  # the weights file with the base model, as the established commands take them
        option, file = ("--finetuned_path", "lit_model.pth") if method == "full" else ("--adapter_path", WEIGHTS[method])
        main([command, str(ckpt), option, str(out / "final" / file), "--prompt", "Hi", "--input", "x", "--max_new_tokens", "3"])


def test_lora_step_folder_matches_merged_final(tiny, tmp_path):
    """LLM.load on a step folder (base + LoRA applied at load) equals the merged final weights of that step."""
    from litgpt.api import LLM

    ckpt, data = tiny
    out = tmp_path / "out"
    main(["finetune_lora", *fast_args(ckpt, data, out, "--lora_key", "true", steps=2), "--train.save_interval", "2"])
    merged = torch.load(out / "final" / "lit_model.pth", weights_only=True)
    base = torch.load(ckpt / "lit_model.pth", weights_only=True)
    assert not torch.equal(merged["transformer.h.0.attn.qkv.weight"], base["transformer.h.0.attn.qkv.weight"])
    llm_step, llm_final = LLM.load(out / "step-000002", distribute=None), LLM.load(out / "final", distribute=None)
    llm_step.distribute(precision="32-true")  # the files' dtype: merged once, compared without rounding
    llm_final.distribute(precision="32-true")
    x = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(llm_step.model(x), llm_final.model(x), atol=1e-5, rtol=1e-5)

    # `litgpt merge_lora` rebuilds the same merged file from the LoRA weights and hyperparameters.yaml
    (out / "step-000002" / "lit_model.pth").unlink(missing_ok=True)
    main(["merge_lora", str(out / "step-000002")])
    again = torch.load(out / "step-000002" / "lit_model.pth", weights_only=True)
    for key in merged:
        torch.testing.assert_close(again[key], merged[key])

    # a hyperparameters.yaml whose lora_r is not the weights' rank: refused (it merged with the wrong scaling)
    step = out / "step-000002"
    hparams = yaml.safe_load((step / "hyperparameters.yaml").read_text())
    (step / "hyperparameters.yaml").write_text(yaml.safe_dump({**hparams, "lora_r": 4}))
    with pytest.raises(SystemExit, match="has rank 8 but hyperparameters.yaml says lora_r 4"):
        main(["merge_lora", str(step), "--force", "true"])


@pytest.mark.parametrize("grouping", [[], ["--train.group_by_length", "true"]], ids=["random", "grouped"])
def test_resume_reproduces_uninterrupted_run(tiny, tmp_path, grouping):
    """Kill after the step-4 checkpoint (simulated: only what existed then is kept), `--resume auto` continues and
    reproduces the uninterrupted losses and weights, LoRA dropout included (and with batches grouped by length)."""
    ckpt, data = tiny
    full_run = tmp_path / "full"
    main(["finetune", "lora", *fast_args(ckpt, data, full_run, "--lora_dropout", "0.2", *grouping, steps=6)])
    reference = read_csv_losses(full_run)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for step in ("step-000002", "step-000004"):
        shutil.copytree(full_run / step, resumed / step)
    partial = resumed / ".step-000006.tmp"  # a checkpoint that was being written when the run died
    partial.mkdir()
    (partial / "lit_model.pth.lora").write_bytes(b"truncated")
    main(["finetune", "lora", *fast_args(ckpt, data, resumed, "--lora_dropout", "0.2", *grouping, steps=6), "--resume", "auto"])
    continued = read_csv_losses(resumed)
    assert min(continued) == 9  # iterations 1-8 (steps 1-4) were not redone
    for it in range(9, 13):
        assert continued[it] == pytest.approx(reference[it], abs=1e-6), (it, continued, reference)
    a = torch.load(full_run / "final" / "lit_model.pth.lora", weights_only=True)
    b = torch.load(resumed / "final" / "lit_model.pth.lora", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-6)


def test_resume_requires_a_checkpoint(tiny, tmp_path):
    ckpt, data = tiny
    with pytest.raises(SystemExit, match="no checkpoint to resume"):
        main(["finetune_full", *fast_args(ckpt, data, tmp_path / "empty", steps=1), "--resume", "true"])


def test_resume_with_other_settings(tiny, tmp_path):
    """Other LoRA settings: a one-line error naming the tensor (was a size-mismatch traceback). A longer
    --train.max_steps: the cosine schedule decays to the new end (the saved schedule kept the old one)."""
    ckpt, data = tiny
    out = tmp_path / "out"
    main(["finetune", "lora", *fast_args(ckpt, data, out, "--eval.interval", "100", steps=2)])
    with pytest.raises(SystemExit, match=r"cannot resume from .*step-000002: its transformer\.h\.0\.attn\.qkv\.lora_A"):
        main(["finetune", "lora", *fast_args(ckpt, data, out, "--lora_r", "4", steps=4), "--resume", "auto"])
    # another global batch size: its steps, schedule and data position are counted in other batches (with a token
    # budget the resumed run stopped at once, half-trained); the layout file names the saved sizes
    with pytest.raises(SystemExit, match=r"it was saved with --train.global_batch_size 4 --train.micro_batch_size 2, "
                                         r"this run has 8 and 2; resume with the same batch sizes"):  # fmt: skip
        main(["finetune", "lora", *fast_args(ckpt, data, out, "--train.global_batch_size", "8", steps=4), "--resume", "auto"])

    def learning_rates(folder: Path) -> dict:
        import csv

        rates = {}
        for path in sorted(folder.rglob("metrics.csv")):
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if r.get("iter") and r.get("learning_rate")]
                rates.update({int(float(r["iter"])): float(r["learning_rate"]) for r in rows})
        return rates

    main(["finetune", "lora", *fast_args(ckpt, data, out, "--eval.interval", "100", steps=4), "--resume", "auto"])
    straight = tmp_path / "straight"
    main(["finetune", "lora", *fast_args(ckpt, data, straight, "--eval.interval", "100", steps=4)])
    resumed, expected = learning_rates(out), learning_rates(straight)  # micro-batch -> learning rate
    assert {i: resumed[i] for i in range(5, 9)} == pytest.approx({i: expected[i] for i in range(5, 9)})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "lora", "--quantize", "int8"], "--quantize int8 is not one of 'bnb.nf4', "),
        (["generate", "--max_new_tokens", "x"], "--max_new_tokens x is not of type int"),
        (["chat", "--bogus", "1"], "unrecognized arguments: --bogus 1 (see"),
        # no abbreviations (argparse's default would take --max_tokens as --max_tokens_cap); close spellings named
        (["serve", "--max_tokens", "5"], "unrecognized arguments: --max_tokens 5; closest options for --max_tokens: --max_tokens_cap, --max_new_tokens"),
        (["finetune", "lora", "--train.micro_batch", "2"], "closest options for --train.micro_batch: --train.micro_batch_size"),
        (["chat", "--top_k", "0"], "top_k must be a positive integer or None, got 0"),
        (["generate", "--num_samples", "0"], "--num_samples must be at least 1, got 0"),
        (["finetune", "loraa", "ckpt"], "unknown method 'loraa'; did you mean 'lora'?"),
        (["finetune", "lora", "--data", "Alpca"], "--data Alpca is not a data module. Did you mean: Alpaca"),
    ],
)
def test_bad_option_values_are_one_line_errors(argv, message, capsys):
    """jsonargparse printed its whole usage text and a multi-line type report."""
    with pytest.raises(SystemExit, match=re.escape(message)) as exit_info:
        main(argv)
    assert "\n" not in str(exit_info.value.code)
    assert "usage:" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, message",
    [
        (["--precision", "bf16-wrong"], "Unknown precision 'bf16-wrong'; use one of 16, 16-mixed, 16-true, 32, "),
        (["--precision", "fp17"], "bf16-true, bfloat16, float16, float32, fp16, fp32"),  # as generate's, not Fabric's
        (["--eval.interval", "0"], "--eval.interval must be at least 1, got 0"),
        (["--train.log_interval", "0"], "--train.log_interval must be at least 1, got 0"),
        (["--train.micro_batch_size", "0"], "--train.micro_batch_size must be at least 1, got 0"),
        (["--out_dir", __file__], "is a file; choose another --out_dir"),
        (["--optimizer.lr", "-1"], "--optimizer AdamW: Invalid learning rate: -1"),
        (["--devices", "two"], "--devices must be a positive number of devices"),
        (["--data.num_workers", "-1"], "--data.num_workers must be 0 or more, got -1"),
        (["--data.json_path", "{data}/train.json"], "--data.json_path is a single file: also set"),
        (["--train.max_tokens", "5000"], "--train.max_tokens is for pretraining; say how long to finetune with"),
        (["--train.max_time", "0"], "--train.max_time must be a positive number of seconds, got 0.0"),
        # values that ran to the end and spoiled the run: gradient ascent, a negative learning rate, ...
        (["--train.max_norm", "-1"], "--train.max_norm must be a positive number (or null: no clipping), got -1.0"),
        (["--train.min_lr", "-1"], "--train.min_lr must be 0 or more, got -1.0"),
        (["--train.lr_warmup_fraction", "2"], "--train.lr_warmup_fraction must be between 0 and 1, got 2.0"),
        (["--train.lr_warmup_fraction", "-0.5"], "--train.lr_warmup_fraction must be between 0 and 1, got -0.5"),
        (["--train.lr_warmup_steps", "-5"], "--train.lr_warmup_steps must be 0 or more, got -5"),
        (["--eval.max_iters", "-1"], "--eval.max_iters must be at least 1, got -1"),
        (["--eval.max_iters", "0"], "--eval.max_iters must be at least 1, got 0"),  # a NaN validation loss
        (["--eval.max_new_tokens", "-1"], "--eval.max_new_tokens must be 0 or more (0: no example), got -1"),
        (["--eval.evaluate_example", "last"], "--eval.evaluate_example must be first, random or a sample index"),
        (["--lora_alpha", "0"], "--lora_alpha must be positive (the update is scaled by alpha / r), got 0"),
    ],
)
def test_bad_training_options_are_one_line_errors(tiny, tmp_path, option, message, capsys):
    ckpt, data = tiny
    option = [o.format(data=data) for o in option]
    with pytest.raises(SystemExit, match=re.escape(message)) as exit_info:
        main(["finetune", "lora", *fast_args(ckpt, data, tmp_path / "out", *option, steps=1)])
    assert "\n" not in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_transformer_engine_precision_without_the_package_is_a_one_line_error(tiny, tmp_path, monkeypatch):
    """Lightning raised ModuleNotFoundError (a traceback) for --precision transformer-engine."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformer_engine" else find_spec(name, *a))
    ckpt, data = tiny
    with pytest.raises(SystemExit, match="--precision transformer-engine needs NVIDIA Transformer Engine") as exit_info:
        main(["finetune", "lora", *fast_args(ckpt, data, tmp_path / "out", "--precision", "transformer-engine", steps=1)])
    assert "\n" not in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


def test_generate_precision_names_train_as_fabric_settings():
    from litgpt.training import training_precision, weight_dtype

    assert training_precision("fp32") == "32-true" and training_precision("bfloat16") == "bf16-true"
    assert training_precision("16") == "16-mixed" and training_precision("bf16") == "bf16-mixed"  # as to Fabric
    assert weight_dtype(training_precision("fp16")) == torch.float16


@pytest.mark.parametrize(
    "option, message",
    [
        (["--train.global_batch_size", "3"], "--train.global_batch_size (3) must be a multiple of"),
        (["--data.json_path", "{data}/broken.json", "--data.val_split_fraction", "0.5"], "is not valid JSON"),
        (["--optimizer", "NoSuchOptimizer"], "Unknown optimizer 'NoSuchOptimizer'"),
        (["--precision", "bf16-true", "--optimizer.betas", "[2, 3]"], "--optimizer AdamW: Invalid beta parameter"),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
def test_a_run_that_fails_to_start_leaves_no_output_folder(tiny, tmp_path, option, message, existing):
    """A failed start left an empty --out_dir behind (and the folders above it that it made)."""
    ckpt, data = tiny
    (tmp_path / "broken.json").write_text('[{"instruction": "a", ')
    option = [o.format(data=tmp_path) for o in option]
    out = tmp_path / "made" / "here"
    if existing:  # a folder the user made is kept, and so is what it holds
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(["finetune", "lora", *fast_args(ckpt, data, out, *option, steps=1)])
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not (tmp_path / "made").exists()


def test_data_module_fields_are_type_checked(tiny, tmp_path):
    """--data.* values were not validated: a traceback deep in the run, or 'maybe' taken as a true mask_prompt."""
    ckpt, data = tiny
    cases = [
        (["--data.seed", "abc"], "--data.seed abc is not of type int"),
        (["--data.mask_prompt", "maybe"], "--data.mask_prompt maybe is not of type bool"),
        (["--data.val_split_fraction", "abc"], "--data.val_split_fraction abc is not of type float or null"),
    ]
    for option, message in cases:
        with pytest.raises(SystemExit, match=re.escape(message)) as exit_info:
            main(["finetune", "lora", *fast_args(ckpt, data, tmp_path / "out", *option, steps=1)])
        assert "\n" not in str(exit_info.value.code)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["finetune", "lora"], "lora_r: 8"),
        (["finetune_lora"], "lora_alpha: 16"),
        (["finetune"], "lora_dropout: 0.05"),
        (["finetune", "qlora"], "quantize: bnb.nf4"),
        (["finetune", "adapter"], "adapter_prompt_length: 10"),
        (["finetune_adapter_v2"], "adapter_start_layer: 2"),
        (["finetune", "full"], "global_batch_size: 16"),
    ],
)
def test_cli_spellings_parse(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert expected in printed
    config = yaml.safe_load(printed)
    assert config["train"]["micro_batch_size"] == 1 and config["train"]["lr_warmup_steps"] == 100
    assert config["train"]["epochs"] == 5 and config["optimizer"] == "AdamW"


@pytest.mark.parametrize("order", ["name first", "name last", "equals sign"])
def test_an_optimizer_name_keeps_its_dotted_options(order, capsys):
    """`--optimizer SGD --optimizer.lr 0.5`: jsonargparse alone replaces the name by {lr: 0.5} (AdamW would run)."""
    from litgpt.training import make_optimizer

    name, lr = (["--optimizer=SGD"] if order == "equals sign" else ["--optimizer", "SGD"]), ["--optimizer.lr", "0.5"]
    with pytest.raises(SystemExit):
        main(["finetune", "lora", *(lr + name if order == "name last" else name + lr), "--print_config"])
    spec = yaml.safe_load(capsys.readouterr().out)["optimizer"]
    optimizer = make_optimizer(spec, [torch.nn.Parameter(torch.zeros(2))], lr=3e-4, weight_decay=0.0)
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["lr"] == 0.5


def test_a_custom_ignore_index_masks_the_same_targets(tiny, tmp_path):
    """--data.ignore_index -1 with a masked prompt: the loss skips what -100 skips (it crashed: 'Target -1 is out of
    bounds')."""
    ckpt, data = tiny
    runs = {}
    for index in ("-100", "-1"):
        out = tmp_path / f"ignore{index}"
        main(["finetune", "full", *fast_args(ckpt, data, out, "--data.mask_prompt", "true", "--data.ignore_index",
                                             index, "--eval.interval", "100", steps=2)])  # fmt: skip
        runs[index] = read_csv_losses(out)
    assert runs["-1"] == runs["-100"] and len(runs["-1"]) == 4


def test_epochs_are_whole_passes_and_a_short_last_window_is_averaged(tiny, tmp_path, capsys):
    """--train.epochs 1 over 16 samples in micro-batches of 2 with a global batch of 32: 8 micro-batches, one optimizer
    step on their mean gradient (it ran 16 micro-batches, a second pass, for one full window), the same update as a
    global batch of 16."""
    ckpt, data = tiny
    weights = {}
    for name, how in {"epochs": ["--train.max_steps", "null", "--train.epochs", "1", "--train.global_batch_size", "32"],
                      "one step": ["--train.max_steps", "1", "--train.global_batch_size", "16"]}.items():  # fmt: skip
        out = tmp_path / name.replace(" ", "-")
        main(["finetune", "full", *fast_args(ckpt, data, out, *how, "--eval.interval", "100", "--eval.final_validation",
                                             "false")])  # fmt: skip
        assert "Steps: 1 (8 iterations, 1 full epoch(s))" in capsys.readouterr().err
        weights[name] = torch.load(out / "final" / "lit_model.pth", weights_only=True)
    for key, value in weights["one step"].items():
        torch.testing.assert_close(weights["epochs"][key], value)


def test_tutorial_config_parses(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "lora", "--config", str(REPO / "config_hub/finetune/phi-2/lora.yaml"), "--train.max_steps", "5", "--print_config"])  # fmt: skip
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["train"]["max_steps"] == 5
    assert config["data"]["class_path"] == "litgpt.data.Alpaca2k"
    assert config["out_dir"] == "out/finetune/lora-phi-2"
    assert config["optimizer"]["init_args"]["lr"] == 0.0002


def test_tiny_config_hub_file_trains(tiny, tmp_path):
    """The local config-hub file drives a real run on its shipped data when its checkpoint is the tiny fixture."""
    from litgpt.prompts import SmolLM2, load_prompt_style

    ckpt, _ = tiny
    out = tmp_path / "out"
    main([
        "finetune", "lora", "--config", str(REPO / "config_hub/finetune/smollm2-135m/lora.yaml"),
        "--checkpoint_dir", str(ckpt), "--out_dir", str(out), "--train.max_steps", "2", "--train.micro_batch_size", "4",
        "--eval.max_iters", "1", "--eval.max_new_tokens", "4",
    ])  # fmt: skip
    assert (out / "final" / "lit_model.pth.lora").is_file()
    assert load_prompt_style(out / "final") == SmolLM2()
    hparams = yaml.safe_load((out / "final" / "hyperparameters.yaml").read_text())
    assert hparams["data"]["class_path"] == "litgpt.data.Pirate"


@pytest.mark.filterwarnings("error:.*autograd kernel was not registered")  # a gradient that would not flow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_qlora_trains(tiny, tmp_path, monkeypatch, device, capsys):
    """QLoRA: the frozen base layers become bitsandbytes' 4-bit ones, LoRA trains on them (the loss falls), the
    checkpoints hold the LoRA weights only, and the final folder also has the weights merged from the float base."""
    import litgpt.quantize as quantize
    from litgpt.api import LLM
    from litgpt.lora import LoRALinear

    if (device == "cuda") != torch.cuda.is_available():  # the training loop takes the GPU where there is one
        pytest.skip("QLoRA on CUDA needs a CUDA GPU: the CPU case runs the same code" if device == "cuda" else
                    "the training loop takes the GPU here: the cuda case runs")  # fmt: skip
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (the test extra brings it)")
    if device == "cpu" and not quantize.bnb_runs_on_cpu():
        pytest.skip("the installed bitsandbytes has no CPU backend")
    ckpt, data = tiny
    out = tmp_path / "out"
    built, real_quantize = [], quantize.quantize_model
    monkeypatch.setattr(quantize, "quantize_model", lambda *a, **k: built.append(real_quantize(*a, **k)) or built[-1])
    main(["finetune", "qlora", *fast_args(ckpt, data, out, *EXTRA["lora"], "--precision", "bf16-true", steps=6)])
    base = sum(t.numel() for t in torch.load(ckpt / "lit_model.pth", weights_only=True).values())
    assert f"Number of non-trainable parameters: {base:,}" in capsys.readouterr().err  # not the packed 4-bit bytes
    qkv = built[0].transformer.h[0].attn.qkv
    assert isinstance(qkv, LoRALinear) and isinstance(qkv.linear, quantize.BnbLinear)
    assert qkv.linear.inner.weight.dtype == torch.uint8  # 4-bit codes, two a byte
    losses = [loss for _, loss in sorted(read_csv_losses(out).items())]
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.02, losses
    saved = torch.load(out / "step-000002" / "lit_model.pth.lora", weights_only=True)
    assert saved and all("lora_" in k for k in saved)
    assert (out / "final" / "lit_model.pth").is_file()
    llm = LLM.load(out / "final", distribute=None)
    llm.distribute(accelerator=device, precision="bf16-true")
    llm.prompt_style.stop_tokens = lambda tokenizer: ()
    assert len(llm.generate("Llamas eat", max_new_tokens=4, return_as_token_ids=True)) == 4


def test_qlora_errors_are_one_line(tiny, tmp_path, monkeypatch):
    import litgpt.quantize as quantize

    ckpt, data = tiny
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "qlora", *fast_args(ckpt, data, tmp_path / "a", steps=1)])
    message = str(exit_info.value.code)
    assert "needs bitsandbytes: pip install bitsandbytes" in message and "\n" not in message
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.SimpleNamespace(__version__="0.42.0"))
    monkeypatch.setattr(quantize, "bnb_runs_on_cpu", lambda: False)  # a release without the CPU backend
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "qlora", *fast_args(ckpt, data, tmp_path / "b", steps=1)])
    message = str(exit_info.value.code)
    assert "CPU backend (installed: 0.42.0)" in message and "without --quantize" in message and "\n" not in message
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "qlora", *fast_args(ckpt, data, tmp_path / "c", "--precision", "bf16-mixed", steps=1)])
    assert "mixed --precision" in str(exit_info.value.code)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU training path needs a CUDA GPU")
@pytest.mark.parametrize("method", ["lora", "adapter", "adapter_v2", "full"])
def test_methods_train_on_cuda(tiny, tmp_path, method):
    """The one training loop on a GPU (Fabric picks it by default) in bfloat16: the loss falls and the final
    checkpoint generates on the GPU."""
    from litgpt.api import LLM

    ckpt, data = tiny
    out = tmp_path / "out"
    extra = EXTRA[method] if method != "full" else []  # the CSV logger for every method
    main(["finetune", method, *fast_args(ckpt, data, out, *extra, "--precision", "bf16-true", steps=6)])
    losses = [loss for _, loss in sorted(read_csv_losses(out).items())]
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.02, losses
    llm = LLM.load(out / "final", distribute=None)
    llm.distribute(accelerator="cuda", precision="bf16-true")
    llm.prompt_style.stop_tokens = lambda tokenizer: ()
    assert len(llm.generate("Llamas eat", max_new_tokens=4, return_as_token_ids=True)) == 4


def test_an_output_layer_saved_as_the_embedding_trains_on_its_own(tmp_path):
    """Loaded, the two are one tensor (one copy in memory); frozen (LoRA) they stay one; trained, each gets its own
    copy and learns on its own (the established release's untied semantics)."""
    from litgpt.loading import load_model
    from litgpt.lora import LoRASettings, add_lora, mark_only_lora_as_trainable
    from litgpt.training import Method, separate_shared_trainables

    ckpt = make_checkpoint(tmp_path / "tied", tied=True)
    for dtype in (None, torch.bfloat16):
        model = load_model(ckpt, dtype=dtype)
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
        add_lora(model, LoRASettings(r=2))
        mark_only_lora_as_trainable(model)
        assert separate_shared_trainables(model) == 0
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
        model = load_model(ckpt, dtype=dtype)
        Method().prepare(model)
        assert separate_shared_trainables(model) == 1
        assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
        assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)

    data = make_json_data(tmp_path / "data")
    out = tmp_path / "out"
    main(["finetune", "full", *fast_args(ckpt, data, out, steps=2)])
    state = torch.load(out / "final" / "lit_model.pth")
    assert not torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])  # they trained apart


def test_only_intended_parameters_get_gradients(tiny):
    from litgpt.adapter import add_adapter, add_adapter_v2, mark_only_adapter_as_trainable
    from litgpt.loading import load_model
    from litgpt.lora import LoRASettings, add_lora, mark_only_lora_as_trainable

    ckpt, _ = tiny
    x = torch.randint(0, 300, (2, 10))
    setups = {
        "lora": (lambda m: (add_lora(m, LoRASettings(r=2)), mark_only_lora_as_trainable(m)), lambda k: "lora_" in k),
        "adapter": (
            lambda m: (add_adapter(m, 3, 1), mark_only_adapter_as_trainable(m)),
            lambda k: "adapter_wte" in k or "gating_factor" in k,
        ),
        "adapter_v2": (
            lambda m: (add_adapter_v2(m, 3, 1), mark_only_adapter_as_trainable(m, v2=True)),
            lambda k: "adapter" in k or "gating" in k or "norm" in k or "ln_f" in k,
        ),
    }
    for name, (setup, intended) in setups.items():
        model = load_model(ckpt)
        setup(model)
        model(x).sum().backward()
        for key, param in model.named_parameters():
            assert param.requires_grad == intended(key), (name, key)
            assert (param.grad is not None) == intended(key), (name, key)
        if name == "lora":
            assert not any("lora_" in k for k, p in model.named_parameters() if "qkv" not in k and "lora" in k)


@pytest.mark.parametrize("world_size", [1, 2])
def test_batches_grouped_by_length(world_size):
    """Grouped batches: each epoch still covers every sample, in a seeded order; each step's batches (one per rank)
    come from one length-sorted window, so padding nearly vanishes; a resumed sampler continues where it stopped."""
    from litgpt.training import ResumableBatchSampler

    lengths = torch.randint(5, 500, (1000,), generator=torch.Generator().manual_seed(0)).tolist()

    def batches(rank, lengths=lengths, epoch=0, start=0):
        sampler = ResumableBatchSampler(1000, 4, True, seed=3, rank=rank, world_size=world_size, lengths=lengths)
        sampler.epoch, sampler.start = epoch, start
        return list(sampler)

    per_rank = [batches(rank) for rank in range(world_size)]
    assert sorted(i for ranks in per_rank for b in ranks for i in b) == list(range(1000))
    assert per_rank[0] == batches(0) and per_rank[0] != batches(0, epoch=1)
    assert batches(0, start=7) == per_rank[0][7:]

    def padded(all_batches):  # tokens processed with right-padding to the longest sample of each step
        return sum(max(lengths[i] for b in step for i in b) * sum(len(b) for b in step) for step in all_batches)

    grouped = padded(list(zip(*per_rank)))
    random = padded(list(zip(*[batches(rank, lengths=None) for rank in range(world_size)])))
    assert grouped < 1.05 * sum(lengths) < 0.8 * random


def test_group_by_length_needs_lengths():
    from litgpt.errors import LitGPTError
    from litgpt.training import sample_lengths

    with pytest.raises(LitGPTError, match="group_by_length needs a dataset that knows its sample lengths"):
        sample_lengths(torch.utils.data.TensorDataset(torch.zeros(3)))


def test_qlora_gradients_equal_those_of_the_dequantized_model(tiny):
    """LoRA over bitsandbytes' 4-bit layers, after an inference call (a validation: where bitsandbytes' CPU kernel,
    which has no backward, would repack the codes), has the gradients of LoRA over float layers holding the
    dequantized codes."""
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (the test extra brings it)")
    from bitsandbytes.functional import dequantize_4bit

    from litgpt.loading import load_model
    from litgpt.lora import LoRASettings, add_lora, lora_state_dict, mark_only_lora_as_trainable
    from litgpt.quantize import BnbLinear, bnb_runs_on_cpu, quantize_model

    if not bnb_runs_on_cpu():
        pytest.skip("the installed bitsandbytes has no CPU backend")
    ckpt, _ = tiny
    torch.manual_seed(0)
    models = []
    for _ in range(2):
        model = load_model(ckpt, dtype=torch.float32)
        add_lora(model, LoRASettings(r=4, dropout=0.0, key=True, mlp=True, projection=True))
        mark_only_lora_as_trainable(model)
        models.append(model)
    quantized, plain = models
    for p in lora_state_dict(quantized).values():  # B starts at zero: give both the same non-zero update
        p.data.normal_(0, 0.1)
    plain.load_state_dict(lora_state_dict(quantized), strict=False)
    quantize_model(quantized, "bnb.nf4", device="cpu", dtype=torch.float32, use_kernel=False)
    with torch.no_grad():
        for name, layer in quantized.named_modules():
            if isinstance(layer, BnbLinear):
                codes = layer.inner.weight
                plain.get_submodule(name).weight.copy_(dequantize_4bit(codes.data, codes.quant_state))
    x = torch.randint(0, 300, (2, 12))
    quantized.eval()
    with torch.no_grad():
        quantized(x)
    grads = []
    for model in (quantized, plain):
        model.train()
        model(x, targets=torch.roll(x, -1, 1)).backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "native_bf16, quantize, expected",
    [(True, None, "bf16-mixed"), (True, "bnb.nf4", "bf16-true"), (False, None, "32-true"), (False, "bnb.nf4", "32-true")],
)
def test_default_training_precision_on_a_cpu_follows_its_bfloat16_support(monkeypatch, native_bf16, quantize, expected):
    from litgpt import kernels
    from litgpt.training import default_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(kernels, "native_bf16", lambda: native_bf16)
    assert default_precision(quantize) == expected


def _tiny_adapter_model(v2: bool = False, **overrides):
    from litgpt.adapter import add_adapter, add_adapter_v2
    from litgpt.config import Config
    from litgpt.model import GPT
    from tests.finetune_helpers import TINY_CONFIG

    torch.manual_seed(0)
    model = GPT(Config.from_name("tiny-llama-1.1b", **{**TINY_CONFIG, **overrides}))
    model.init_weights()
    (add_adapter_v2 if v2 else add_adapter)(model, 3, 0)
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.gating_factor.normal_()
    return model.eval()


def test_adapter_prefix_uses_the_established_layout():
    """The established release reads the projected prefix as n_query_groups blocks of (q_per_kv + 2) heads, the last
    two of a block being that group's key and value, and stores the gate as (1, 1, n_head, 1): its checkpoints must
    give here the numbers they gave there."""
    model = _tiny_adapter_model()  # 4 heads, 2 query groups, head size 16
    attn = model.transformer.h[0].attn
    assert attn.gating_factor.shape == (1, 1, 4, 1)
    hs, q_per_kv = 16, 2
    q = torch.randn(1, 4, 5, hs)
    with torch.no_grad():
        projected = attn.qkv(attn.adapter_wte.weight)  # (aT, (nh + 2 ng) hs)
        expected = []
        for head in range(4):
            block = projected[:, (head // q_per_kv) * (q_per_kv + 2) * hs :][:, : (q_per_kv + 2) * hs]
            key, value = block[:, q_per_kv * hs : (q_per_kv + 1) * hs], block[:, (q_per_kv + 1) * hs :]
            weights = torch.softmax(q[0, head] @ key.T / hs**0.5, dim=-1)
            expected.append(weights @ value)
        torch.testing.assert_close(attn.adapter_output(q)[0], torch.stack(expected))


def test_adapter_gate_of_earlier_releases_loads_transposed():
    from litgpt.adapter import is_adapter_param

    model = _tiny_adapter_model()
    x = torch.randint(0, 300, (1, 6))
    state = {k: v.clone() for k, v in model.state_dict().items() if is_adapter_param(k)}
    legacy = {k: (v.transpose(1, 2).contiguous() if k.endswith("gating_factor") else v) for k, v in state.items()}
    assert legacy["transformer.h.0.attn.gating_factor"].shape == (1, 4, 1, 1)
    with torch.no_grad():
        expected = model(x)
        for block in model.transformer.h:
            block.attn.gating_factor.zero_()
        model.load_state_dict(legacy, strict=False)
        torch.testing.assert_close(model(x), expected)


def test_adapter_v2_trains_the_norms_the_established_release_trains():
    from litgpt.adapter import mark_only_adapter_as_trainable

    model = _tiny_adapter_model(v2=True, norm_qk=True, post_attention_norm=True, post_mlp_norm=True)
    mark_only_adapter_as_trainable(model, v2=True)
    trained = {re.sub(r"^transformer\.(h\.\d+\.)?", "", k) for k, p in model.named_parameters() if p.requires_grad}
    norms = {k for k in trained if "adapter" not in k}
    assert norms == {"norm_1.weight", "norm_2.weight", "ln_f.weight", "attn.gating_factor"}


@pytest.mark.parametrize("method", ["adapter", "adapter_v2"])
def test_adapter_trains_on_a_quantized_base(tiny, tmp_path, method):
    """--quantize (accepted by the established finetune_adapter[_v2]) turns the frozen base into 4-bit layers."""
    import litgpt.quantize as quantize

    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (the test extra brings it)")
    if not torch.cuda.is_available() and not quantize.bnb_runs_on_cpu():
        pytest.skip("the installed bitsandbytes has no CPU backend")
    ckpt, data = tiny
    out = tmp_path / "out"
    extra = ("--quantize", "bnb.nf4", "--precision", "bf16-true", "--adapter_start_layer", "0")
    main(["finetune", method, *fast_args(ckpt, data, out, *extra, steps=2)])
    saved = torch.load(out / "final" / f"lit_model.pth.{method}", weights_only=True)
    assert saved["transformer.h.0.attn.gating_factor"].shape == (1, 1, 4, 1)
    assert not any(t.dtype == torch.uint8 for t in saved.values())  # only the trained float tensors


def test_max_time_stops_after_a_step_and_saves_the_final_checkpoint(tiny, tmp_path, capsys):
    """--train.max_time (established): training stops once that many seconds have passed; the run ends as usual.
    The Lightning.ai logger's --log.* fields of the established release are accepted (and said to be ignored)."""
    ckpt, data = tiny
    out = tmp_path / "out"
    extra = ("--train.max_time", "1e-6", "--log.teamspace", "team", "--log.log_model", "false")
    with pytest.warns(UserWarning, match="--log.teamspace is ignored"):
        main(["finetune", "lora", *fast_args(ckpt, data, out, *extra, steps=6)])
    assert "Max time" in capsys.readouterr().err
    assert sorted(read_csv_losses(out)) == [1, 2]  # one optimizer step (two micro-batches)
    assert (out / "final" / "lit_model.pth.lora").is_file()
    hparams = yaml.safe_load((out / "final" / "hyperparameters.yaml").read_text())
    assert hparams["train"]["max_time"] == 1e-6 and hparams["log"]["teamspace"] == "team"


def test_an_established_runs_hyperparameters_parse(tmp_path, capsys):
    """The train/log keys an established release writes to hyperparameters.yaml (max_time, the litlogger fields)."""
    config = tmp_path / "hparams.yaml"
    config.write_text(yaml.safe_dump({
        "train": {"max_time": None, "max_steps": 3},
        "log": {"project": None, "teamspace": None, "metadata": None, "log_model": False, "save_logs": True,
                "checkpoint_name": None},
    }))  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune_lora", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (None, 0)
    assert "save_logs: true" in capsys.readouterr().out
