"""GGUF import: the two real files against transformers' own reading of them, and tiny files written here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError
from litgpt.gguf_import import MARKER_FILE, OUTPUT_FILES, convert_gguf, read_gguf
from litgpt.model import GPT
from tests.conftest import gguf_source

HARD_STRINGS = [
    "Hello, world!",
    "  leading and trailing  ",
    "a\n\nb\n\n\n c\t\td",
    "naïve café — “quotes” ∑ 漢字 日本語のテキスト 한국어 Россия",
    "emoji 😀👍🏽 🧑\u200d🚀 🇫🇷",
    "def f(x):\n    return x**2  # comment\n",
    "12345 3.14159 1,000,000 0x1F",
    "   ",
    "\n",
    "",
    "ÀÉÎÕÜ ßøå ｆｕｌｌｗｉｄｔｈ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\u200b\u00a0nbsp\x00\x01 control",
    "  \n  \n\r\n",
    "https://example.com/a?b=c&d=e",
    "I'm you'll we'd THEY'RE",
]
SPECIAL_STRINGS = {
    "smollm2": ["<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>x<|im_end|>"],
    "gemma3": [
        "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
        "<bos>text<eos> <unk> <pad> <mask> [multimodal]",
    ],
}
GGUF_NAMES = ("smollm2", "gemma3")
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Both real GGUF files, converted once for this module (with the conversion time recorded)."""
    out = {}
    for name in GGUF_NAMES:
        folder = tmp_path_factory.mktemp("gguf") / name
        start = time.perf_counter()
        assert convert_gguf(gguf_source(name), folder, progress=False) == folder
        TIMINGS[name] = time.perf_counter() - start
        out[name] = folder
    print(f"\nGGUF conversion times: {', '.join(f'{k} {v:.1f}s' for k, v in TIMINGS.items())}")
    return out


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


# -- real files ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", GGUF_NAMES)
def test_real_gguf_logits_match_transformers(name, converted, request):
    from transformers import AutoModelForCausalLM

    folder = converted[name]
    assert all((folder / f).is_file() for f in (*OUTPUT_FILES, MARKER_FILE))
    config = Config.from_file(folder / "model_config.yaml")
    assert config.name == {"smollm2": "SmolLM2-135M-Instruct", "gemma3": "Gemma-3-270m"}[name]
    model = GPT(config)
    model.load_state_dict(torch.load(folder / "lit_model.pth", weights_only=True))
    model.eval()
    hf_dir = request.getfixturevalue(f"{name}_hf_dir")
    reference = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    ids = _tokenizer(folder).encode("The capital of France is Paris. In 1889 the Eiffel Tower").ids
    x = torch.tensor([ids])
    with torch.no_grad():
        ours = model(x)
        theirs = reference(x).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


@pytest.mark.parametrize("name", GGUF_NAMES)
def test_real_gguf_tokenizer_matches_fixture(name, converted, request):
    from tokenizers import Tokenizer

    ours = _tokenizer(converted[name])
    reference = Tokenizer.from_file(str(request.getfixturevalue(f"{name}_hf_dir") / "tokenizer.json"))
    for text in HARD_STRINGS + SPECIAL_STRINGS[name]:
        for special in (False, True):
            a, b = (
                ours.encode(text, add_special_tokens=special).ids,
                reference.encode(text, add_special_tokens=special).ids,
            )
            assert a == b, (text, special)
        assert ours.decode(a, skip_special_tokens=False) == reference.decode(b, skip_special_tokens=False)
    assert ours.get_vocab_size() == reference.get_vocab_size()


@pytest.mark.slow
@pytest.mark.parametrize("name", GGUF_NAMES)
def test_real_gguf_tokenizer_matches_autotokenizer(name, converted):
    from transformers import AutoTokenizer

    src = gguf_source(name)
    reference = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    ours = _tokenizer(converted[name])
    for text in HARD_STRINGS + SPECIAL_STRINGS[name]:
        assert ours.encode(text, add_special_tokens=True).ids == reference(text)["input_ids"], text
        assert ours.encode(text, add_special_tokens=False).ids == reference(text, add_special_tokens=False)["input_ids"]


def test_smollm2_splits_digits_like_llama_cpp(converted):
    """llama.cpp's 'smollm' pre-tokenizer (like SmolLM2's own tokenizer.json) splits every digit off before the
    GPT-2 pattern; transformers' GGUF reader skips that step, which shows only when whitespace precedes a digit."""
    tok = _tokenizer(converted["smollm2"])
    assert tok.encode("x  1").tokens == ["x", "ĠĠ", "1"]
    assert tok.encode("a 123").tokens == ["a", "Ġ", "1", "2", "3"]


def test_real_gguf_tokenizer_files(converted):
    smol = json.loads((converted["smollm2"] / "tokenizer_config.json").read_text())
    assert smol["bos_token"] == "<|im_start|>" and smol["eos_token"] == "<|im_end|>"
    assert smol["add_bos_token"] is False and "<|im_start|>" in smol["chat_template"]
    gemma = json.loads((converted["gemma3"] / "tokenizer_config.json").read_text())
    assert gemma["bos_token"] == "<bos>" and gemma["eos_token"] == "<eos>" and gemma["add_bos_token"] is True
    gen = json.loads((converted["gemma3"] / "generation_config.json").read_text())
    assert gen["bos_token_id"] == 2 and gen["eos_token_id"] == 1
    hf = json.loads((converted["gemma3"] / "config.json").read_text())
    assert hf["model_type"] == "gemma3_text" and hf["layer_types"][5] == "full_attention"


def test_second_conversion_is_a_noop(converted):
    folder = converted["smollm2"]
    before = (folder / "lit_model.pth").stat().st_mtime_ns
    start = time.perf_counter()
    assert convert_gguf(gguf_source("smollm2"), folder) == folder
    assert time.perf_counter() - start < 1.0
    assert (folder / "lit_model.pth").stat().st_mtime_ns == before


def test_metadata_parser_agrees_with_gguf_reader():
    import gguf

    src = gguf_source("smollm2")
    ours = read_gguf(src)
    reader = gguf.GGUFReader(src)
    try:
        for key, f in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            value = f.contents()
            if isinstance(value, list) and value and isinstance(value[0], float):
                np.testing.assert_allclose(ours.metadata[key], value)
            else:
                assert ours.metadata[key] == value, key
        assert len(ours.tensors) == len(reader.tensors)
        for t in reader.tensors[:20]:
            info = ours.tensors[t.name]
            assert info.shape == tuple(reversed(t.shape.tolist()))
            assert info.offset == t.data_offset and info.ggml_type == t.tensor_type
            expected = gguf.quants.dequantize(t.data, t.tensor_type).reshape(info.shape)
            np.testing.assert_array_equal(ours.load(t.name), expected)
    finally:
        ours.close()


# -- tiny files written here --------------------------------------------------------------------------------------
def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q/k rows (interleave the two rotary halves of every head)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_tiny_llama(path: Path, qtypes=None, arch: str = "llama", tied: bool = False, name: str = "Tiny Llama"):
    """A 2-layer llama GGUF with a small SentencePiece vocabulary; returns the HF-layout float weights."""
    import gguf

    rng = np.random.default_rng(0)
    n_layer, n_embd, n_head, n_kv, ffn = 2, 64, 4, 2, 128
    hs = n_embd // n_head
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces = ["▁", "a", "b", "c", "▁a", "ab", "▁ab", "bc", "▁abc", "<|user|>"]
    tokens += pieces
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 1) + [4]
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    vocab = len(tokens)
    qtypes = qtypes or {}

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hs)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    hf: dict[str, np.ndarray] = {}

    def add(gguf_name: str, hf_name: str, shape, permute_heads: int = 0):
        value = rng.standard_normal(shape).astype(np.float32) * 0.5
        if len(shape) == 1:
            value = 1.0 + value * 0.1
        hf[hf_name] = value
        stored = _llama_cpp_permute(value, permute_heads) if permute_heads else value
        qtype = qtypes.get(gguf_name.split(".")[-2] if gguf_name.startswith("blk") else gguf_name.split(".")[0])
        if qtype is None or len(shape) == 1:
            w.add_tensor(gguf_name, stored)
        else:
            w.add_tensor(gguf_name, gguf.quants.quantize(stored, qtype), raw_dtype=qtype)

    add("token_embd.weight", "transformer.wte.weight", (vocab, n_embd))
    for i in range(n_layer):
        b, p = f"blk.{i}.", f"transformer.h.{i}."
        add(b + "attn_norm.weight", p + "norm_1.weight", (n_embd,))
        add(b + "attn_q.weight", p + "q", (n_head * hs, n_embd), permute_heads=n_head)
        add(b + "attn_k.weight", p + "k", (n_kv * hs, n_embd), permute_heads=n_kv)
        add(b + "attn_v.weight", p + "v", (n_kv * hs, n_embd))
        add(b + "attn_output.weight", p + "attn.proj.weight", (n_embd, n_head * hs))
        add(b + "ffn_norm.weight", p + "norm_2.weight", (n_embd,))
        add(b + "ffn_gate.weight", p + "mlp.fc_1.weight", (ffn, n_embd))
        add(b + "ffn_up.weight", p + "mlp.fc_2.weight", (ffn, n_embd))
        add(b + "ffn_down.weight", p + "mlp.proj.weight", (n_embd, ffn))
    add("output_norm.weight", "transformer.ln_f.weight", (n_embd,))
    if not tied:
        add("output.weight", "lm_head.weight", (vocab, n_embd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        hf[p + "attn.qkv.weight"] = np.concatenate([hf.pop(p + "q"), hf.pop(p + "k"), hf.pop(p + "v")])
    if tied:
        hf["lm_head.weight"] = hf["transformer.wte.weight"]
    return hf


def test_tiny_quantized_llama_round_trips(tmp_path):
    import gguf

    Q8, Q4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0
    qtypes = {
        "token_embd": Q8,
        "attn_q": Q4,
        "attn_k": Q8,
        "attn_v": Q4,
        "attn_output": Q8,
        "ffn_gate": Q4,
        "ffn_up": Q8,
        "ffn_down": Q4,
        "output": Q8,
    }
    src = tmp_path / "tiny.gguf"
    expected = _write_tiny_llama(src, qtypes)
    folder = convert_gguf(src, tmp_path / "out", progress=False)
    state = torch.load(folder / "lit_model.pth", weights_only=True)
    assert set(state) == set(expected)
    four_bit = ("attn.qkv", "mlp.fc_1", "mlp.proj")  # q and v are Q4_0 (k is Q8_0), gate and down are Q4_0
    for key, value in expected.items():
        got = state[key].numpy()
        assert got.dtype == np.float32 and got.shape == value.shape, key
        # a 32-value block is stored as round(x / d) * d, d = max|block| / 8 (Q4_0, levels -8..7) or / 127 (Q8_0)
        if value.ndim == 1:
            tolerance = 0.0
        else:
            tolerance = (0.13 if any(part in key for part in four_bit) else 0.005) * np.abs(value).max()
        np.testing.assert_allclose(got, value, rtol=0, atol=tolerance + 1e-7, err_msg=key)
    config = Config.from_file(folder / "model_config.yaml")
    assert (config.n_layer, config.n_head, config.n_query_groups, config.padded_vocab_size) == (2, 4, 2, 269)
    model = GPT(config)
    model.load_state_dict(state)
    assert torch.isfinite(model(torch.tensor([[1, 262, 263]]))).all()


def test_tiny_tied_llama_tokenizer_and_dtype(tmp_path):
    src = tmp_path / "tiny.gguf"
    expected = _write_tiny_llama(src, tied=True)
    folder = convert_gguf(src, tmp_path / "out", dtype="bfloat16", progress=False)
    state = torch.load(folder / "lit_model.pth", weights_only=True)
    assert state["lm_head.weight"].dtype == torch.bfloat16
    torch.testing.assert_close(
        state["lm_head.weight"].float(), torch.from_numpy(expected["transformer.wte.weight"]), rtol=1e-2, atol=1e-2
    )
    tok = _tokenizer(folder)
    enc = tok.encode("abc ab<|user|>é")
    assert enc.tokens[0] == "<s>" and "▁abc" in enc.tokens and "<|user|>" in enc.tokens
    assert "<0xC3>" in enc.tokens  # byte fallback for a character outside the vocabulary
    assert tok.decode(enc.ids, skip_special_tokens=True) == "abc ab<|user|>é"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<s>", "</s>", True)


def test_reconverts_when_source_changes_and_respects_foreign_folders(tmp_path):
    src = tmp_path / "tiny.gguf"
    _write_tiny_llama(src)
    folder = convert_gguf(src, tmp_path / "out", progress=False)
    first = json.loads((folder / MARKER_FILE).read_text())
    os.utime(src, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    convert_gguf(src, folder, progress=False)
    assert json.loads((folder / MARKER_FILE).read_text())["mtime_ns"] == first["mtime_ns"] + 10**9
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "lit_model.pth").write_text("not ours")
    with pytest.raises(LitGPTError, match="not a GGUF conversion"):
        convert_gguf(src, foreign, progress=False)
    assert (foreign / "lit_model.pth").read_text() == "not ours"


def test_default_checkpoint_dir_uses_model_name(tmp_path, monkeypatch):
    src = tmp_path / "tiny.gguf"
    _write_tiny_llama(src, name="Tiny Llama 1B")
    monkeypatch.chdir(tmp_path)
    folder = convert_gguf(src, progress=False)
    assert folder == Path("checkpoints") / "Tiny-Llama-1B"
    assert (tmp_path / folder / "lit_model.pth").is_file()


def test_unsupported_architecture_is_a_one_line_error(tmp_path):
    import gguf

    src = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(src), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(LitGPTError) as err:
        convert_gguf(src, tmp_path / "out", progress=False)
    assert str(err.value) == "GGUF architecture 'mamba' is not supported yet (supported: gemma3, llama)"
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(LitGPTError, match="is not a GGUF file"):
        convert_gguf(bad, tmp_path / "out")
    with pytest.raises(LitGPTError, match="does not exist"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


# worst-case error of one value relative to the largest |value| of its block, per type the gguf package can write
TYPE_TOLERANCE = {"F16": 1e-3, "BF16": 8e-3, "Q8_0": 5e-3, "Q5_0": 0.07, "Q5_1": 0.07, "Q4_0": 0.13, "Q4_1": 0.13}


@pytest.mark.parametrize("type_name", sorted(TYPE_TOLERANCE))
def test_every_writable_type_imports_within_its_error(tmp_path, type_name):
    import gguf

    qtype = gguf.GGMLQuantizationType[type_name]
    names = ("token_embd", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output")
    src = tmp_path / f"tiny-{type_name}.gguf"
    expected = _write_tiny_llama(src, dict.fromkeys(names, qtype))
    state = torch.load(convert_gguf(src, tmp_path / "out", progress=False) / "lit_model.pth", weights_only=True)
    assert set(state) == set(expected)
    for key, value in expected.items():
        got = state[key].numpy()
        assert got.shape == value.shape, key
        tolerance = 0.0 if value.ndim == 1 else TYPE_TOLERANCE[type_name] * np.abs(value).max()
        np.testing.assert_allclose(got, value, rtol=0, atol=tolerance + 1e-7, err_msg=f"{type_name} {key}")
