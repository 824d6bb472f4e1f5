"""The generation core: sampling rules, stop sequences, batched == one-by-one."""

import pytest
import torch

from litgpt.errors import LitGPTError
from litgpt.generation import SamplingParams, StopMatcher, generate, sample, stream_tokens
from tests.test_model import tiny


def test_sampling_rules():
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0]])
    assert sample(logits, SamplingParams(temperature=0)).item() == 1
    assert sample(logits, SamplingParams(temperature=1.0, top_p=0.0)).item() == 1
    assert sample(logits, SamplingParams(temperature=5.0, top_k=1)).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = {sample(logits, SamplingParams(temperature=1.0, top_k=2), g).item() for _ in range(200)}
    assert draws == {1, 2}  # top-k keeps exactly the two best
    g = torch.Generator().manual_seed(0)
    # top-p 0.5: the best token alone holds ~66% of the mass -> only it survives
    assert {sample(logits, SamplingParams(temperature=1.0, top_p=0.5), g).item() for _ in range(100)} == {1}
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(
        torch.stack([sample(logits, SamplingParams(temperature=1.0), g) for _ in range(4000)]).flatten(), minlength=4
    )
    torch.testing.assert_close(counts / 4000, logits.softmax(-1)[0], atol=0.03, rtol=0)
    # a tiny temperature is greedy in effect (logits / 1e-40 overflowed: NaN probabilities, token 0 drawn)
    for temperature in (1e-30, 1e-40, 1e-45, 1e-300):
        assert sample(logits * 30, SamplingParams(temperature=temperature, top_k=3), g).item() == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_p=1.5), "top_p"),
    ],
)
def test_sampling_values_are_checked(kwargs, match):
    with pytest.raises(LitGPTError, match=match):
        SamplingParams(**kwargs)


def test_stop_matcher_holds_back_partial_stop_sequences():
    m = StopMatcher([[7, 8, 9], [5]])
    assert m.push(1) == [1]
    assert m.push(7) == []  # might start 7 8 9
    assert m.push(8) == []
    assert m.push(3) == [7, 8, 3]  # it did not
    assert m.push(7) == [] and m.push(8) == [] and m.push(9) == []
    assert m.done
    m = StopMatcher([[5]])
    assert m.push(2) == [2] and m.push(5) == [] and m.done


def test_batched_generation_equals_one_by_one():
    model = tiny("gemma-3-270m", n_layer=3, n_query_groups=1, sliding_window_size=4,
                 sliding_window_indices=[1, 1, 0], rope_indices=[1, 1, 0])  # fmt: skip
    prompts = [torch.randint(0, 97, (n,)) for n in (3, 11, 6)]
    alone = [generate(model, p, 16, temperature=0, include_prompt=False).tolist() for p in prompts]
    together = [[], [], []]
    for step in stream_tokens(model, prompts, 16, SamplingParams(temperature=0)):
        for row, tokens in enumerate(step):
            together[row] += tokens
    assert together == alone


def test_generation_stops_and_checks_context():
    model = tiny("pythia-14m", n_layer=1)
    prompt = torch.randint(0, 97, (5,))
    full = generate(model, prompt, 10, temperature=0, include_prompt=False).tolist()
    stop = full[3]
    cut = generate(model, prompt, 10, temperature=0, include_prompt=False, stop_tokens=[[stop]]).tolist()
    assert cut == full[: full.index(stop)]
    with pytest.raises(LitGPTError, match="exceeds the model's context"):
        generate(model, prompt, 100)


@pytest.mark.parametrize("fused", ["1", "0"])
def test_a_prompt_extending_the_last_generation_prefills_only_its_new_tokens(fused, monkeypatch):
    """A chat's next turn: what the cache holds from the last generation (its prompt and the tokens fed back) is
    not computed again, and the tokens equal a fresh model's; after a write over those positions, a new cache, or
    with no common start, the prompt is prefilled in full. Through the fused C step and PyTorch's."""
    import copy

    monkeypatch.setenv("LITGPT_FUSED_DECODE", fused)
    model = tiny("Llama-3.1-8B", n_layer=2, n_query_groups=2)
    fresh = copy.deepcopy(model)
    prefills = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda idx, *a, **k: prefills.append(idx.shape[1]) or forward(idx, *a, **k))

    def turn(prompt, n=6):
        prefills.clear()
        out = generate(model, prompt, n, temperature=0)
        assert torch.equal(out, generate(fresh, prompt, n, temperature=0))
        return out, prefills[0]

    first, computed = turn(torch.randint(0, 97, (9,)))
    assert computed == 9
    second, computed = turn(torch.cat([first, torch.randint(0, 97, (5,))]))
    assert computed == 20 - 14  # the cache held the prompt and the 5 tokens fed back (the 6th was never fed)
    again, computed = turn(second[:20])
    assert computed == 1  # the whole prompt is cached: its last token still runs, for the first logits
    stream = stream_tokens(model, [again], 8, SamplingParams(temperature=0))
    out = [next(stream)[0][0], next(stream)[0][0]]
    stream.close()  # stopped early (a stop sequence, a client gone): two tokens out, the first fed back
    _, computed = turn(torch.cat([again, torch.tensor(out)]))
    assert computed == 1
    with torch.inference_mode():
        model.transformer.h[0].attn.kv_cache.k[0, 0, 3] += 1  # written over by someone else
    _, computed = turn(torch.cat([again, torch.tensor([4])]))
    assert computed == len(again) + 1
    _, computed = turn(torch.randint(0, 97, (7,)))
    assert computed == 7
    model.set_kv_cache(1, max_seq_length=64)
    _, computed = turn(again)
    assert computed == len(again)


@pytest.mark.parametrize("fused", ["1", "0"])
def test_changed_weights_make_the_next_prompt_prefill_in_full(fused, monkeypatch):
    """Generate, train, generate again (the Python API with a Trainer, a loaded state dict, a merged LoRA): keys and
    values the old weights computed are not reused, and the tokens equal a fresh model's with the new weights."""
    import copy

    monkeypatch.setenv("LITGPT_FUSED_DECODE", fused)
    model = tiny("Llama-3.1-8B", n_layer=2, n_query_groups=2)
    prompt = torch.randint(0, 97, (9,))
    fresh = copy.deepcopy(model)
    prefills = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda idx, *a, **k: prefills.append(idx.shape[1]) or forward(idx, *a, **k))

    def turn():
        prefills.clear()
        out = generate(model, prompt, 6, temperature=0)
        fresh.load_state_dict(model.state_dict())
        fresh.clear_kv_cache()
        assert torch.equal(out, generate(fresh, prompt, 6, temperature=0))
        return prefills[0]

    assert turn() == 9
    assert turn() == 1  # unchanged weights: the cached prompt is reused
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(prompt[None]).float().logsumexp(-1).mean().backward()  # a training step in place
    optimizer.step()
    model.eval()
    assert turn() == 9
    model.load_state_dict({k: v * 1.1 for k, v in model.state_dict().items()})
    assert turn() == 9
    assert turn() == 1
    qkv = model.transformer.h[0].attn.qkv
    qkv.weight = torch.nn.Parameter(qkv.weight.detach() * 2)  # a tensor replaced (as merging a LoRA does)
    assert turn() == 9
