"""litgpt.hugepages: a CPU model's tensors moved into transparent huge pages, in place and unchanged."""

import io
import re

import pytest
import torch

from litgpt import GPT, Config, hugepages
from litgpt.checkpoint import MappedFile

needs_thp = pytest.mark.skipif(
    not hugepages.enabled(), reason="transparent huge pages are switched off on this machine (or not Linux)"
)


def mapping_of(address: int) -> dict:
    """The /proc/self/smaps entry of the mapping that holds ``address``: its path and its fields in kB."""
    entry, found = None, None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = re.match(r"([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)", line)
            if head:
                if found is not None:
                    break
                low, high = int(head.group(1), 16), int(head.group(2), 16)
                entry = {"path": head.group(3)}
                found = entry if low <= address < high else None
            elif entry is not None and line.endswith(" kB\n"):
                name, value = line.split(":")
                entry[name] = int(value.split()[0])
    assert found is not None, f"no mapping holds {address:#x}"
    return found


def small_gpt() -> GPT:
    config = Config(
        name="hp", block_size=64, vocab_size=4096, padded_vocab_size=4096, n_layer=2, n_head=4, n_query_groups=2,
        n_embd=256, intermediate_size=512, bias=False, norm_class_name="RMSNorm", mlp_class_name="LLaMAMLP",
        parallel_residual=False, rotary_percentage=1.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPT(config)
    model.init_weights()
    model.lm_head.weight = model.transformer.wte.weight  # a tied output layer: one storage for two parameters
    return model.eval()


@needs_thp
def test_to_huge_pages_moves_every_tensor_in_place_and_keeps_the_outputs():
    model = small_gpt()
    params = dict(model.named_parameters(remove_duplicate=False))
    before = {name: p.detach().clone() for name, p in params.items()}
    ids = torch.randint(0, 4096, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)
    moved = hugepages.to_huge_pages(model)
    assert moved >= sum(p.nbytes for p in model.parameters())
    assert dict(model.named_parameters(remove_duplicate=False)) == params  # the same Parameter objects
    for name, p in params.items():
        assert torch.equal(p, before[name]), name
        # each tensor keeps a storage of its own: saving one parameter writes that parameter only
        assert p.untyped_storage().nbytes() == p.nbytes, name
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # still tied
    buffer = io.BytesIO()
    torch.save(model.transformer.h[0].attn.proj.weight, buffer)
    assert buffer.tell() < model.transformer.h[0].attn.proj.weight.nbytes + 4096
    with torch.no_grad():
        assert torch.equal(model(ids), expected)
    # the 4 MB embedding lies in 2 MB pages now
    assert mapping_of(model.transformer.wte.weight.data_ptr())["AnonHugePages"] >= 2048


@needs_thp
def test_to_huge_pages_lets_go_of_memory_mapped_sources(tmp_path):
    layer = torch.nn.Linear(2048, 6144, bias=False, dtype=torch.bfloat16)  # 24 MiB: copied in two slices
    torch.save({"weight": layer.weight, "other": torch.ones(4096)}, tmp_path / "w.pth")
    expected = layer.weight.detach().clone()
    state = torch.load(tmp_path / "w.pth", mmap=True)
    other = state.pop("other")  # keeps the file mapped, as the rest of a checkpoint does
    mapped = torch.nn.Linear(2048, 6144, bias=False, device="meta").requires_grad_(False)
    mapped.load_state_dict(state, assign=True)
    del state
    assert float(mapped.weight.float().sum()) == float(expected.float().sum())  # every page read
    file_mapping = mapping_of(mapped.weight.data_ptr())
    assert file_mapping["path"].endswith("w.pth") and file_mapping["Rss"] > 24_000
    address = mapped.weight.data_ptr()
    hugepages.to_huge_pages(mapped, release=MappedFile(None).release)
    assert torch.equal(mapped.weight, expected) and torch.equal(other, torch.ones(4096))
    assert mapping_of(address)["Rss"] < 100  # the file's pages were let go of as they were copied
    assert mapping_of(mapped.weight.data_ptr())["AnonHugePages"] >= 2048


@needs_thp
def test_empty_allocates_in_huge_pages():
    t = hugepages.empty((3 << 20,), torch.int8)
    t.fill_(1)
    assert t.shape == (3 << 20,) and t.dtype == torch.int8 and int(t.sum()) == 3 << 20
    assert mapping_of(t.data_ptr())["AnonHugePages"] >= 2048


def test_huge_pages_switched_off(monkeypatch):
    monkeypatch.setenv("LITGPT_HUGE_PAGES", "0")
    assert not hugepages.enabled()
    monkeypatch.setattr(hugepages, "_Region", None)  # no mapping of huge pages is made
    model = small_gpt()
    address = model.transformer.wte.weight.data_ptr()
    assert hugepages.to_huge_pages(model) == 0 and model.transformer.wte.weight.data_ptr() == address
    assert hugepages.empty((3 << 20,), torch.int8).shape == (3 << 20,)
    hugepages.move_later(model)
    hugepages.settle(model)
    assert model.transformer.wte.weight.data_ptr() == address


def quantize_modes() -> list:
    from litgpt.quantize import bnb_runs_on_cpu

    return [None, "int8", "int4"] + (["bnb.nf4"] if bnb_runs_on_cpu() else [])  # bitsandbytes' parameters stay


@needs_thp
@pytest.mark.parametrize("quantize", quantize_modes())
def test_a_distributed_model_moves_at_its_first_decode_step_and_generates_the_same(
    tiny_checkpoint, monkeypatch, quantize
):
    from litgpt.api import LLM

    def generate(huge: str) -> tuple[tuple[str, str], bool, bool, bool]:
        monkeypatch.setenv("LITGPT_HUGE_PAGES", huge)
        llm = LLM.load(tiny_checkpoint, distribute=None)
        llm.distribute(accelerator="cpu", precision="32-true", quantize=quantize)
        model = llm.model
        table, layer = model.transformer.wte.weight.data_ptr(), model.transformer.h[0].norm_1.weight.data_ptr()
        pending = model in hugepages._PENDING
        short = llm.generate("hello there", temperature=0, max_new_tokens=hugepages.MIN_TOKENS - 1)
        assert (model in hugepages._PENDING) == pending  # too short a generation to pay for the move
        out = short, llm.generate("hello there", temperature=0, max_new_tokens=hugepages.MIN_TOKENS)
        assert model not in hugepages._PENDING
        moved = model.transformer.h[0].norm_1.weight.data_ptr() != layer
        return out, pending, moved, model.transformer.wte.weight.data_ptr() == table

    text, pending, moved, table_stayed = generate("1")
    assert pending and moved and table_stayed  # the embedding table (read a row per token) stays where it was
    assert generate("0") == (text, False, False, True)


@needs_thp
def test_cpu_kv_cache_is_one_zeroed_block_in_huge_pages_filled_as_written():
    """Every layer's keys and values in one mapping asked for huge pages (a long context reads as many cache bytes
    as weights), zero until written, only written pages resident; a small cache stays a plain allocation."""
    model = small_gpt()
    model.set_kv_cache(64, max_seq_length=64)  # 2 layers x 2 x (64, 2, 64, 64) float32: 8 MiB
    caches = [t for block in model.transformer.h for t in (block.attn.kv_cache.k, block.attn.kv_cache.v)]
    assert len({t.untyped_storage().data_ptr() for t in caches}) == 1
    assert all(t.shape == (64, 2, 64, 64) and t.is_contiguous() and not t.any() for t in caches)
    first = mapping_of(caches[0].data_ptr())
    assert first["Rss"] < 1024 and first["Size"] >= 8 * 1024  # read as zeros, not yet resident
    caches[-1][:, :, :32] = 1.0
    entry = mapping_of(caches[0].data_ptr())
    assert entry["AnonHugePages"] >= 2048  # written pages come in 2 MB pages
    assert caches[-1].sum().item() == 64 * 2 * 32 * 64 and not caches[0].any()
    ids = torch.randint(0, 4096, (64, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the model decodes with it as with a cache of its own
        expected = model(ids)[:, -1]
        model.set_kv_cache(64, max_seq_length=64)
        got = model(ids, torch.arange(8), input_pos_maxp1=8)[:, -1]
    torch.testing.assert_close(got, expected)
    model.set_kv_cache(1, max_seq_length=16)  # 16 KiB: no mapping of its own
    small = model.transformer.h[0].attn.kv_cache.k
    assert mapping_of(small.data_ptr())["Size"] > 0 and small.untyped_storage().data_ptr() != caches[0].data_ptr()
