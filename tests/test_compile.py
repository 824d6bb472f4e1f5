"""The compiled decode step: one graph, no graph breaks, no recompilation from one token to the next."""

import torch
import torch._dynamo

from litgpt.api import LLM


def test_decode_step_compiles_once_without_graph_breaks(tiny_checkpoint):
    llm = LLM.load(tiny_checkpoint)
    eager = llm.generate("Llamas eat", temperature=0, max_new_tokens=12, return_as_token_ids=True)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    llm.compile(backend="eager")  # dynamo's tracing and guards, without code generation (fast)
    compiled = llm.generate("Llamas eat", temperature=0, max_new_tokens=12, return_as_token_ids=True)
    assert compiled.tolist() == eager.tolist()
    assert counters["stats"]["unique_graphs"] == 1  # 11 decode steps, one graph
    assert not counters["graph_break"]
    again = llm.generate("The quick brown fox", temperature=0, max_new_tokens=12, return_as_token_ids=True)
    assert counters["stats"]["unique_graphs"] == 1  # a new prompt of another length reuses it
    assert len(again) == 12
