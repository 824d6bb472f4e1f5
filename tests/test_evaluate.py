"""`litgpt evaluate`: the lm-eval wrapper's scores against direct computations, and a local task end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import mc_task_yaml

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval)")

from litgpt.evaluate import LitEvalLM  # noqa: E402


def req(*args):
    return SimpleNamespace(args=args)


@pytest.fixture
def tiny(tiny_checkpoint):
    from litgpt.loading import load_model
    from litgpt.tokenizer import Tokenizer

    model = load_model(tiny_checkpoint, device="cpu", dtype=torch.float32).eval()
    return model, Tokenizer(tiny_checkpoint)


def direct_logprob(model, ids: list[int], n: int) -> float:
    """Sum of log-softmax over the last ``n`` tokens of ``ids``, from one plain forward pass."""
    with torch.inference_mode():
        logits = model(torch.tensor([ids[:-1]]))[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[p, ids[p + 1]]) for p in range(len(ids) - 1 - n, len(ids) - 1))


def test_loglikelihood_matches_direct_computation(tiny):
    model, tok = tiny
    pairs = [("Llamas eat", " grass"), ("The quick brown", " fox jumps"), ("def add(a, b):", "\n    return a + b"),
             ("They live in the ", "Andes"), ("", "Llamas eat grass")]  # fmt: skip
    lm1 = LitEvalLM(model, tok, batch_size=1)
    got = lm1.loglikelihood([req(*p) for p in pairs])
    batched = LitEvalLM(model, tok, batch_size=3).loglikelihood([req(*p) for p in pairs])
    for (ctx, cont), (logprob, greedy), (logprob_b, greedy_b) in zip(pairs, got, batched):
        whole = tok.encode(ctx + cont).tolist()  # BOS + the joint encoding
        stripped = ctx.rstrip(" ")
        n_ctx = len(tok.encode(stripped).tolist()) if stripped else 1
        assert whole[:n_ctx] == tok.encode(stripped).tolist()[:n_ctx]
        expected = direct_logprob(model, whole, len(whole) - n_ctx)
        assert logprob == pytest.approx(expected, abs=1e-3)
        assert logprob_b == pytest.approx(logprob, abs=1e-3) and greedy_b == greedy
        assert logprob < 0
    # a trailing space moves to the continuation: same split as without it
    ctx, cont = lm1.encode_pair("They live in the ", "Andes")
    assert ctx + cont == tok.encode("They live in the Andes").tolist()


def test_greedy_flag(tiny):
    model, tok = tiny
    lm = LitEvalLM(model, tok)
    ids = tok.encode("Llamas eat").tolist()
    with torch.inference_mode():
        best = int(model(torch.tensor([ids]))[0, -1].argmax())
    text = tok.decode([best])
    (logprob, greedy), = lm.loglikelihood([req("Llamas eat", text)])  # fmt: skip
    ctx, cont = lm.encode_pair("Llamas eat", text)
    if cont == [best]:  # the decoded piece re-encodes to the same single token
        assert greedy
    assert lm.loglikelihood([req("Llamas eat", "")]) == [(0.0, True)]


def test_loglikelihood_rolling_longer_than_context(tiny):
    model, tok = tiny
    text = "Llamas eat grass, leaves and shrubs. They live in the Andes of South America. " * 4
    tokens = [tok.bos_id] + tok.encode(text, bos=False).tolist()
    assert len(tokens) > 100
    lm = LitEvalLM(model, tok, max_length=32, batch_size=4)
    windows = lm.rolling_windows(tokens)
    assert len(windows) == -(-(len(tokens) - 1) // 32)
    assert sum(n for _, n in windows) == len(tokens) - 1  # every token scored once
    assert all(len(w) <= 33 for w, _ in windows)
    (total,) = lm.loglikelihood_rolling([req(text)])
    expected = sum(direct_logprob(model, w, n) for w, n in windows)
    assert total == pytest.approx(expected, abs=1e-2)
    # with a context that holds it all, the rolling score is the plain log-likelihood of the whole text
    (full,) = LitEvalLM(model, tok, max_length=128).loglikelihood_rolling([req(text[:150])])
    short = [tok.bos_id] + tok.encode(text[:150], bos=False).tolist()
    assert full == pytest.approx(direct_logprob(model, short, len(short) - 1), abs=1e-2)


def test_generate_until_respects_until(tiny):
    model, tok = tiny
    lm = LitEvalLM(model, tok, batch_size=2)
    free = lm.generate_until([req("Llamas eat", {"max_gen_toks": 20})])[0]
    assert len(free) > 4
    stop = free[3:5]
    cut = free.split(stop, 1)[0]
    outs = lm.generate_until(
        [req("Llamas eat", {"until": [stop], "max_gen_toks": 20}), req("Llamas eat", {"until": stop, "max_gen_toks": 20}),
         req("The quick", {"until": ["\n\n"], "max_gen_toks": 3, "do_sample": False})]
    )  # fmt: skip
    assert outs[0] == cut and outs[1] == cut
    assert len(tok.encode(outs[2], bos=False)) <= 3


def write_local_task(folder: Path) -> Path:
    """A 6-question multiple-choice task read from a local JSON Lines file: works offline."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"question": "What do llamas eat?", "choices": ["grass", "rocks", "metal"], "answer": 0},
        {"question": "Where do llamas live?", "choices": ["the sea", "the Andes", "the moon"], "answer": 1},
        {"question": "What does add(a, b) return?", "choices": ["a - b", "a * b", "a + b"], "answer": 2},
        {"question": "What jumps over the lazy dog?", "choices": ["the quick brown fox", "a cat"], "answer": 0},
        {"question": "Which continent has the Andes?", "choices": ["Europe", "South America"], "answer": 1},
        {"question": "What color is the fox?", "choices": ["brown", "blue", "green"], "answer": 0},
    ]
    data = folder / "tiny_mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny_mc.yaml").write_text(mc_task_yaml("tiny_mc", data))
    return folder


def test_local_task_end_to_end(tiny_checkpoint, tmp_path, capsys):
    from litgpt.__main__ import main

    tasks = write_local_task(tmp_path / "tasks")
    out = tmp_path / "eval"
    main(["evaluate", str(tiny_checkpoint), "--tasks", "tiny_mc", "--include_path", str(tasks), "--out_dir", str(out),
          "--batch_size", "4", "--num_fewshot", "1", "--limit", "5", "--dtype", "float32", "--device", "cpu"])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    acc = results["results"]["tiny_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    assert results["n-shot"]["tiny_mc"] == 1
    assert "tiny_mc" in capsys.readouterr().out  # the results table

    # default output folder: `evaluate` inside the checkpoint; int8 weights work too
    main(["evaluate", str(tiny_checkpoint), "--tasks", "tiny_mc", "--include_path", str(tasks), "--quantize", "int8"])
    assert "tiny_mc" in json.loads((tiny_checkpoint / "evaluate" / "results.json").read_text())["results"]


def test_listing_and_unknown_tasks(tiny_checkpoint, tmp_path, capsys):
    from litgpt.__main__ import main

    tasks = write_local_task(tmp_path / "tasks")
    main(["evaluate", str(tiny_checkpoint), "--include_path", str(tasks)])
    listing = capsys.readouterr().out
    assert "tiny_mc" in listing and "hellaswag" in listing
    with pytest.raises(SystemExit, match="Unknown task 'tiny_mcq'"):
        main(["evaluate", str(tiny_checkpoint), "--tasks", "tiny_mcq", "--include_path", str(tasks)])


def test_bad_evaluation_settings_and_an_offline_task_are_one_line_errors(tiny_checkpoint, tmp_path, monkeypatch):
    """They came out of lm-eval as tracebacks (a negative --limit, a Hub task offline), or only after the whole
    evaluation had run (--save_filepath a folder)."""
    import lm_eval

    from litgpt.__main__ import main

    tasks = write_local_task(tmp_path / "tasks")
    run = ["evaluate", str(tiny_checkpoint), "--tasks", "tiny_mc", "--include_path", str(tasks), "--dtype", "float32"]
    with pytest.raises(SystemExit, match="limit must be positive"):
        main([*run, "--limit", "-1"])
    # each names its option and the bad value (one sentence named them all), in the words of evaluate's options
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for option, message in [
        (["--limit", "-1"], "--limit must be positive (a count, or a fraction of each task below 1), got -1"),
        (["--batch_size", "0"], "--batch_size must be a positive integer or 'auto', got 0"),
        (["--num_fewshot", "-1"], "--num_fewshot must be 0 or more, got -1"),
        (["--device", "cuda"], "--device cuda but no CUDA device is visible; use --device cpu (or leave it out)"),
        (["--device", "tpu"], "--device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (["--dtype", "fp17"], "--dtype 'fp17' is not a known dtype; use one of 16, 16-true, 32, 32-true, bf16, "),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main([*run, *option])
        assert message in str(exit_info.value.code)
    with pytest.raises(SystemExit, match="is a folder; name a file"):
        main([*run, "--save_filepath", str(tmp_path)])

    def offline(**kwargs):
        raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(lm_eval, "simple_evaluate", offline)
    with pytest.raises(SystemExit, match=r"data of task\(s\) tiny_mc could not be fetched .*--include_path"):
        main([*run, "--out_dir", str(tmp_path / "out")])


def test_loglikelihood_matches_transformers_on_smollm2(smollm2_lit, smollm2_hf_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from litgpt.loading import load_model
    from litgpt.tokenizer import Tokenizer

    pairs = [("The capital of France is", " Paris"), ("Llamas are animals that live in", " South America.")]
    lm = LitEvalLM(load_model(smollm2_lit, dtype=torch.float32), Tokenizer(smollm2_lit), batch_size=2)
    ours = lm.loglikelihood([req(*p) for p in pairs])
    hf = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    for (ctx, cont), (logprob, _) in zip(pairs, ours):
        ctx_ids = hf_tok(ctx, add_special_tokens=False).input_ids
        whole = hf_tok(ctx + cont, add_special_tokens=False).input_ids
        lead = [hf_tok.bos_token_id] if Tokenizer(smollm2_lit).use_bos else []
        ids = lead + whole
        with torch.inference_mode():
            logits = hf(torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        start = len(lead) + len(ctx_ids)
        expected = sum(float(logprobs[p - 1, ids[p]]) for p in range(start, len(ids)))
        assert logprob == pytest.approx(expected, abs=2e-3)
