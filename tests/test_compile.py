"""The compiled decode step: one graph, no graph breaks, no recompilation from one token to the next."""

import pytest
import torch
import torch._dynamo

from litgpt.api import LLM

STEPS = 32  # decode steps after the token that the prefill produces


def compiled_matches_eager(checkpoint, device: str, precision: str = "32-true", **compile_args) -> None:
    """Greedy tokens of a 32-step decode loop equal eager ones; the loop compiles once, breaks no graph, and a
    second prompt of another length recompiles nothing (dynamo's error_on_recompile)."""
    llm = LLM.load(checkpoint, distribute=None)
    llm.distribute(accelerator=device, precision=precision)
    llm.prompt_style.stop_tokens = lambda tokenizer: ()  # always the full number of steps

    def tokens(prompt: str) -> list[int]:
        return llm.generate(prompt, temperature=0, max_new_tokens=STEPS + 1, return_as_token_ids=True).tolist()

    eager = [tokens("Llamas eat"), tokens("The quick brown fox")]
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    llm.compile(**compile_args)
    assert tokens("Llamas eat") == eager[0]
    assert counters["stats"]["unique_graphs"] == 1  # 32 decode steps, one graph
    assert not counters["graph_break"]
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert tokens("The quick brown fox") == eager[1]  # another prompt length reuses the graph
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize("precision", ["32-true", "bf16-true"])
def test_decode_step_compiles_once_without_graph_breaks(tiny_checkpoint, precision):
    """bfloat16 weights take other branches of the CPU layers (``kernels.kernel_rows``, ``native_bf16``)."""
    compiled_matches_eager(tiny_checkpoint, "cpu", precision, backend="eager")  # dynamo's tracing and guards only


def test_inductor_decode_step_matches_eager(tiny_checkpoint):
    """Generated code (inductor, with our CPU kernels as one custom op) on the CPU."""
    compiled_matches_eager(tiny_checkpoint, "cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_decode_step_matches_eager(tiny_checkpoint):
    """On a GPU ``LLM.compile()`` defaults to mode="reduce-overhead": the decode step replays a CUDA graph."""
    import torch._inductor.config

    with torch._inductor.config.patch({"triton.cudagraph_or_error": True}):  # a skipped CUDA graph is an error
        compiled_matches_eager(tiny_checkpoint, "cuda")
    assert not torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]
