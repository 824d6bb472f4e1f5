"""`litgpt evaluate` against lm-eval's own Hugging Face backend (``model="hf"``) on the same weights.

A local 26-question multiple-choice task (tests/fixtures/mc_task) is run through the ``litgpt evaluate`` CLI on the
converted SmolLM2-135M-Instruct checkpoint and through lm-eval's ``hf`` backend on the Hugging Face folder it came
from: both must get the same questions right (acc and acc_norm), with the same per-choice log-likelihoods.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import mc_task_yaml

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval)")

DATA = Path(__file__).parent / "fixtures" / "mc_task" / "general_knowledge.jsonl"
TASK = "litgpt_general_knowledge"
TOLERANCE = 1e-3  # float32 on both sides (seen: 3e-5); the kernels differ (SDPA vs ours), the tokens must not


def write_task(folder: Path) -> Path:
    """The lm-eval task definition, pointing at the local JSON Lines file (read offline)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{TASK}.yaml").write_text(mc_task_yaml(TASK, DATA, ("acc", "acc_norm")))
    return folder


def req(*args):
    return SimpleNamespace(args=args)


def test_local_mc_task_matches_lm_eval_hf_backend(smollm2_lit, smollm2_hf_dir, tmp_path, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    from litgpt.__main__ import main
    from litgpt.evaluate import LitEvalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tasks = write_task(tmp_path / "tasks")
    n_docs = len(DATA.read_text().splitlines())

    # (a) our path, exactly as a user runs it; the wrapper's answers are recorded on the way (no second scoring pass)
    scored: dict[tuple[str, str], tuple[float, bool]] = {}
    wrappers: list[LitEvalLM] = []
    original = LitEvalLM.loglikelihood

    def recording(self, requests, disable_tqdm=False):
        wrappers.append(self)
        results = original(self, requests, disable_tqdm)
        scored.update((tuple(r.args), result) for r, result in zip(requests, results))
        return results

    monkeypatch.setattr(LitEvalLM, "loglikelihood", recording)
    out = tmp_path / "eval"
    main(["evaluate", str(smollm2_lit), "--tasks", TASK, "--include_path", str(tasks), "--out_dir", str(out),
          "--dtype", "float32", "--device", "cpu", "--batch_size", "4"])  # fmt: skip
    ours = json.loads((out / "results.json").read_text())["results"][TASK]

    # (b) lm-eval's own Hugging Face backend on the weights the checkpoint was converted from (built the way
    # simple_evaluate(model="hf", model_args=...) builds it, kept to score a few extra pairs below)
    hf = get_model("hf").create_from_arg_string(
        f"pretrained={smollm2_hf_dir},dtype=float32", {"batch_size": 4, "device": "cpu"}
    )
    reference = simple_evaluate(
        model=hf, tasks=[TASK], task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        log_samples=True,
    )  # fmt: skip
    theirs = reference["results"][TASK]
    samples = sorted(reference["samples"][TASK], key=lambda s: s["doc_id"])
    assert len(samples) == n_docs

    # a meaningful comparison: the model gets some questions right and some wrong
    for metric in ("acc,none", "acc_norm,none"):
        assert 0 < theirs[metric] < 1, (metric, theirs[metric])
        assert round(ours[metric] * n_docs) == round(theirs[metric] * n_docs), (metric, ours[metric], theirs[metric])
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-9)

    # per choice: the same log-likelihood and greedy flag for the very requests lm-eval's backend scored
    pairs = [tuple(args) for s in samples for args in s["arguments"]]
    expected = [tuple(r) for s in samples for r in s["filtered_resps"]]
    assert pairs[0] == ("Question: What is the capital of France?\nAnswer:", " Paris")
    assert set(scored) == set(pairs)  # the same prompts and choices went to both backends
    got = [scored[p] for p in pairs]
    worst = max(abs(g[0] - e[0]) for g, e in zip(got, expected))
    assert worst < TOLERANCE, worst
    assert [bool(g[1]) for g in got] == [bool(e[1]) for e in expected]
    # and the per-choice scores give our CLI's accuracy
    offset, correct = 0, 0
    for s in samples:
        scores = [g[0] for g in got[offset : offset + len(s["arguments"])]]
        offset += len(s["arguments"])
        correct += max(range(len(scores)), key=scores.__getitem__) == s["target"]
    assert correct == round(ours["acc,none"] * n_docs)

    # tokenization corner cases the task above does not reach: a context ending in a newline, a word split across
    # the boundary, an empty context, a context that spells the BOS token out, trailing spaces and blank lines
    extra = [("Question: Who wrote Hamlet?\nAnswer:\n", "Shakespeare"), ("The best cheese comes from Zür", "ich"),
             ("", "The capital of France is Paris."), ("<|im_start|>user\nName a fruit.", " An apple"),
             ("The sky is", " blue."), ("Two plus two is ", "four"), ("A list:\n\n", "- one")]  # fmt: skip
    mine_all = wrappers[0].loglikelihood([req(*p) for p in extra])
    for (ctx, cont), mine, ref in zip(extra, mine_all, hf.loglikelihood([req(*p) for p in extra])):
        assert mine[0] == pytest.approx(ref[0], abs=TOLERANCE), (ctx, cont, mine, ref)
        assert bool(mine[1]) == bool(ref[1]), (ctx, cont)
