"""The tutorial's chat flow, driven through a pseudo-terminal as a person would, and the terminal output of `chat`
and `generate`."""

import sys

import pexpect
import pytest

from litgpt.loading import resolve_checkpoint


@pytest.fixture
def smollm2_checkpoint(offline_workdir, monkeypatch):
    monkeypatch.chdir(offline_workdir)
    return offline_workdir / resolve_checkpoint("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_two_turn_chat_remembers_the_first_turn(smollm2_checkpoint, offline_workdir):
    child = pexpect.spawn(
        sys.executable,
        ["-m", "litgpt", "chat", str(smollm2_checkpoint), "--temperature", "0", "--max_new_tokens", "24"],
        cwd=str(offline_workdir), encoding="utf-8", timeout=300,
    )  # fmt: skip
    child.expect("Now chatting with SmolLM2-135M-Instruct.")
    child.expect("To exit, press 'Enter' on an empty prompt.")
    child.expect(">> Prompt: ")
    child.sendline("My name is Ada. Please remember it.")
    child.expect(">> Reply: ")
    child.expect(r"Time for inference: [\d.]+ sec total, [\d.]+ tokens/sec, \d+ tokens")
    child.expect(">> Prompt: ")
    child.sendline("What is my name?")
    child.expect(">> Reply: ")
    child.expect(r"Time for inference: [\d.]+ sec total")
    second = child.before
    assert "Ada" in second  # only answerable from the first turn
    child.expect(">> Prompt: ")
    child.sendline("")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_history_is_trimmed_with_a_notice(tiny_checkpoint, capsys):
    from litgpt.api import LLM
    from litgpt.chat import fit_history

    llm = LLM.load(tiny_checkpoint)  # block_size 128
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "llamas eat grass " * 8} for i in range(7)]
    fit_history(llm, history, None, max_new_tokens=20)
    assert len(history) < 7 and history[-1]["content"].startswith("llamas")
    assert len(llm.prompt_ids(history)) + 20 <= 128
    assert "Dropped the" in capsys.readouterr().out


def test_a_max_new_tokens_beyond_the_context_keeps_the_conversation(tiny_checkpoint, capsys):
    """It reserved all of max_new_tokens for the reply, so with one beyond the context every turn forgot the whole
    conversation; at most half the context is now kept for the reply (which is cut where the context ends)."""
    from litgpt.api import LLM
    from litgpt.chat import fit_history

    llm = LLM.load(tiny_checkpoint)  # block_size 128
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "How are you?"}]  # fmt: skip
    assert fit_history(llm, history, None, max_new_tokens=500)
    assert len(history) == 3 and "Dropped" not in capsys.readouterr().out


def test_a_prompt_longer_than_the_context_is_refused_and_the_chat_goes_on(tiny_checkpoint, capsys, monkeypatch):
    """It ended the whole chat with an error (the conversation lost)."""
    from litgpt.chat import main

    prompts = iter(["llamas eat grass " * 100, "Hi", "How are you?", ""])  # block_size 128
    monkeypatch.setattr("builtins.input", lambda prompt="": next(prompts))
    main(tiny_checkpoint, temperature=0, max_new_tokens=3, precision="32-true")
    out = capsys.readouterr().out
    assert "tokens but the context holds 128: shorten it" in out
    assert out.count(">> Reply: ") == 2


def test_generate_reports_tokens_not_printed_pieces(tiny_checkpoint, capsys, monkeypatch):
    """Tokens/sec counts generated tokens; it counted streamed text pieces (several tokens can make one piece)."""
    import types

    from litgpt import generate

    clock = iter([0.0, 2.0])  # the run takes 2 seconds
    monkeypatch.setattr(generate, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    generate.main(tiny_checkpoint, prompt="Hello", max_new_tokens=12, temperature=0, precision="32-true")
    captured = capsys.readouterr()
    from litgpt.api import LLM

    llm = LLM.load(tiny_checkpoint, distribute=None)
    llm.distribute(accelerator="cpu", precision="32-true")
    ids = llm.generate("Hello", max_new_tokens=12, temperature=0, return_as_token_ids=True)
    assert captured.out == llm.preprocessor.decode(ids) + "\n"
    assert f"2.00 sec total, {len(ids) / 2:.02f} tokens/sec" in captured.err


def test_chat_takes_the_established_compile_flag(capsys):
    import yaml

    from litgpt.__main__ import main

    with pytest.raises(SystemExit):
        main(["chat", "--compile", "true", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["compile"] is True


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["a", "b", "!submit"], "a\nb"),
        (["!quit"], None),
        (["a", "!EXIT"], None),  # an exit word leaves at once, in either case
        (["", "!submit"], None),  # an empty prompt leaves, as in single-line mode
        (["a", "b"], "a\nb"),  # end of input submits what was typed
    ],
)
def test_multiline_prompt_ends_at_submit_and_exit_words_leave(monkeypatch, lines, expected):
    from litgpt.chat import read_prompt

    feed = iter(lines)

    def fake_input(prompt=""):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert read_prompt(multiline=True) == expected


def test_chat_names_only_its_own_options(tiny_checkpoint):
    """chat has no --num_samples, yet its error named one: 'num_samples >= 1 ... got -1 and 1'."""
    from litgpt.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["chat", str(tiny_checkpoint), "--max_new_tokens", "-1"])
    assert str(exit_info.value.code) == "litgpt chat: error: --max_new_tokens must be at least 0, got -1"
    with pytest.raises(SystemExit, match="--num_samples must be at least 1, got 0$"):
        main(["generate", str(tiny_checkpoint), "--num_samples", "0"])


def test_generate_adapter_takes_the_folder_of_its_one_weights_file(tmp_path, capsys):
    """An existing --adapter_path folder was said not to exist."""
    from litgpt.__main__ import main
    from tests.conftest import build_tiny_checkpoint
    from tests.test_lora import lora_run

    base = build_tiny_checkpoint(tmp_path / "base")
    run = lora_run(tmp_path, base)
    greedy = ["--prompt", "Hi", "--max_new_tokens", "4", "--temperature", "0", "--precision", "32-true"]
    main(["generate_adapter", str(base), "--adapter_path", str(run / "lit_model.pth.lora"), *greedy])
    with_file = capsys.readouterr().out
    main(["generate_adapter", str(base), "--adapter_path", str(run), *greedy])
    assert capsys.readouterr().out == with_file
    with pytest.raises(SystemExit) as exit_info:
        main(["generate_adapter", str(base), "--adapter_path", str(base), *greedy])
    assert f"--adapter_path {base} is a folder that holds none of lit_model.pth.adapter, " in str(exit_info.value.code)


def test_generate_full_reads_the_config_and_tokenizer_of_the_base_folder(tmp_path, capsys):
    """A --finetuned_path whose folder has no model_config.yaml failed although the checkpoint_dir has one; the
    established release reads all but the weights from checkpoint_dir."""
    import shutil

    from litgpt.__main__ import main
    from tests.conftest import build_tiny_checkpoint

    base = build_tiny_checkpoint(tmp_path / "base")
    tuned = build_tiny_checkpoint(tmp_path / "tuned", seed=1)  # other weights, the same model
    greedy = ["--prompt", "Hi", "--max_new_tokens", "4", "--temperature", "0", "--precision", "32-true"]
    main(["generate", str(tuned), *greedy])
    expected = capsys.readouterr().out
    only_weights = tmp_path / "only-weights"
    only_weights.mkdir()
    shutil.copy(tuned / "lit_model.pth", only_weights / "lit_model.pth")
    main(["generate_full", str(base), "--finetuned_path", str(only_weights / "lit_model.pth"), *greedy])
    captured = capsys.readouterr()
    assert captured.out == expected
    assert f"Using the config and tokenizer of {base} with the weights {only_weights / 'lit_model.pth'}" in captured.err
    assert sorted(p.name for p in only_weights.iterdir()) == ["lit_model.pth"]
