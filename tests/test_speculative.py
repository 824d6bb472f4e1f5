"""Speculative decoding: greedy output is the target's own; sampling keeps working; the CLI reports acceptance."""

import pytest
import torch

from litgpt.errors import LitGPTError
from litgpt.generation import SamplingParams, generate
from litgpt.loading import load_model
from litgpt.speculative import speculative_generate
from tests.conftest import build_tiny_checkpoint


@pytest.fixture
def pair(tmp_path):
    target = load_model(build_tiny_checkpoint(tmp_path / "target", seed=0, n_layer=3))
    draft = load_model(build_tiny_checkpoint(tmp_path / "draft", seed=1, n_layer=1))
    return target, draft


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_speculative_equals_target_alone(pair, k):
    target, draft = pair
    prompt = torch.tensor([1, 17, 42, 99, 7])
    alone = generate(target, prompt, 30, temperature=0, include_prompt=False).tolist()
    fast, stats = speculative_generate(target, draft, prompt, 30, speculative_k=k)
    assert fast == alone
    assert 0 <= stats.accepted <= stats.proposed


@pytest.mark.parametrize("k", [1, 4])
def test_speculative_fills_the_whole_context(pair, k):
    """The proposals never run past the budget, so a prompt plus max_new_tokens may fill the context exactly (it
    wanted k + 1 spare positions)."""
    target, draft = pair
    prompt = torch.tensor([1, 17, 42, 99, 7])
    room = target.config.block_size - len(prompt)
    alone = generate(target, prompt, room, temperature=0, include_prompt=False).tolist()
    assert speculative_generate(target, draft, prompt, room, speculative_k=k)[0] == alone
    with pytest.raises(LitGPTError, match="exceeds the context"):
        speculative_generate(target, draft, prompt, room + 1, speculative_k=k)


def test_draft_equal_to_target_accepts_everything(pair):
    target, _ = pair
    prompt = torch.tensor([1, 5, 9])
    out, stats = speculative_generate(target, target, prompt, 21, speculative_k=4)
    assert stats.acceptance_rate == 1.0 and len(out) == 21


def test_sampling_and_stops(pair):
    target, draft = pair
    prompt = torch.tensor([1, 5, 9])
    g = torch.Generator().manual_seed(0)
    out, stats = speculative_generate(target, draft, prompt, 25, 3, SamplingParams(0.8, 50, 0.9), generator=g)
    assert len(out) == 25 and all(0 <= t < 320 for t in out)
    alone = generate(target, prompt, 25, temperature=0, include_prompt=False).tolist()
    stop = alone[6]
    cut, _ = speculative_generate(target, draft, prompt, 25, 3, stop_tokens=[[stop]])
    assert cut == alone[: alone.index(stop)]
    with pytest.raises(LitGPTError, match="speculative_k"):
        speculative_generate(target, draft, prompt, 5, 0)
    assert speculative_generate(target, draft, prompt, 0)[0] == []  # it returned one token


def test_cli_prints_acceptance_rate(tmp_path, capsys):
    from litgpt.__main__ import main

    target = build_tiny_checkpoint(tmp_path / "target", seed=0, n_layer=3)
    draft = build_tiny_checkpoint(tmp_path / "draft", seed=1, n_layer=1)
    main(["generate_speculatively", "--draft_model_checkpoint_dir", str(draft), "--target_model_checkpoint_dir",
          str(target), "--temperature", "0", "--max_new_tokens", "12", "--prompt", "Llamas eat", "--precision",
          "32-true"])  # fmt: skip
    captured = capsys.readouterr()
    assert "Acceptance rate:" in captured.err and "tokens/sec" in captured.err
    # the established spelling: both models as positional arguments; compiled steps, two samples, the same text
    main(["generate_speculatively", str(draft), str(target), "--temperature", "0", "--max_new_tokens", "12",
          "--prompt", "Llamas eat", "--num_samples", "2", "--compile", "true", "--precision", "32-true"])  # fmt: skip
    again = capsys.readouterr()
    assert again.out == captured.out * 2 and "Time for inference 2" in again.err
