"""Tokenizer: parity with transformers on two real tokenizers, a SentencePiece model, special ids, streaming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from litgpt.errors import LitGPTError
from litgpt.tokenizer import Tokenizer

HARD_STRINGS = [
    "",
    "Hello, world!",
    " leading space",
    "trailing spaces   ",
    "  two  spaces\n\n\nthree newlines\t\ttabs \t \n ",
    "日本語のテキストと中文，还有한국어",
    "e\u0301 a\u0308 n\u0303 Z\u0351\u0357\u0356 \u0915\u094d\u0937",  # combining marks, Devanagari conjunct
    "emoji 👩\u200d👩\u200d👧\u200d👦 🇫🇷 😀🐍! rare 𓀀 ꙮ 𝔘 \U0001fae8",
    "def f(x):\n    return {'a': x ** 2}  # café\n\tpass\n",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "zero\u200bwidth\u00a0nbsp \u2028line sep",
    "ⅠⅡⅢ ﬁ ｆｕｌｌ ｗｉｄｔｈ",
]

MODELS = ["smollm2_hf_dir", "gemma3_hf_dir"]


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    """(litgpt Tokenizer, transformers tokenizer) for one real model folder."""
    from transformers import AutoTokenizer

    folder = request.getfixturevalue(request.param)
    return Tokenizer(folder), AutoTokenizer.from_pretrained(folder)


def _stream(tokenizer: Tokenizer, ids: list[int], **kwargs) -> list[str]:
    stream = tokenizer.decode_stream(**kwargs)
    pieces = [stream.step(i) for i in ids]
    pieces.append(stream.flush())
    return pieces


def test_special_ids_match_transformers(pair):
    tok, hf = pair
    assert tok.bos_id == hf.bos_token_id
    assert tok.eos_id == hf.eos_token_id
    assert tok.vocab_size == len(hf)
    assert tok.stop_ids[0] == tok.eos_id
    assert tok.token_to_id(hf.eos_token) == hf.eos_token_id


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_encode_matches_transformers(pair, text):
    tok, hf = pair
    ids = tok.encode(text)
    assert ids.dtype == torch.long and ids.ndim == 1
    assert ids.tolist() == hf.encode(text)


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_decode_matches_transformers(pair, text):
    tok, hf = pair
    ids = hf.encode(text)
    assert tok.decode(ids) == hf.decode(ids)
    assert tok.decode(torch.tensor(ids)) == hf.decode(ids)
    assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_stream_pieces_join_to_full_decode(pair, text):
    tok, hf = pair
    ids = hf.encode(text)
    for skip in (False, True):
        pieces = _stream(tok, ids, skip_special_tokens=skip)
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip)
        assert not any("\ufffd" in p for p in pieces), pieces


def test_stream_holds_back_partial_characters(pair):
    tok, _ = pair
    text = "🐍👩\u200d👧 漢字 ﷽ 𓀀ꙮ𝔘 end"
    ids = tok.encode(text, bos=False).tolist()
    pieces = _stream(tok, ids)
    # some character spans several tokens, so at least one step had to wait for the rest of its bytes
    assert len(ids) > len(text.replace(" ", ""))
    assert "" in pieces[:-1]
    assert "".join(pieces) == text
    # a stream cut in the middle of a character releases the remainder on flush, like decode does
    cut = next(n for n in range(1, len(ids)) if tok.decode(ids[:n]).endswith("\ufffd"))
    stream = tok.decode_stream()
    released = "".join(stream.step(i) for i in ids[:cut])
    assert "\ufffd" not in released
    assert released + stream.flush() == tok.decode(ids[:cut])


def test_bos_eos_flags_never_double(pair):
    tok, hf = pair
    bos, eos = tok.bos_id, tok.eos_id
    plain = hf.encode("Hi there", add_special_tokens=False)
    assert tok.encode("Hi there", bos=False).tolist() == plain
    assert tok.encode("Hi there", bos=True).tolist() == [bos] + plain
    assert tok.encode("Hi there", bos=True, eos=True).tolist() == [bos] + plain + [eos]
    # text that already starts with the BOS token (or ends with EOS) gets no second one
    bos_text, eos_text = hf.convert_ids_to_tokens(bos), hf.convert_ids_to_tokens(eos)
    ids = tok.encode(f"{bos_text}Hi{eos_text}", bos=True, eos=True).tolist()
    assert ids.count(bos) == 1 and ids.count(eos) == 1 and ids[0] == bos and ids[-1] == eos
    assert tok.encode("", bos=True).tolist() == [bos]
    assert tok.encode("", bos=False).tolist() == []
    assert tok.encode("Hi there " * 10, bos=True, max_length=3).tolist() == [bos] + plain[:2]


def test_default_bos_follows_the_tokenizer(pair):
    # Gemma's post-processor inserts <bos>; this SmolLM2 folder (no "Instruct" in its name) adds nothing
    tok, hf = pair
    adds_bos = hf.encode("a")[0] == hf.bos_token_id
    assert tok.use_bos is adds_bos
    assert adds_bos is (tok.model_name == "gemma3")


def _copy_tokenizer(src: Path, dst: Path, config: dict | None = None, generation: dict | None = None) -> Path:
    dst.mkdir(parents=True)
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    if config is not None:
        (dst / "tokenizer_config.json").write_text(json.dumps(config))
    if generation is not None:
        (dst / "generation_config.json").write_text(json.dumps(generation))
    return dst


def test_add_bos_token_and_model_name_rules(smollm2_hf_dir, tmp_path):
    cfg = {"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>", "special": True}}
    plain = _copy_tokenizer(smollm2_hf_dir, tmp_path / "plain", cfg)
    assert Tokenizer(plain).use_bos is False
    forced = _copy_tokenizer(smollm2_hf_dir, tmp_path / "forced", {**cfg, "add_bos_token": True})
    tok = Tokenizer(forced)
    assert tok.use_bos is True and tok.eos_id == 2
    assert tok.encode("Hi").tolist()[0] == 1
    assert tok.encode("<|im_start|>user").tolist().count(1) == 1
    # SmolLM2 instruct checkpoints use <|im_start|> as BOS, as the established tool does
    named = _copy_tokenizer(smollm2_hf_dir, tmp_path / "SmolLM2-135M-Instruct", cfg)
    assert Tokenizer(named).use_bos is True
    assert Tokenizer(named).model_name == "SmolLM2-135M-Instruct"
    off = _copy_tokenizer(smollm2_hf_dir, tmp_path / "SmolLM2-360M-Instruct", {**cfg, "add_bos_token": False})
    assert Tokenizer(off).use_bos is False


def test_generation_config_fallback_and_stop_ids(smollm2_hf_dir, tmp_path):
    folder = _copy_tokenizer(smollm2_hf_dir, tmp_path / "m", None, {"bos_token_id": 1, "eos_token_id": [2, 0]})
    tok = Tokenizer(folder)
    assert (tok.bos_id, tok.eos_id, tok.stop_ids) == (1, 2, [2, 0])
    assert tok.bos_token == "<|im_start|>" and tok.eos_token == "<|im_end|>"
    both = _copy_tokenizer(smollm2_hf_dir, tmp_path / "n", {"eos_token": "<|endoftext|>"}, {"eos_token_id": [2, 0]})
    assert Tokenizer(both).eos_id == 0 and Tokenizer(both).stop_ids == [0, 2]


def test_token_to_id_and_chat_template(smollm2_hf_dir, tmp_path):
    tok = Tokenizer(smollm2_hf_dir)
    assert tok.token_to_id("<|im_start|>") == 1
    with pytest.raises(LitGPTError, match="not in the vocabulary"):
        tok.token_to_id("<|definitely-not-a-token|>")
    assert tok.chat_template == (smollm2_hf_dir / "chat_template.jinja").read_text()
    folder = _copy_tokenizer(smollm2_hf_dir, tmp_path / "m", {"chat_template": "{{ messages[0]['content'] }}"})
    assert Tokenizer(folder).chat_template == "{{ messages[0]['content'] }}"
    named = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    folder = _copy_tokenizer(smollm2_hf_dir, tmp_path / "n", {"chat_template": named})
    assert Tokenizer(folder).chat_template == "D"


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(LitGPTError) as err:
        Tokenizer(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "tokenizer.json" in message and "tokenizer.model" in message
    with pytest.raises(LitGPTError, match="does not exist"):
        Tokenizer(tmp_path / "nope")


# -- SentencePiece

SP_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, hello tokenizer! Streaming text one piece at a time.",
    "日本語のテキスト café naïve résumé",
    "def add(a, b):\n    return a + b",
]


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory) -> Path:
    import sentencepiece

    folder = tmp_path_factory.mktemp("sp")
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SP_TEXT * 10),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    return folder


@pytest.mark.parametrize("text", ["Hello world", "The lazy dog jumps", "日本語 café 🐍 ünïcödé", "a  b\tc", ""])
def test_sentencepiece_round_trip(sp_dir, text):
    import sentencepiece

    tok = Tokenizer(sp_dir)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    assert tok.backend == "sentencepiece" and tok.vocab_size == 320
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    ids = tok.encode(text, eos=True).tolist()
    assert ids == [1] + sp.encode(text) + [2]  # a bare SentencePiece model adds BOS by default
    assert tok.encode(text, bos=False).tolist() == sp.encode(text)
    assert tok.decode(ids) == sp.decode(ids)
    if "\t" not in text and "  " not in text:  # SentencePiece normalizes runs of whitespace
        assert tok.decode(ids) == text
    pieces = _stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    assert not any("\ufffd" in p for p in pieces)


def test_sentencepiece_decode_skips_ids_past_its_pieces(sp_dir):
    """A model's padded vocabulary is larger than tokenizer.model: a sampled id past it decodes to nothing."""
    tok = Tokenizer(sp_dir)
    ids = tok.encode("hello world", bos=False).tolist()
    assert tok.decode(ids + [tok.vocab_size, tok.vocab_size + 100]) == tok.decode(ids) == "hello world"
    stream = tok.decode_stream()
    assert "".join(stream.step(i) for i in [*ids, tok.vocab_size + 5]) + stream.flush() == "hello world"


def test_sentencepiece_config_overrides(sp_dir, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(sp_dir / "tokenizer.model", folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False, "eos_token": "<s>"}))
    tok = Tokenizer(folder)
    assert tok.use_bos is False and tok.eos_id == 1
    assert tok.encode("Hello").tolist()[0] != 1
    assert tok.token_to_id("</s>") == 2
    with pytest.raises(LitGPTError):
        tok.token_to_id("<no such piece>")
