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


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(temperature=-1), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p")],
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
