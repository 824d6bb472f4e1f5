"""The Python API on a tiny random checkpoint: generate / stream / batch / benchmark / save / strategies."""

import contextlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from litgpt.api import LLM, benchmark_dict_to_markdown_table
from litgpt.errors import LitGPTError

GREEDY = dict(temperature=0, max_new_tokens=20)


def load_float32(checkpoint) -> LLM:
    """One device in float32: the tests that compare two ways of computing the same tokens exactly (bfloat16, the
    default on CPUs with AVX512-BF16, rounds differently along each way)."""
    llm = LLM.load(checkpoint, distribute=None)
    llm.distribute(precision="32-true")
    return llm


def test_generate_stream_and_token_ids_agree(tiny_checkpoint):
    llm = LLM.load(tiny_checkpoint)
    text = llm.generate("Llamas eat", **GREEDY)
    ids = llm.generate("Llamas eat", return_as_token_ids=True, **GREEDY)
    assert isinstance(ids, torch.Tensor) and 0 < len(ids) <= 20
    assert text == llm.preprocessor.decode(ids)
    assert "".join(llm.generate("Llamas eat", stream=True, **GREEDY)) == text
    with pytest.raises(LitGPTError, match="top_p"):
        llm.generate("x", top_p=2.0)


def test_batched_generation_equals_one_by_one(tiny_checkpoint):
    llm = load_float32(tiny_checkpoint)
    prompts = ["Llamas eat", "The quick brown fox jumps over the", "def"]
    together = llm.generate(prompts, return_as_token_ids=True, **GREEDY)
    alone = [llm.generate(p, return_as_token_ids=True, **GREEDY) for p in prompts]
    assert [t.tolist() for t in together] == [a.tolist() for a in alone]


def test_an_empty_prompt_is_a_one_line_error(tiny_checkpoint):
    """A prompt that encodes to no tokens (a Default style without BOS): an IndexError before, and a batch row of
    garbage."""
    from litgpt.prompts import Default

    llm = LLM.load(tiny_checkpoint)
    llm.prompt_style = Default()
    llm.preprocessor.tokenizer.use_bos = False
    with pytest.raises(LitGPTError, match="The prompt encodes to no tokens"):
        llm.generate("", **GREEDY)
    with pytest.raises(LitGPTError, match="Prompt 0 encodes to no tokens"):
        llm.generate(["", "hi"], **GREEDY)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda llm: llm.generate("hi", top_k="5"), "top_k must be a positive integer or None, got '5'"),
        (lambda llm: llm.generate("hi", top_k=2.5), "top_k must be a positive integer"),
        (lambda llm: llm.generate("hi", max_new_tokens=2.5), "max_new_tokens must be a positive integer, got 2.5"),
        (lambda llm: llm.generate("hi", temperature="hot"), "temperature and top_p must be numbers"),
        (lambda llm: llm.generate([]), "no prompt to generate from"),
        (lambda llm: llm.generate([{"role": "user"}]), "Message 0 (user) has no 'content'; give each message its text."),
        (lambda llm: llm.generate([{"role": "user", "content": "hi"}, {"role": "assistant"}]), "Message 1 (assistant) has no"),
        (lambda llm: llm.distribute(accelerator="cpu", fixed_kv_cache_size=-1), "fixed_kv_cache_size must be a"),
        (lambda llm: llm.distribute(accelerator="cpu", devices="two"), "devices must be a positive integer"),
    ],
)
def test_wrong_argument_types_are_one_line_errors(tiny_checkpoint, call, message):
    """They raised TypeError/RuntimeError/ValueError from deep inside (or generate([]) generated anyway)."""
    llm = LLM.load(tiny_checkpoint)
    with pytest.raises(LitGPTError, match=re.escape(message)):
        call(llm)


def test_a_fixed_cache_size_survives_other_batch_sizes(tiny_checkpoint):
    """distribute(fixed_kv_cache_size=40) caps the cache's memory: a batch re-allocates it for two rows, not for the
    next 256 positions."""
    llm = LLM.load(tiny_checkpoint, distribute=None)
    llm.distribute(accelerator="cpu", fixed_kv_cache_size=40)
    lengths = lambda: {b.attn.kv_cache.k.shape[2] for b in llm.model.transformer.h}  # noqa: E731
    assert lengths() == {40}
    llm.generate(["hi", "hello there"], max_new_tokens=3, temperature=0)
    llm.generate("hi", max_new_tokens=3, temperature=0)
    assert lengths() == {40}


def test_benchmark_and_markdown_table(tiny_checkpoint, monkeypatch):
    from litgpt import generation

    llm = LLM.load(tiny_checkpoint)
    reused = []
    reusable = generation.reusable_prefix
    monkeypatch.setattr(generation, "reusable_prefix", lambda *a: reused.append(reusable(*a)) or reused[-1])
    text, stats = llm.benchmark(num_iterations=2, prompt="Llamas eat", top_k=1, max_new_tokens=5)
    assert reused == [0, 0]  # each iteration prefills its whole prompt (a plain generate would reuse the cache)
    assert llm.generate("Llamas eat", top_k=1, max_new_tokens=5) and reused[-1] > 0
    assert isinstance(text, str)
    for key in ("Seconds total", "Seconds to first token", "Tokens generated", "Inference speed in tokens/sec"):
        assert len(stats[key]) == 2
    assert "Peak resident memory in GB" in stats  # CPU: resident memory instead of GPU memory
    table = benchmark_dict_to_markdown_table({k: v[:1] for k, v in stats.items()})
    assert [c.strip() for c in table.splitlines()[0].split("|")[1:4]] == ["Metric", "Mean", "Std Dev"]
    assert "nan" not in table.lower() and "Tokens generated" in table


@pytest.mark.parametrize("native_bf16", [True, False], ids=["avx512-bf16", "no-bf16"])
def test_default_precision_on_a_cpu_follows_its_bfloat16_support(tiny_checkpoint, monkeypatch, native_bf16):
    from litgpt import kernels
    from litgpt.loading import default_dtype

    monkeypatch.setattr(kernels, "native_bf16", lambda: native_bf16)
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert default_dtype("cpu") == expected
    llm = LLM.load(tiny_checkpoint)
    assert {p.dtype for p in llm.model.parameters()} == {expected}
    assert len(llm.generate("Llamas eat", return_as_token_ids=True, **GREEDY)) > 0


def test_unplaced_model_and_strategy_errors(tiny_checkpoint):
    llm = LLM.load(tiny_checkpoint, distribute=None)
    with pytest.raises(LitGPTError, match="distribute"):
        llm.generate("hello")
    with pytest.raises(LitGPTError, match="generate_strategy"):
        llm.distribute(accelerator="cpu", devices=2)
    with pytest.raises(LitGPTError, match="generate_strategy must be"):
        llm.distribute(accelerator="cpu", generate_strategy="pipeline")


def test_sequential_strategy_matches_single_device(tiny_checkpoint):
    ref = load_float32(tiny_checkpoint).generate("Llamas eat", return_as_token_ids=True, **GREEDY)
    llm = LLM.load(tiny_checkpoint, distribute=None)
    llm.distribute(
        accelerator="cpu", devices=2, precision="32-true", generate_strategy="sequential", fixed_kv_cache_size=64
    )
    assert llm.generate("Llamas eat", return_as_token_ids=True, **GREEDY).tolist() == ref.tolist()
    hooks = [len(b._forward_pre_hooks) for b in llm.model.transformer.h]
    assert hooks == [1, 1]  # every stage hands activations over to its device


@pytest.mark.parametrize("groups", [2, 1], ids=["groups-split", "kv-replicated"])
def test_tensor_parallel_two_processes_match_one(tmp_path, groups):
    from tests.conftest import build_tiny_checkpoint

    tiny_checkpoint = build_tiny_checkpoint(tmp_path / "tiny", n_query_groups=groups, bias=groups == 1)
    ref = load_float32(tiny_checkpoint).generate("Llamas eat", return_as_token_ids=True, **GREEDY)
    script = tmp_path / "tp.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import torch
        import torch.distributed as dist
        from litgpt.api import LLM

        if __name__ == "__main__":
            torch.manual_seed(1234)
            llm = LLM.load({str(tiny_checkpoint)!r}, distribute=None)
            llm.distribute(accelerator="cpu", devices=2, precision="32-true", generate_strategy="tensor_parallel")
            sampled = llm.generate("Llamas eat", temperature=0.8, top_k=50, max_new_tokens=20, return_as_token_ids=True)
            greedy = llm.generate("Llamas eat", temperature=0, max_new_tokens=20, return_as_token_ids=True)
            with open({str(tmp_path)!r} + f"/out.{{dist.get_rank()}}", "w") as f:
                f.write(repr((greedy.tolist(), sampled.tolist())))
            llm.save({str(tmp_path / "saved")!r})
    """))
    torch.manual_seed(1234)
    one = load_float32(tiny_checkpoint)
    ref_sampled = one.generate("Llamas eat", temperature=0.8, top_k=50, max_new_tokens=20, return_as_token_ids=True)
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=300, capture_output=True)
    outs = [eval((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]
    assert outs[0] == outs[1]  # ranks agree, also when sampling
    assert outs[0] == (ref.tolist(), ref_sampled.tolist())  # and equal one process seeded alike, sampled too
    # save() gathers the slices: the folder holds the whole model (each process wrote its slice before)
    saved, original = (torch.load(folder / "lit_model.pth") for folder in (tmp_path / "saved", tiny_checkpoint))
    assert saved.keys() == original.keys()
    for key in original:
        assert torch.equal(saved[key], original[key]), key


def test_random_init_save_and_reload(tiny_checkpoint, tmp_path):
    llm = LLM.load("pythia-14m", init="random", tokenizer_dir=tiny_checkpoint, distribute=None)
    with pytest.raises(LitGPTError, match="init='random'"):
        llm.distribute(accelerator="cpu", devices=2, generate_strategy="sequential")
    llm.distribute(accelerator="cpu")
    llm.save(tmp_path / "saved")
    again = LLM.load(tmp_path / "saved")
    torch.testing.assert_close(again.model.lm_head.weight, llm.model.lm_head.weight)
    assert (tmp_path / "saved" / "prompt_style.yaml").is_file()
    with pytest.raises(LitGPTError, match="tokenizer_dir"):
        LLM.load("pythia-14m", init="random")


def test_forward_returns_logits_and_shifted_loss(tiny_checkpoint):
    llm = LLM.load(tiny_checkpoint)
    ids = torch.randint(0, 320, (2, 12))
    logits, loss = llm(ids, ids)
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_real_model_sequential_and_tensor_parallel_match_one_process(offline_workdir, tmp_path, monkeypatch):
    """SmolLM2-135M-Instruct (9 heads in 3 groups: an uneven split over 2 processes)."""
    from litgpt.loading import resolve_checkpoint

    monkeypatch.chdir(offline_workdir)
    checkpoint = (offline_workdir / resolve_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct")).resolve()
    prompt = "What food do llamas eat?"
    ref = load_float32(checkpoint).generate(prompt, return_as_token_ids=True, **GREEDY).tolist()
    llm = LLM.load(checkpoint, distribute=None)
    llm.distribute(accelerator="cpu", devices=2, precision="32-true", generate_strategy="sequential")
    assert llm.generate(prompt, return_as_token_ids=True, **GREEDY).tolist() == ref
    script = tmp_path / "tp_real.py"
    script.write_text(textwrap.dedent(f"""
        import torch.distributed as dist
        from litgpt.api import LLM

        if __name__ == "__main__":
            llm = LLM.load({str(checkpoint)!r}, distribute=None)
            llm.distribute(accelerator="cpu", devices=2, precision="32-true", generate_strategy="tensor_parallel")
            out = llm.generate({prompt!r}, temperature=0, max_new_tokens=20, return_as_token_ids=True)
            with open({str(tmp_path)!r} + f"/real.{{dist.get_rank()}}", "w") as f:
                f.write(repr(out.tolist()))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=600, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [eval((tmp_path / f"real.{r}").read_text()) for r in (0, 1)] == [ref, ref]


def test_missing_checkpoint_folder_is_named(tmp_path, monkeypatch):
    """A path that is no folder gets a one-line error naming it (and the download command for a known model), never
    a Hub lookup of the path as a repository id."""
    from litgpt import download

    monkeypatch.setattr(download, "download_from_hub", lambda *a, **k: pytest.fail("looked up the Hub"))
    missing = tmp_path / "checkpoints" / "google" / "gemma-3-270m"
    with pytest.raises(LitGPTError, match=r"does not exist\. Download it first: litgpt download google/gemma-3-270m"):
        LLM.load(missing)
    with pytest.raises(LitGPTError, match=r"'\./nowhere' does not exist\. Check the path"):
        LLM.load("./nowhere")


def test_a_missing_folder_that_reads_like_a_repo_id_says_both(tmp_path, monkeypatch):
    """'fx/nope' (no such folder) was reported only as 'Cannot reach the Hugging Face Hub ... (no network?)'."""
    from huggingface_hub import constants

    from litgpt import download
    from litgpt.loading import resolve_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fx").mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    here = f"'fx/nope' is not a folder here ({tmp_path / 'fx' / 'nope'}) nor in checkpoints/fx/nope, and "
    with pytest.raises(LitGPTError) as e:
        LLM.load("fx/nope")
    assert str(e.value) == here + "the Hugging Face Hub was not asked (HF_HUB_OFFLINE is set). Check the path, or the repo id"
    with pytest.raises(LitGPTError, match=re.escape(here)):  # pretrain --tokenizer_dir fx/nope
        resolve_checkpoint("fx/nope", tokenizer_only=True)

    def no_such_repo(repo_id, **kwargs):
        raise download.HubLookupError("Repository not found", f"the Hugging Face Hub has no repository {repo_id}")

    monkeypatch.setattr(download, "download_from_hub", no_such_repo)
    with pytest.raises(LitGPTError, match=re.escape(here + "the Hugging Face Hub has no repository fx/nope.")):
        LLM.load("fx/nope")


def test_a_config_that_does_not_fit_the_weights_is_a_one_line_error(tiny_checkpoint, tmp_path):
    """A model_config.yaml edited away from its weights raised a size-mismatch RuntimeError of 40 lines; an empty
    one was read as the default Config (a 4096-wide model) and failed the same way."""
    import shutil

    import yaml

    folder = tmp_path / "edited"
    shutil.copytree(tiny_checkpoint, folder)
    config = yaml.safe_load((folder / "model_config.yaml").read_text())
    config["intermediate_size"] += 32
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(LitGPTError, match=r"tensor transformer\.h\.0\.mlp\..* has shape .* but .* expects"):
        LLM.load(folder)
    (folder / "model_config.yaml").write_text("")
    with pytest.raises(LitGPTError, match="model_config.yaml is empty"):
        LLM.load(folder)


def test_an_abandoned_stream_closed_later_records_no_prefix(tiny_checkpoint):
    """A stream left after one piece and closed (by garbage collection) after another generation recorded its own
    prompt as the cache's content, fingerprinted over the other generation's keys: the next run of its prompt reused
    them."""
    llm = load_float32(tiny_checkpoint)
    a, b = "Llamas eat", "The quick brown fox jumps over the"
    expected = llm.generate(a, **GREEDY)
    stream = llm.generate(a, stream=True, **GREEDY)
    next(stream)
    llm.generate(b, **GREEDY)
    stream.close()
    assert llm.model.cached_prefix.tokens[: len(llm.prompt_ids(b))] == llm.prompt_ids(b).tolist()  # still b's
    assert llm.generate(a, **GREEDY) == expected


def test_a_stream_resumed_after_another_generation_is_an_error(tiny_checkpoint):
    """It continued silently from the other prompt's KV cache."""
    llm = load_float32(tiny_checkpoint)
    stream = llm.generate("Llamas eat", stream=True, return_as_token_ids=True, **GREEDY)
    next(stream)
    llm.generate("The quick brown fox jumps over the", **GREEDY)
    with pytest.raises(LitGPTError, match="finish or close the stream before starting another generation"):
        list(stream)
    finished = llm.generate("Llamas eat", stream=True, **GREEDY)  # one that runs to its end is not affected
    assert "".join(finished) == llm.generate("Llamas eat", **GREEDY)


def test_distribute_after_compile_compiles_the_new_model(tiny_checkpoint):
    """The compiled decode step kept running the model distribute() replaced (its cache held the last prompt)."""
    llm = load_float32(tiny_checkpoint)
    expected = llm.generate("Llamas eat", **GREEDY)
    llm.compile(backend="eager")
    llm.generate("The quick brown fox jumps over the", **GREEDY)
    llm.distribute(accelerator="cpu", precision="32-true", fixed_kv_cache_size=64)
    assert llm.decode_fn is not None and llm.decode_fn._orig_mod is llm.model
    assert llm.generate("Llamas eat", **GREEDY) == expected


@pytest.mark.parametrize("num_iterations", [0, -2, "3", 2.5])
def test_benchmark_checks_num_iterations(tiny_checkpoint, num_iterations):
    llm = LLM.load(tiny_checkpoint)
    with pytest.raises(LitGPTError, match=re.escape(f"num_iterations must be a positive integer, got {num_iterations!r}")):
        llm.benchmark(num_iterations=num_iterations, prompt="hi", max_new_tokens=2)


def test_benchmark_of_a_list_of_prompts_says_it_takes_one(tiny_checkpoint):
    llm = LLM.load(tiny_checkpoint)
    with pytest.raises(LitGPTError, match="^benchmark takes one prompt") as error:
        llm.benchmark(prompt=["hi", "there"], max_new_tokens=2)
    assert "stream" not in str(error.value)
    messages = [{"role": "user", "content": "hi"}]  # one prompt as a message list is fine
    assert llm.benchmark(prompt=messages, max_new_tokens=2)[1]["Tokens generated"]


def test_save_to_a_file_and_too_many_devices_are_one_line_errors(tiny_checkpoint, tmp_path, capsys):
    llm = LLM.load(tiny_checkpoint, distribute=None)
    with pytest.raises(LitGPTError, match="2 layers: use at most 2 devices"):
        llm.distribute(accelerator="cpu", devices=100, generate_strategy="sequential")
    with pytest.raises(LitGPTError, match="cannot split 4 heads"):
        llm.distribute(accelerator="cpu", devices=3, generate_strategy="tensor_parallel")
    assert "Using" not in capsys.readouterr().err  # checked before it says how many devices it uses
    llm.distribute(accelerator="cpu")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LitGPTError, match="afile is a file, not a folder"):
        llm.save(tmp_path / "afile")


def test_tokenizer_dir_as_a_model_name_is_found_in_checkpoints(tiny_checkpoint, tmp_path, monkeypatch):
    """A name (org/name under checkpoints/) worked for init="random" only; a pretrained load took it as a path."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints" / "org" / "tok")
    llm = LLM.load(tiny_checkpoint, tokenizer_dir="org/tok", distribute=None)
    assert Path(llm.tokenizer.checkpoint_dir).resolve() == (tmp_path / "checkpoints" / "org" / "tok").resolve()


def test_save_copies_config_json_only_from_the_models_own_folder(tiny_checkpoint, tmp_path):
    """A tokenizer borrowed from another model brought that model's config.json (convert_from_litgpt then read the
    wrong architecture)."""
    import json
    import shutil

    tokenizer = tmp_path / "other-model"
    shutil.copytree(tiny_checkpoint, tokenizer)
    (tokenizer / "config.json").write_text(json.dumps({"model_type": "other"}))
    llm = LLM.load("pythia-14m", init="random", tokenizer_dir=tokenizer)
    llm.save(tmp_path / "random")
    assert not (tmp_path / "random" / "config.json").exists()
    assert (tmp_path / "random" / "tokenizer.json").is_file() or (tmp_path / "random" / "tokenizer.model").is_file()
    (tiny_checkpoint / "config.json").write_text(json.dumps({"model_type": "llama"}))
    pretrained = LLM.load(tiny_checkpoint, tokenizer_dir=tokenizer)
    pretrained.save(tmp_path / "own")
    assert json.loads((tmp_path / "own" / "config.json").read_text()) == {"model_type": "llama"}


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_quantized_model_saves_dequantized_weights(tiny_checkpoint, tmp_path, mode):
    """It wrote the codes (qweight, scales) under the float config, a folder LLM.load refused."""
    llm = LLM.load(tiny_checkpoint, distribute=None)
    llm.distribute(accelerator="cpu", precision="32-true", quantize=mode)
    llm.save(tmp_path / "saved")
    again = LLM.load(tmp_path / "saved", distribute=None)
    again.distribute(accelerator="cpu", precision="32-true")
    for name in ("lm_head", "transformer.h.0.attn.qkv", "transformer.h.1.mlp.proj"):
        want = llm.model.get_submodule(name).dequantize()
        torch.testing.assert_close(again.model.get_submodule(name).weight, want, rtol=0, atol=0)
    assert len(again.generate("Llamas eat", **GREEDY)) > 0


def _lightning_checkpoint(folder, state: dict):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {f"llm.model.{k}": v for k, v in state.items()}, "epoch": 0}, folder / "step=1.ckpt")
    return folder / "step=1.ckpt"


def test_trainer_checkpoint_of_another_model_or_a_folder(tiny_checkpoint, tmp_path):
    """Another model size gave a 34-line size-mismatch RuntimeError; a folder 'does not exist' as a weights file."""
    from tests.conftest import build_tiny_checkpoint

    other = build_tiny_checkpoint(tmp_path / "wider", n_embd=128, head_size=32)
    wrong = _lightning_checkpoint(tmp_path / "other-run", torch.load(other / "lit_model.pth"))
    llm = LLM.load(tiny_checkpoint, distribute=None)
    with pytest.raises(LitGPTError, match=r"has shape .* but tiny-llama expects .*trained from another model") as e:
        llm.trainer_setup(trainer_ckpt=wrong)
    assert len(str(e.value).splitlines()) == 1
    state = {k: v + 1 for k, v in torch.load(tiny_checkpoint / "lit_model.pth").items()}
    _lightning_checkpoint(tmp_path / "run" / "version_0" / "checkpoints", state)
    llm.trainer_setup(trainer_ckpt=tmp_path / "run")  # the one checkpoint inside the folder
    torch.testing.assert_close(llm.model.lm_head.weight, state["lm_head.weight"])
    _lightning_checkpoint(tmp_path / "run" / "version_1" / "checkpoints", state)
    with pytest.raises(LitGPTError, match="is a folder with 2 .ckpt files: pass the checkpoint file itself"):
        llm.trainer_setup(trainer_ckpt=tmp_path / "run")


@pytest.mark.parametrize("command", ["generate_tp", "generate_sequentially"])
def test_spread_generate_commands_print_the_reply_once(tiny_checkpoint, tmp_path, command):
    """Every tensor-parallel process computes each token; only rank 0 prints it (both printed, interleaved)."""
    alone = subprocess.run(
        [sys.executable, "-m", "litgpt", "generate", str(tiny_checkpoint), "--temperature", "0", "--max_new_tokens", "12",
         "--precision", "32-true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    spread = subprocess.run(
        [sys.executable, "-m", "litgpt", command, str(tiny_checkpoint), "--temperature", "0", "--max_new_tokens", "12",
         "--precision", "32-true", "--devices", "2", "--accelerator", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert alone.returncode == 0 and spread.returncode == 0, spread.stderr[-2000:]
    assert spread.stdout == alone.stdout and alone.stdout.strip()
    assert spread.stderr.count("Time for inference") == 1


def test_a_batch_row_gets_the_tokens_it_would_get_alone(tiny_checkpoint):
    """Where the context leaves a long prompt less room than max_new_tokens, the other rows of the batch were cut to
    that room too (silently); each row now gets what it gets alone, and the cut is said in a warning."""
    from litgpt.errors import LitGPTWarning

    llm = load_float32(tiny_checkpoint)  # block_size 128
    prompts = ["Llamas eat", "llamas eat grass " * 7, "Hi", "llamas eat grass " * 7 + "and hay"]
    with pytest.warns(LitGPTWarning, match="max_new_tokens=60 does not fit in the context of 128 tokens"):
        batch = llm.generate(prompts, temperature=0, max_new_tokens=60, return_as_token_ids=True)
    for prompt, row in zip(prompts, batch):
        with pytest.warns(LitGPTWarning) if len(llm.prompt_ids(prompt)) > 128 - 60 else contextlib.nullcontext():
            alone = llm.generate(prompt, temperature=0, max_new_tokens=60, return_as_token_ids=True)
        assert row.tolist() == alone.tolist()
    longest = max(len(llm.prompt_ids(p)) for p in prompts)
    assert len(batch[0]) > 128 - longest  # more than the room the longest prompt leaves (all rows had that)


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_distribute_places_the_model_on_the_current_cuda_device(tiny_checkpoint):
    """`litgpt serve --devices 2` sets each replica's device before distribute(), `evaluate --device cuda:1` too; the
    model went to cuda:0 whatever was set."""
    torch.cuda.set_device(1)
    try:
        llm = LLM.load(tiny_checkpoint, distribute=None)
        llm.distribute(accelerator="cuda")
        assert {p.device for p in llm.model.parameters()} == {torch.device("cuda", 1)}
    finally:
        torch.cuda.set_device(0)
