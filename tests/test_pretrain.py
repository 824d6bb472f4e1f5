"""`litgpt pretrain` on one process (in-process, offline, CPU): learning on the shipped text, checkpoints and logs,
resume, tied embeddings, the tutorial's commands against a local hub stand-in, the pretraining data modules on local
fixtures, and convert_pretrained_checkpoint."""

from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml

from litgpt.__main__ import main
from tests.conftest import TINY_TEXT, build_tiny_tokenizer
from tests.test_download import TINYLLAMA, hub  # noqa: F401  (the local hub stand-in fixture)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "litgpt" / "data" / "shipped"

TINY_MODEL = dict(
    name="pretrain-tiny", block_size=64, vocab_size=1024, padded_vocab_size=1024, n_layer=2, n_head=2,
    n_query_groups=2, n_embd=48, head_size=24, intermediate_size=96, parallel_residual=False, bias=False,
    norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP", rotary_percentage=1.0,
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def model_args(**overrides) -> list[str]:
    args = []
    for key, value in {**TINY_MODEL, **overrides}.items():
        args += [f"--model_config.{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


def shipped_args(out: Path, cache: Path, steps: int, *extra: str) -> list[str]:
    return [
        "pretrain", *model_args(), "--tokenizer_dir", str(SHIPPED / "tokenizer"),
        "--data", "TextFiles", "--data.train_data_path", str(SHIPPED / "kjv"), "--data.cache_dir", str(cache),
        "--out_dir", str(out), "--precision", "32-true", "--devices", "1", "--logger_name", "csv",
        "--train.max_steps", str(steps), "--train.global_batch_size", "8", "--train.micro_batch_size", "8",
        "--train.max_seq_length", "32", "--train.lr_warmup_steps", "5", "--train.log_interval", "1",
        "--train.max_norm", "1.0", "--train.min_lr", "1e-3", "--optimizer.lr", "0.01",
        "--eval.interval", "1000", "--eval.max_iters", "2", *extra,
    ]  # fmt: skip


def train_losses(out_dir: Path) -> dict[int, float]:
    """step -> train loss logged when the step ended."""
    losses = {}
    for path in sorted(Path(out_dir).rglob("metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("loss") and row.get("step"):
                    losses[int(float(row["step"]))] = float(row["loss"])
    return losses


def test_bare_pretrain_lists_architectures(capsys):
    main(["pretrain"])
    names = capsys.readouterr().out.splitlines()
    assert "tiny-llama-1.1b" in names and names == sorted(names)
    main(["pretrain", "list"])
    assert capsys.readouterr().out.splitlines() == names
    with pytest.raises(SystemExit):  # the established spelling: the model name as the first argument
        main(["pretrain", "EleutherAI/pythia-14m", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["model_name"] == "EleutherAI/pythia-14m"
    # a reader that leaves early (`litgpt pretrain | head -1`): no BrokenPipeError traceback
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "litgpt", "pretrain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # gone before the list is written (the process is still importing)
    assert proc.wait(timeout=60) == 0 and b"Traceback" not in proc.stderr.read()


def test_tiny_model_learns_shipped_text_then_generates(tmp_path, capsys):
    out = tmp_path / "out"
    main(shipped_args(out, tmp_path / "cache", 100, "--train.save_interval", "50", "--eval.interval", "50"))
    losses = train_losses(out)
    first, last = losses[1], sum(losses[s] for s in range(91, 101)) / 10
    assert first > 6.5 and last < first - 1.5, losses  # ln(1024) = 6.93 at the start

    assert {p.name for p in out.iterdir()} >= {"step-00000050", "step-00000100", "final", "logs"}
    final = out / "final"
    for name in ("lit_model.pth", "model_config.yaml", "tokenizer.json", "hyperparameters.yaml"):
        assert (final / name).is_file(), name
    assert not (final / "training_state.pth").exists()
    assert (out / "step-00000050" / "training_state.pth").exists()
    hparams = yaml.safe_load((final / "hyperparameters.yaml").read_text())
    assert hparams["model_config"]["n_embd"] == 48 and hparams["data"]["class_path"] == "litgpt.data.TextFiles"
    assert hparams["train"]["max_steps"] == 100
    assert list(out.rglob("loss.png"))
    metrics = (next(out.rglob("metrics.csv"))).read_text()
    assert "throughput/tokens_per_sec" in metrics and "val_loss" in metrics

    err = capsys.readouterr().err
    assert "FLOPs per optimizer step" in err and "Throughput" in err

    main(["generate", str(final), "--prompt", "And God said", "--max_new_tokens", "8", "--precision", "32-true"])
    assert capsys.readouterr().out.strip()  # some text came out

    # convert: weights only, loadable by the Python API
    from litgpt import LLM

    converted = tmp_path / "converted"
    main(["convert_pretrained_checkpoint", str(out / "step-00000100"), str(converted)])
    assert not (converted / "training_state.pth").exists()
    ref = torch.load(final / "lit_model.pth")
    got = torch.load(converted / "lit_model.pth")
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    llm = LLM.load(str(converted))
    assert isinstance(llm.generate("And", max_new_tokens=3, top_k=1), str)


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path):
    cache = tmp_path / "cache"
    full = tmp_path / "full"
    main(shipped_args(full, cache, 6, "--train.save_interval", "3"))
    assert len(train_losses(full)) == 6
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "step-00000003", resumed / "step-00000003")
    main(shipped_args(resumed, cache, 6, "--train.save_interval", "3", "--resume", "auto"))
    a, b = train_losses(full), train_losses(resumed)
    assert sorted(b) == [4, 5, 6]
    for step in (4, 5, 6):
        assert b[step] == pytest.approx(a[step], abs=1e-6)
    wa, wb = torch.load(full / "final" / "lit_model.pth"), torch.load(resumed / "final" / "lit_model.pth")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_tied_embeddings_and_continued_pretraining(tmp_path):
    out = tmp_path / "tied"
    main(shipped_args(out, tmp_path / "cache", 2, "--train.tie_embeddings", "true"))
    state = torch.load(out / "final" / "lit_model.pth")
    assert torch.equal(state["transformer.wte.weight"], state["lm_head.weight"])
    # continue from it: the run starts from those weights (its first loss is the end of the previous run)
    more = tmp_path / "more"
    main([*shipped_args(more, tmp_path / "cache", 1), "--initial_checkpoint_dir", str(out / "final")])
    assert train_losses(more)[1] < train_losses(out)[1] - 0.1
    # weights of another architecture: a one-line error naming the tensors (was a traceback of size mismatches)
    with pytest.raises(SystemExit, match=r"does not match the model: .* missing tensor\(s\): transformer\.h\.2\."):
        main([*shipped_args(tmp_path / "other", tmp_path / "cache", 1), "--initial_checkpoint_dir", str(out / "final"),
              "--model_config.n_layer", "3"])  # fmt: skip


def test_real_tiny_llama_builds_on_meta_and_counts_flops():
    from litgpt.config import Config
    from litgpt.pretrain import measure_flops

    config = Config.from_name("tiny-llama-1.1b")
    flops = measure_flops(config, 1, 2048)
    approx = 6 * 1.1e9 * 2048  # 6 N T
    assert 0.8 * approx < flops < 1.6 * approx


# ------------------------------------------------------------------------------------------------ the tutorial
def test_tutorial_pretraining_commands(hub, tmp_path, monkeypatch, capsys):  # noqa: F811
    """`litgpt pretrain`, `litgpt download --repo_id TinyLlama/... --tokenizer_only true` and `litgpt pretrain
    --model_name tiny-llama-1.1b --data OpenWebText --tokenizer_dir checkpoints/...` as written, with a local hub,
    a local OpenWebText and (this being a CPU test) a 2-layer version of the tiny-llama-1.1b architecture."""
    import datasets

    import litgpt.pretrain
    from litgpt.config import Config

    tok_dir = build_tiny_tokenizer(tmp_path / "tok")
    hub.add(TINYLLAMA, {p.name: p.read_bytes() for p in tok_dir.iterdir()} | {"model.safetensors": b"W" * 100})
    monkeypatch.chdir(tmp_path)

    main(["pretrain"])
    assert "tiny-llama-1.1b" in capsys.readouterr().out.splitlines()

    main(["download", "--repo_id", TINYLLAMA, "--tokenizer_only", "true"])
    checkpoint = Path("checkpoints") / TINYLLAMA
    assert (checkpoint / "tokenizer.json").is_file() and not (checkpoint / "model.safetensors").exists()

    real = Config.from_name("tiny-llama-1.1b")
    shrunk = dict(n_layer=2, n_embd=64, n_head=4, n_query_groups=2, head_size=16, intermediate_size=128, block_size=64)
    monkeypatch.setattr(litgpt.pretrain, "named_config", lambda name: Config.from_name(name, **shrunk))
    documents = [f"Document {i}. " + TINY_TEXT[: 200 + 7 * i] for i in range(40)]
    calls = []

    def load_dataset(repo_id, split=None, **kwargs):
        calls.append((repo_id, split))
        return datasets.Dataset.from_dict({"text": documents})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    main([
        "pretrain", "--model_name", "tiny-llama-1.1b", "--data", "OpenWebText", "--tokenizer_dir", str(checkpoint),
        "--train.max_steps", "2", "--train.global_batch_size", "2", "--train.micro_batch_size", "2",
        "--data.val_split_fraction", "0.1",
    ])  # fmt: skip
    assert calls == [("Skylion007/openwebtext", "train")]
    final = Path("out/pretrain/final")
    config = yaml.safe_load((final / "model_config.yaml").read_text())
    assert config["name"] == "tiny-llama-1.1b" and config["vocab_size"] == real.vocab_size
    assert list(Path("out/pretrain/logs/tensorboard").rglob("events.out.tfevents.*"))  # the default logger
    assert list(Path("data/openwebtext").rglob("train.bin"))
    # the run's hyperparameters.yaml runs again as written (it held both --model_name and the resolved
    # --model_config, which were refused together); cached: a second run does not fetch again
    hparams = yaml.safe_load((final / "hyperparameters.yaml").read_text())
    assert hparams["model_name"] == "tiny-llama-1.1b" and hparams["model_config"] is None
    main([
        "pretrain", "--config", str(final / "hyperparameters.yaml"), "--train.max_steps", "1", "--out_dir",
        "out/again", "--logger_name", "csv",
    ])  # fmt: skip
    assert len(calls) == 1 and (Path("out/again/final") / "lit_model.pth").is_file()

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    assert "--train.max_tokens" in capsys.readouterr().out


@pytest.mark.parametrize(
    "option, message",
    [
        (["--precision", "fp17"], "Unknown precision 'fp17'; use one of 16, 16-mixed, 16-true, 32, 32-true, 64-true, "),
        (["--train.max_norm", "0"], "--train.max_norm must be a positive number (or null: no clipping), got 0.0"),
        (["--train.min_lr=-1e-5"], "--train.min_lr must be 0 or more, got -1e-05"),
        (["--train.global_batch_size", "12"], "--train.global_batch_size (12) must be a multiple of"),
    ],
)
def test_bad_pretrain_options_are_one_line_errors_that_leave_no_output(tmp_path, option, message):
    """Fabric's own list of precisions (with 'transformer-engine', 64, ...) was printed; a failed start left an
    empty --out_dir behind."""
    import re

    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=re.escape(message)) as exit_info:
        main(shipped_args(out, tmp_path / "cache", 1, *option))
    assert "\n" not in str(exit_info.value.code)
    assert not out.exists()


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--model_name", "pythia-14m", "--out_dir", str(tmp_path)])
    assert "--tokenizer_dir" in str(e.value)


# ------------------------------------------------------------------------------------------------ data modules
def connected(module, tokenizer_dir: Path, seq: int = 16, batch: int = 2):
    from litgpt.tokenizer import Tokenizer

    module.connect(Tokenizer(tokenizer_dir), batch_size=batch, max_seq_length=seq)
    module.prepare_data()
    module.setup()
    return module


def test_text_files_tokenize_once_into_blocks(tmp_path):
    from litgpt.data import TextFiles

    tok = build_tiny_tokenizer(tmp_path / "tok")
    texts = tmp_path / "texts"
    (texts / "sub").mkdir(parents=True)
    (texts / "a.txt").write_text(TINY_TEXT)
    (texts / "sub" / "b.txt").write_text(TINY_TEXT[::-1])
    data = connected(TextFiles(train_data_path=texts), tok)
    block = data.train_dataset[0]
    assert block.shape == (17,) and block.dtype == torch.long
    assert data.train_dataset[1][0] == block[-1]  # consecutive blocks share their boundary token
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (2, 17)
    assert len(data.val_dataset) > 0
    cache = list((texts / ".cache").rglob("*.bin"))
    assert cache
    stamp = {p: p.stat().st_mtime_ns for p in cache}
    connected(TextFiles(train_data_path=texts), tok)
    assert {p: p.stat().st_mtime_ns for p in cache} == stamp  # reused, not tokenized again

    # other or edited text is tokenized again (the cache was named after the tokenizer alone: stale tokens)
    (texts / "a.txt").write_text(TINY_TEXT * 2)
    longer = connected(TextFiles(train_data_path=texts), tok)
    assert len(longer.train_dataset) > len(data.train_dataset)
    for size, name in ((1, "short"), (3, "long")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "v.txt").write_text(TINY_TEXT * size)
    short = connected(TextFiles(train_data_path=texts, val_data_path=tmp_path / "short"), tok)
    long = connected(TextFiles(train_data_path=texts, val_data_path=tmp_path / "long"), tok)
    assert len(long.val_dataset) > len(short.val_dataset)


def test_tinystories_fetches_unpacks_and_splits(tmp_path, monkeypatch):
    import huggingface_hub

    from litgpt.data import TinyStories

    tok = build_tiny_tokenizer(tmp_path / "tok")
    archive = tmp_path / "TinyStories_all_data.tar.gz"
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        rows = [{"story": f"Story {i}-{j}. " + TINY_TEXT[: 100 + j], "summary": "x"} for j in range(10)]
        (shards / f"data{i:02d}.json").write_text(json.dumps(rows))
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(shards.iterdir()):
            tar.add(p, arcname=p.name)
    calls = []

    def fake_download(repo_id, filename, repo_type=None, local_dir=None, **kwargs):
        calls.append((repo_id, filename, repo_type))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        return str(shutil.copy(archive, Path(local_dir) / filename))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    data = connected(TinyStories(data_path=tmp_path / "ts"), tok)
    assert calls == [("roneneldan/TinyStories", "TinyStories_all_data.tar.gz", "dataset")]
    assert len(data.train_dataset) > 2 * len(data.val_dataset) > 0  # shard 00 validates, 01-02 train


def test_litdata_optimizes_once_then_streams_and_trains(tmp_path):
    pytest.importorskip("litdata")
    from litgpt.data import LitData

    tok = build_tiny_tokenizer(tmp_path / "tok")
    source = tmp_path / "raw"
    source.mkdir()
    for i in range(4):
        (source / f"doc{i}.txt").write_text(f"Text {i}. " + TINY_TEXT)
    (source / "rows.jsonl").write_text(
        "\n".join(json.dumps({"text": f"Row {i}. " + TINY_TEXT[:300]}) for i in range(5))
    )
    module = LitData(data_path=tmp_path / "optimized", split_names=("train", "val"), source_path=source, num_workers=0)
    data = connected(module, tok)
    assert (tmp_path / "optimized" / "train" / "index.json").is_file()
    assert (tmp_path / "optimized" / "val" / "index.json").is_file()
    assert data.train_dataset[0].shape == (17,) and len(data.val_dataset) > 0
    assert type(data).shuffle_in_loop is False
    shuffled = [tuple(data.train_dataset[i].tolist()) for i in range(len(data.train_dataset))]
    plain = [tuple(torch.as_tensor(data.train_dataset.dataset[i]).tolist()) for i in range(len(data.train_dataset))]
    assert shuffled != plain and sorted(shuffled) == sorted(plain)  # every block once, in a shuffled order

    # under torch.distributed litdata's own length is one rank's share; the loop shards indices itself, so the
    # dataset must keep the length of all blocks (each of 2 ranks read only the first half, twice over)
    from litdata.utilities.env import _DistributedEnv

    from litgpt.data.litdata import streaming_blocks

    two_ranks = _DistributedEnv(world_size=2, global_rank=1, num_nodes=1)
    with mock.patch.object(_DistributedEnv, "detect", classmethod(lambda cls: two_ranks)):
        blocks = streaming_blocks(tmp_path / "optimized" / "train", 17)
    assert blocks.dataset.distributed_env is two_ranks and len(blocks.dataset) < len(data.train_dataset)
    assert len(blocks) == len(data.train_dataset)
    assert torch.equal(torch.as_tensor(blocks[len(blocks) - 1]), torch.as_tensor(plain[-1]))

    out = tmp_path / "out"
    main([
        "pretrain", *model_args(vocab_size=320, padded_vocab_size=320), "--tokenizer_dir", str(tok),
        "--data", "LitData", "--data.data_path", str(tmp_path / "optimized"), "--data.split_names", "[train, val]",
        "--data.num_workers", "0", "--out_dir", str(out), "--devices", "1", "--logger_name", "csv",
        "--precision", "32-true", "--train.max_steps", "2", "--train.global_batch_size", "2",
        "--train.micro_batch_size", "2", "--train.max_seq_length", "16", "--eval.max_iters", "1",
    ])  # fmt: skip
    assert (out / "final" / "lit_model.pth").is_file()


def test_tinyllama_mixes_slimpajama_and_starcoder(tmp_path):
    pytest.importorskip("litdata")
    zstandard = pytest.importorskip("zstandard")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from litgpt.data import TinyLlama
    from litgpt.data.litdata import Mixture

    tok = build_tiny_tokenizer(tmp_path / "tok")
    raw = tmp_path / "raw"
    for split in ("train", "validation"):
        folder = raw / "SlimPajama-627B" / split / "chunk1"
        folder.mkdir(parents=True)
        lines = "\n".join(json.dumps({"text": f"{split} {i}. " + TINY_TEXT[:400]}) for i in range(6))
        (folder / "example_0.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    (raw / "starcoderdata" / "python").mkdir(parents=True)
    code = [f"def f{i}(a, b):\n    return a + b * {i}\n" * 8 for i in range(6)]
    pq.write_table(pa.table({"content": code}), raw / "starcoderdata" / "python" / "train-0.parquet")

    data = connected(TinyLlama(data_path=tmp_path / "data", raw_path=raw, num_workers=0), tok)
    for sub in ("slimpajama/train", "slimpajama/val", "starcoder"):
        assert (tmp_path / "data" / sub / "index.json").is_file()
    mixture = data.train_dataset.dataset
    assert isinstance(mixture, Mixture)
    picks = [mixture.locate(i)[0] for i in range(1000)]
    assert abs(picks.count(0) / 1000 - 0.693584) < 0.002
    assert data.train_dataset[0].shape == (17,) and len(data.val_dataset) > 0


def test_openwebtext_fetch_is_a_clear_error_offline(tmp_path, monkeypatch):
    import datasets

    from litgpt.data import OpenWebText
    from litgpt.errors import LitGPTError

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    tok = build_tiny_tokenizer(tmp_path / "tok")
    with pytest.raises(LitGPTError, match="Skylion007/openwebtext.*no network"):
        connected(OpenWebText(data_path=tmp_path / "owt"), tok)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config_hub" / "pretrain").glob("*.yaml")))
def test_config_hub_files_parse(name, capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--config", str(REPO / "config_hub" / "pretrain" / name), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["max_steps"] or printed["train"]["max_tokens"]
    assert printed["model_name"] or printed["model_config"]


def test_cpu_config_runs_on_the_shipped_text(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # its paths are relative to the repository root
    out = tmp_path / "kjv"
    main([
        "pretrain", "--config", "config_hub/pretrain/kjv-cpu.yaml", "--out_dir", str(out),
        "--data.cache_dir", str(tmp_path / "tokens"), "--train.max_steps", "2", "--eval.max_iters", "1",
    ])  # fmt: skip
    assert (out / "final" / "lit_model.pth").is_file()


def test_a_warmup_fraction_alone_replaces_the_pretrain_default_warmup():
    from litgpt.pretrain import Pretrain, _train_defaults
    from litgpt.training import TrainArgs

    train = _train_defaults()
    assert Pretrain.default_warmup_steps == train.lr_warmup_steps  # the value a fraction given alone comes with
    train.lr_warmup_fraction = 0.5
    assert train.warmup_steps(10, Pretrain.default_warmup_steps) == 5
    from litgpt.errors import LitGPTError

    with pytest.raises(LitGPTError, match="not both"):
        TrainArgs(lr_warmup_steps=7, lr_warmup_fraction=0.5).warmup_steps(10, Pretrain.default_warmup_steps)


@pytest.mark.parametrize(
    "saved, now, message",
    [
        ({"world_size": 1, "sharded": False}, (2, True), "saved by 1 process, this run has 2 process(es) with fsdp"),
        ({"world_size": 2, "sharded": False}, (1, False), "saved by 2 process(es) with ddp, this run has 1 process"),
        ("2 shards", (1, False), "saved by 2 process(es) with a sharded strategy (fsdp), this run has 1 process"),
        ({"world_size": 2, "sharded": True}, (2, True), None),
    ],
)
def test_resuming_on_other_processes_is_a_one_line_error(tmp_path, saved, now, message):
    """Resuming a training state on another number of processes or another kind of strategy failed with a
    traceback ("Is a directory", a shard-loading error)."""
    from types import SimpleNamespace

    from litgpt.errors import LitGPTError
    from litgpt.pretrain import Pretrain
    from litgpt.training import TRAINING_LAYOUT, TRAINING_STATE, check_layout

    if saved == "2 shards":  # a sharded checkpoint of an earlier release, without the layout file
        (tmp_path / TRAINING_STATE).mkdir()
        for rank in range(2):
            (tmp_path / TRAINING_STATE / f"__{rank}_0.distcp").write_bytes(b"")
    else:
        (tmp_path / TRAINING_STATE).write_bytes(b"")
        (tmp_path / TRAINING_LAYOUT).write_text(json.dumps(saved))
    fabric = SimpleNamespace(world_size=now[0])
    if message is None:
        check_layout(fabric, tmp_path, now[1], Pretrain.__new__(Pretrain))
        return
    with pytest.raises(LitGPTError) as error:
        check_layout(fabric, tmp_path, now[1], Pretrain.__new__(Pretrain))
    assert message in str(error.value) and "--initial_checkpoint_dir" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_established_microllama_data_module_name_parses(capsys):
    """The established config_hub/pretrain/microllama.yaml says `data: MicroLlama`: SlimPajama without StarCoder."""
    from litgpt.data import MicroLlama

    assert MicroLlama().use_starcoder is False
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--model_name", "pythia-14m", "--data", "MicroLlama", "--print_config"])
    assert exit_info.value.code in (0, None)
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["class_path"] == "litgpt.data.MicroLlama" and data["init_args"]["use_starcoder"] is False
