"""Prompt styles: every named style, conversations, the chat-template style, stop tokens, prompt_style.yaml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from litgpt import prompts
from litgpt.errors import LitGPTError
from litgpt.prompts import (
    MODEL_PROMPT_STYLES,
    ChatML,
    ChatTemplate,
    PromptStyle,
    has_prompt_style,
    load_prompt_style,
    prompt_styles,
    resolve_prompt_style,
    save_prompt_style,
)
from litgpt.tokenizer import Tokenizer

REQUIRED = [
    "alpaca", "flan", "longform", "stablelm-alpha", "stablelm-zephyr", "falcon", "llama2-function-calling",
    "llama2", "freewilly2", "platypus", "stablecode", "codellama", "phi-1", "phi-2", "phi-3", "phi-4",
    "tinyllama", "gemma", "llama3", "olmo", "qwen2.5", "qwen2.5-math", "qwq", "qwen3", "smollm2",
    "salamandra", "vicuna", "default",
]  # fmt: skip

CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "First question?"},
    {"role": "assistant", "content": "First answer."},
    {"role": "user", "content": "Second question?"},
]


def test_required_names_are_registered():
    assert set(REQUIRED) <= set(prompt_styles)
    for _, style in MODEL_PROMPT_STYLES:
        assert style in prompt_styles


@pytest.mark.parametrize("name", REQUIRED)
def test_every_style_wraps_the_prompt(name):
    style = PromptStyle.from_name(name)
    assert isinstance(style, prompt_styles[name])
    text = style.apply("What is 2+2? ✓")
    assert "What is 2+2? ✓" in text
    if name != "default":
        assert text != "What is 2+2? ✓"


@pytest.mark.parametrize("name", REQUIRED)
def test_every_style_takes_a_conversation(name):
    style = PromptStyle.from_name(name)
    text = style.apply(CONVERSATION)
    positions = [text.find(m["content"]) for m in CONVERSATION[1:]]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text
    # the conversation ends the way a single prompt does: ready for the assistant's reply
    single = style.apply("Second question?")
    tail = single[single.index("Second question?") + len("Second question?") :]
    assert text.endswith(tail)
    # a one-message list and a string give the same prompt
    assert style.apply([{"role": "user", "content": "Hi"}]) == style.apply("Hi")


@pytest.mark.parametrize("name", [n for n in REQUIRED if issubclass(prompt_styles[n], prompts.TurnStyle)])
def test_conversation_system_message_replaces_the_default(name):
    style = PromptStyle.from_name(name)
    text = style.apply(CONVERSATION)
    assert text.count("Answer in one word.") == 1
    if style.default_system:
        assert style.default_system not in text
        assert style.default_system in style.apply("x")
        assert style.apply("x", sys_prompt="Custom.").count("Custom.") == 1


def test_exact_formats():
    assert PromptStyle.from_name("llama3").apply("Hi", sys_prompt="Be brief.") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert PromptStyle.from_name("gemma").apply("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert PromptStyle.from_name("gemma").apply("Hi", sys_prompt="Be brief.") == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert PromptStyle.from_name("phi-3").apply("Hi") == (
        "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    )
    assert PromptStyle.from_name("phi-2").apply("Hi") == "Instruct: Hi\nOutput:"
    assert PromptStyle.from_name("codellama").apply("Hi") == "[INST] Hi [/INST]"
    assert PromptStyle.from_name("qwen3").apply("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert (
        PromptStyle.from_name("qwen3")
        .apply("Hi", enable_thinking=False)
        .endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    )
    assert (
        PromptStyle.from_name("qwen2.5")
        .apply("Hi")
        .startswith(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        )
    )
    alpaca = PromptStyle.from_name("alpaca")
    assert alpaca.apply("Sum", input="1 2").endswith("### Instruction:\nSum\n\n### Input:\n1 2\n\n### Response:\n")
    assert alpaca.apply("Sum").endswith("### Instruction:\nSum\n\n### Response:\n")
    assert PromptStyle.from_name("vicuna").apply("Hi").endswith("USER: Hi ASSISTANT:")
    assert PromptStyle.from_name("falcon").apply("Hi") == "Hi\nAnswer:"  # the established release's layout
    r1 = [{"role": "system", "content": "S"}, {"role": "user", "content": " a "}, {"role": "assistant", "content": "b"}]
    assert PromptStyle.from_name("r1-base").apply(r1 + [{"role": "user", "content": "c"}]) == (
        "S<｜User｜>a<｜Assistant｜>b<｜end▁of▁sentence｜><｜User｜>c<｜Assistant｜>"
    )
    assert PromptStyle.from_name("phi-4-mini-reasoning").apply("Hi") == (
        "<|system|>Your name is Phi, an AI math expert developed by Microsoft.<|end|><|user|>Hi<|end|><|assistant|>"
    )
    reasoning = PromptStyle.from_name("phi-4-reasoning").apply("Hi")
    assert reasoning.startswith("<|im_start|>system<|im_sep|>You are Phi, a language model trained by Microsoft")
    assert reasoning.endswith("<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|><|im_start|>assistant<|im_sep|>")


def test_bad_conversations_are_refused():
    style = PromptStyle.from_name("llama3")
    with pytest.raises(LitGPTError, match="system"):
        style.apply([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    with pytest.raises(LitGPTError, match="role"):
        style.apply([{"role": "robot", "content": "a"}])
    with pytest.raises(LitGPTError):
        style.apply([{"content": "no role"}])


def test_from_name_unknown_suggests():
    with pytest.raises(LitGPTError, match="llama3"):
        PromptStyle.from_name("lama3")
    assert type(PromptStyle.from_name("Llama3")) is prompts.Llama3


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Llama-3.2-1B-Instruct", "Llama3"),
        ("Meta-Llama-3-8B-Instruct", "Llama3"),
        ("SmolLM2-135M-Instruct", "SmolLM2"),
        ("gemma-3-270m-it", "Gemma"),
        ("Gemma-2-9b-it", "Gemma"),
        ("Qwen2.5-Math-7B-Instruct", "Qwen2_5_Math"),
        ("Qwen2.5-7B-Instruct", "Qwen2_5"),
        ("Qwen3-8B", "Qwen3"),
        ("QwQ-32B", "QwQ"),
        ("Phi-3-mini-4k-instruct", "Phi3"),
        ("phi-2", "Phi2"),
        ("phi-4", "Phi4"),
        ("Phi-4-reasoning-plus", "Phi4Reasoning"),
        ("Phi-4-mini-reasoning", "Phi4MiniReasoning"),
        ("Phi-4-mini-instruct", "Phi4Mini"),
        ("DeepSeek-R1-Distill-Llama-8B", "R1Base"),
        ("falcon-7b-instruct", "Falcon"),
        ("Llama-2-7b-chat-hf", "Llama2"),
        ("Llama-2-7b-chat-hf-function-calling-v2", "Llama2FunctionCalling"),
        ("Mistral-7B-Instruct-v0.3", "CodeLlama"),
        ("tiny-llama-1.1b-chat", "TinyLlama"),
        ("stablelm-tuned-alpha-3b", "StableLMAlpha"),
        ("vicuna-7b-v1.5", "Vicuna"),
        ("salamandra-2b-instruct", "Salamandra"),
        ("OLMo-7B-Instruct-hf", "OLMo"),
        ("pythia-160m", "Default"),
        ("SmolLM2-135M", "Default"),
    ],
)
def test_from_config_uses_the_model_table(model, expected):
    assert type(PromptStyle.from_config(SimpleNamespace(name=model))).__name__ == expected


def test_from_config_with_a_real_config():
    from litgpt.config import Config

    assert type(PromptStyle.from_config(Config.from_name("Llama-3.2-1B-Instruct"))) is prompts.Llama3


# -- the real SmolLM2 chat template

CHATS = [
    [{"role": "user", "content": "Hi there"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
    CONVERSATION,
    [{"role": "user", "content": "日本語で  答えて\n\t🐍"}, {"role": "assistant", "content": "はい"}, {"role": "user", "content": "ok"}],
]  # fmt: skip


@pytest.fixture(scope="module")
def smollm2(smollm2_hf_dir):
    from transformers import AutoTokenizer

    return Tokenizer(smollm2_hf_dir), AutoTokenizer.from_pretrained(smollm2_hf_dir)


@pytest.mark.parametrize("chat", CHATS)
def test_chat_template_style_matches_transformers(smollm2, chat):
    tok, hf = smollm2
    expected = hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert ChatTemplate.from_tokenizer(tok).apply(chat) == expected
    assert PromptStyle.from_name("smollm2").apply(chat) == expected
    if len(chat) == 1:
        assert ChatTemplate.from_tokenizer(tok).apply(chat[0]["content"]) == expected
        assert PromptStyle.from_name("smollm2").apply(chat[0]["content"]) == expected


def test_chat_template_style_stop_tokens_and_encoding(smollm2):
    tok, hf = smollm2
    style = ChatTemplate.from_tokenizer(tok)
    assert [tok.token_to_id("<|im_end|>")] in style.stop_tokens(tok)
    text = style.apply("Hi")
    assert tok.encode(text).tolist() == hf.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=True, add_generation_prompt=True, return_dict=False
    )


def test_chat_template_bos_and_errors():
    template = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}"
    template += "{% if add_generation_prompt %}[assistant]{% endif %}"
    style = ChatTemplate(template, bos_token="<s>", eos_token="</s>")
    assert style.apply("Hi", sys_prompt="S") == "<s>[system]S</s>[user]Hi</s>[assistant]"
    refusing = ChatTemplate("{{ raise_exception('only user messages') }}")
    with pytest.raises(LitGPTError, match="only user messages"):
        refusing.apply("Hi")
    with pytest.raises(LitGPTError):
        ChatTemplate("{% for %}").apply("Hi")


# -- stop tokens


def _llama3_like_tokenizer(folder: Path) -> Tokenizer:
    """A tiny word-level tokenizer with Llama-3's special tokens, in a folder named like a Llama-3 model."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    words = ["[UNK]", "hi", "system", "user", "assistant", "You", "are", "a", "helpful", "."]
    hf = HFTokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    hf.add_special_tokens(specials)
    folder.mkdir(parents=True)
    hf.save(str(folder / "tokenizer.json"))
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return Tokenizer(folder)


def test_llama3_stop_tokens_and_single_bos(tmp_path):
    tok = _llama3_like_tokenizer(tmp_path / "Llama-3.2-1B-Instruct")
    eot, eos, bos = tok.token_to_id("<|eot_id|>"), tok.token_to_id("<|end_of_text|>"), tok.bos_id
    style = PromptStyle.from_name("llama3")
    assert style.stop_tokens(tok) == ([eos], [eot])
    assert PromptStyle.from_name("default").stop_tokens(tok) == ([eos],)
    ids = tok.encode(style.apply("hi")).tolist()
    assert tok.use_bos and ids[0] == bos and ids.count(bos) == 1
    assert ids.count(eot) == 2


@pytest.mark.parametrize("name", REQUIRED)
def test_stop_tokens_start_with_eos(smollm2, name):
    tok, _ = smollm2
    stops = PromptStyle.from_name(name).stop_tokens(tok)
    assert stops[0] == [tok.eos_id]
    assert all(seq and all(isinstance(i, int) for i in seq) for seq in stops)


# -- prompt_style.yaml


@pytest.mark.parametrize("name", sorted(prompt_styles))
def test_save_load_round_trip(tmp_path, name):
    style = PromptStyle.from_name(name)
    assert not has_prompt_style(tmp_path)
    save_prompt_style(style, tmp_path)
    assert has_prompt_style(tmp_path)
    data = yaml.safe_load((tmp_path / "prompt_style.yaml").read_text())
    assert data == {"class_path": f"litgpt.prompts.{type(style).__name__}"}
    loaded = load_prompt_style(tmp_path)
    assert loaded == style and type(loaded) is type(style)
    assert loaded.apply(CONVERSATION) == style.apply(CONVERSATION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompt_style.yaml"]  # no temporary leftovers


def test_save_by_name_and_with_init_args(tmp_path, smollm2_hf_dir):
    save_prompt_style("alpaca", tmp_path)
    assert (tmp_path / "prompt_style.yaml").read_text() == "class_path: litgpt.prompts.Alpaca\n"
    save_prompt_style(ChatML("Tu es utile."), tmp_path)
    loaded = load_prompt_style(tmp_path)
    assert loaded.apply("Salut").startswith("<|im_start|>system\nTu es utile.<|im_end|>")
    style = ChatTemplate.from_tokenizer(Tokenizer(smollm2_hf_dir))
    save_prompt_style(style, tmp_path)
    data = yaml.safe_load((tmp_path / "prompt_style.yaml").read_text())
    assert data["class_path"] == "litgpt.prompts.ChatTemplate" and data["init_args"]["template"] == style.template
    assert load_prompt_style(tmp_path).apply(CONVERSATION) == style.apply(CONVERSATION)


@pytest.mark.parametrize(
    "content",
    ["class_path: litgpt.prompts.NoSuchStyle\n", "class_path: os.path.join\n", "[1, 2]\n", "class_path: [\n"],
)
def test_load_rejects_bad_files(tmp_path, content):
    (tmp_path / "prompt_style.yaml").write_text(content)
    with pytest.raises(LitGPTError):
        load_prompt_style(tmp_path)


def test_resolve_prompt_style_order(tmp_path, smollm2_hf_dir):
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2_hf_dir / name, folder / name)
    assert isinstance(resolve_prompt_style(folder), ChatTemplate)  # no named style: the tokenizer's template
    config = SimpleNamespace(name="SmolLM2-135M-Instruct")
    assert type(resolve_prompt_style(folder, config, Tokenizer(folder))) is prompts.SmolLM2
    save_prompt_style("alpaca", folder)
    assert type(resolve_prompt_style(folder, config)) is prompts.Alpaca  # a saved style wins
    empty = tmp_path / "empty"
    empty.mkdir()
    assert type(resolve_prompt_style(empty)) is prompts.Default
