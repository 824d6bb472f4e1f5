"""Prompt styles: how an instruction (or a whole conversation) is laid out for a given model.

Every style renders either one prompt string or a list of ``{"role": ..., "content": ...}`` messages (roles
``system``, ``user``, ``assistant``) and names the token sequences that end a reply (``stop_tokens``). Most chat
formats are described as data by :class:`TurnStyle` (one template per role plus the generation prompt).
``ChatTemplate`` renders a tokenizer's own Jinja chat template for models without a named style. The style used
for a checkpoint is stored in ``prompt_style.yaml`` as ``class_path`` (and ``init_args`` where needed).
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import yaml

from litgpt.errors import LitGPTError
from litgpt.utils import atomic_write_text

if TYPE_CHECKING:
    from litgpt.config import Config
    from litgpt.tokenizer import Tokenizer

Messages = list[dict[str, str]]
PROMPT_STYLE_FILE = "prompt_style.yaml"
ROLES = ("system", "user", "assistant")


def _as_messages(prompt: Sequence[Mapping[str, Any]], *, roles: Iterable[str] | None = ROLES) -> Messages:
    """Check a conversation and return it as plain dicts; ``system`` may only come first."""
    if isinstance(prompt, (str, bytes)) or not isinstance(prompt, Sequence):
        raise LitGPTError(f"A prompt must be a string or a list of messages, got {type(prompt).__name__}.")
    allowed = set(roles) if roles is not None else None
    messages: Messages = []
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise LitGPTError(f"Message {i} must be a mapping with 'role' and 'content' keys, got {message!r}.")
        role, content = message["role"], message.get("content")
        if "content" not in message:
            raise LitGPTError(f"Message {i} ({role}) has no 'content'; give each message its text.")
        if not isinstance(content, str):
            raise LitGPTError(f"Message {i} ({role}) must have text 'content', got {type(content).__name__}.")
        if allowed is not None and role not in allowed:
            raise LitGPTError(f"Message {i} has unknown role {role!r}: use one of {', '.join(sorted(allowed))}.")
        if role == "system" and i != 0:
            raise LitGPTError("A 'system' message is only allowed at the start of the conversation.")
        messages.append({**message, "role": role, "content": content})
    return messages


def _split_system(messages: Messages, sys_prompt: str | None) -> tuple[str | None, Messages]:
    """The conversation's system text (its own system message wins over ``sys_prompt``) and the other turns."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return sys_prompt, messages


def _special_ids(tokenizer: Tokenizer, *tokens: str) -> list[list[int]]:
    """One single-id stop sequence per special token that the tokenizer knows (unknown ones are skipped)."""
    found = []
    for token in tokens:
        try:
            found.append([tokenizer.token_to_id(token)])
        except (ValueError, KeyError):
            continue
    return found


def _text_ids(tokenizer: Tokenizer, *texts: str) -> list[list[int]]:
    seqs = []
    for text in texts:
        ids = [int(i) for i in tokenizer.encode(text, bos=False).tolist()]
        if ids:
            seqs.append(ids)
    return seqs


def _eos_stops(tokenizer: Tokenizer) -> list[list[int]]:
    ids = list(getattr(tokenizer, "stop_ids", None) or [tokenizer.eos_id])
    return [[i] for i in ids if i is not None] or [[tokenizer.eos_id]]


def _unique(seqs: Iterable[list[int]]) -> tuple[list[int], ...]:
    seen, out = set(), []
    for seq in seqs:
        key = tuple(seq)
        if key and None not in key and key not in seen:
            seen.add(key)
            out.append(list(seq))
    return tuple(out)


class PromptStyle:
    """Base style: the prompt is used as written, a reply ends at the tokenizer's end-of-sequence token(s).

    Subclasses lay out one prompt in ``render`` and a conversation in ``render_messages``. By default a
    conversation repeats the single-turn layout for every user message, each followed by the assistant's reply.
    """

    #: appended after an assistant reply in the generic multi-turn layout
    turn_separator = "\n\n"

    def apply(
        self, prompt: Union[str, Sequence[Mapping[str, Any]]], *, sys_prompt: str | None = None, **kwargs: Any
    ) -> str:
        if isinstance(prompt, str):
            return self.render(prompt, sys_prompt=sys_prompt, **kwargs)
        return self.render_messages(_as_messages(prompt), sys_prompt=sys_prompt, **kwargs)

    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return prompt

    def render_messages(self, messages: Messages, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        system, turns = _split_system(messages, sys_prompt)
        parts: list[str] = []
        for message in turns:
            if message["role"] == "user":
                parts.append(self.render(message["content"], sys_prompt=system, **kwargs))
            else:
                parts.append(message["content"] + self.turn_separator)
        return "".join(parts)

    def stop_tokens(self, tokenizer: Tokenizer) -> tuple[list[int], ...]:
        return _unique(_eos_stops(tokenizer))

    # -- construction
    @property
    def init_args(self) -> dict[str, Any]:
        """Constructor arguments that ``prompt_style.yaml`` must store to rebuild this style."""
        return {}

    @classmethod
    def from_name(cls, name: str) -> PromptStyle:
        key = name.strip()
        if key not in prompt_styles:
            lowered = {n.lower(): n for n in prompt_styles}
            by_class = {c.__name__.lower(): n for n, c in prompt_styles.items()}
            key = lowered.get(key.lower()) or by_class.get(key.lower().replace("-", "_").replace(".", "_"), key)
        if key not in prompt_styles:
            close = difflib.get_close_matches(name.lower(), list(prompt_styles), n=4, cutoff=0.4)
            hint = f"Did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise LitGPTError(f"Unknown prompt style {name!r}. {hint}Known styles: {', '.join(sorted(prompt_styles))}.")
        return prompt_styles[key]()

    @classmethod
    def from_config(cls, config: Config) -> PromptStyle:
        return model_name_to_prompt_style(config.name)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.init_args == self.init_args

    def __hash__(self) -> int:
        return hash((type(self), json.dumps(self.init_args, sort_keys=True)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.init_args.items())
        return f"{type(self).__name__}({args})"


class Default(PromptStyle):
    """No template. A conversation becomes its messages' text, one paragraph each."""

    def render_messages(self, messages: Messages, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        system, turns = _split_system(messages, sys_prompt)
        texts = ([system] if system else []) + [m["content"] for m in turns]
        return "\n\n".join(texts)


# ----------------------------------------------------------------------------------------------------------------
# Instruction formats (single turn; conversations repeat the layout)

_TASK = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
_TASK_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
)


def _head(sys_prompt: str | None, default: str) -> str:
    """The preamble of an instruction format: the given system text as its own paragraph, else the default."""
    if not sys_prompt:
        return default
    return sys_prompt if sys_prompt.endswith("\n") else sys_prompt + "\n\n"


class Alpaca(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        if kwargs.get("input"):
            head = _head(sys_prompt, _TASK_WITH_INPUT)
            return f"{head}### Instruction:\n{prompt}\n\n### Input:\n{kwargs['input']}\n\n### Response:\n"
        return f"{_head(sys_prompt, _TASK)}### Instruction:\n{prompt}\n\n### Response:\n"


class FLAN(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"{_head(sys_prompt, _TASK)}### Instruction:\n{prompt}\n\n### Response:\n"


class Longform(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"{_head(sys_prompt, _TASK_WITH_INPUT)}### Instruction:\n{prompt}\n\n### Response:\n"


class Falcon(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"{prompt}\nAnswer:"  # the established release's layout (Falcon-Instruct has no fixed template)

    def stop_tokens(self, tokenizer: Tokenizer) -> tuple[list[int], ...]:
        # the model seldom emits EOS; it tends to start a new "User:" turn instead
        return _unique(_eos_stops(tokenizer) + _text_ids(tokenizer, "User:", "\nUser"))


class Platypus(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"### Instruction:\n\n{prompt}\n\n### Response:\n"


class StableCode(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"###Instruction\n{prompt}###Response\n"


class Phi1(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"{prompt}\n\nAnswer:"

    def stop_tokens(self, tokenizer: Tokenizer) -> tuple[list[int], ...]:
        return _unique(_eos_stops(tokenizer) + _text_ids(tokenizer, "Answer:", "\nAnswer:"))


class Phi2(PromptStyle):
    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return f"Instruct: {prompt}\nOutput:"


_LLAMA2_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    " Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content."
    " Please ensure that your responses are socially unbiased and positive in nature.\n\nIf a question does not make"
    " any sense, or is not factually coherent, explain why instead of answering something not correct. If you don't"
    " know the answer to a question, please don't share false information."
)
_SEARCH_FUNCTION = {
    "function": "search_bing",
    "description": "Search the web for content on Bing. This allows users to search online/the internet/the web for content.",
    "arguments": [{"name": "query", "type": "string", "description": "The search query string"}],
}


class Llama2FunctionCalling(PromptStyle):
    """Llama-2 function-calling fine-tunes: the available functions as JSON, then a Llama-2 instruction."""

    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        functions = kwargs.get("functions") or _SEARCH_FUNCTION
        if not isinstance(functions, str):
            functions = json.dumps(functions)
        system = (
            sys_prompt
            or (
                "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible."
                " Your only response should be JSON formatted functions"
            )
        ).strip()
        return f"<FUNCTIONS>{functions.strip()}</FUNCTIONS>\n\n[INST]<<SYS>>\n{system}\n<</SYS>>\n\n{prompt}[/INST]\n\n"


class _InstConversation(PromptStyle):
    """Llama-2 style ``[INST] ... [/INST]`` turns; the system block sits inside the first instruction."""

    default_system: str | None = None
    #: text between the system block and the first user message
    after_system = ""
    end_of_prompt = ""

    def _first(self, prompt: str, system: str | None) -> str:
        if system:
            return f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{self.after_system}{prompt} [/INST]{self.end_of_prompt}"
        return f"[INST] {prompt} [/INST]{self.end_of_prompt}"

    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return self._first(prompt, sys_prompt or self.default_system)

    def render_messages(self, messages: Messages, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        system, turns = _split_system(messages, sys_prompt or self.default_system)
        out, first = "", True
        for message in turns:
            if message["role"] == "assistant":
                out += f"{'' if out.endswith(' ') else ' '}{message['content'].strip()} </s>"
            elif first:
                out, first = self._first(message["content"], system), False
            else:
                out += f"<s>[INST] {message['content']} [/INST]{self.end_of_prompt}"
        return out


class Llama2(_InstConversation):
    default_system = _LLAMA2_SYSTEM
    after_system = " "
    end_of_prompt = " "


class CodeLlama(_InstConversation):
    """CodeLlama and Mistral/Mixtral instruct: no default system prompt."""


# ----------------------------------------------------------------------------------------------------------------
# Chat formats described as data


class TurnStyle(PromptStyle):
    """A chat format given by per-role templates (``{content}`` is replaced) and the generation prompt."""

    begin = ""  #: text before the first turn
    default_system: str | None = None
    system = ""  #: template of a system turn; "" puts the system text inside the first user turn instead
    user = "{content}"
    assistant = "{content}"
    generation = ""  #: opens the assistant's reply
    strip_messages = False  #: strip each message's text when a conversation list is given
    end_tokens: tuple[str, ...] = ()  #: special tokens that end a reply, besides EOS

    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return self._render([{"role": "user", "content": prompt}], sys_prompt, strip=False, **kwargs)

    def render_messages(self, messages: Messages, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        return self._render(messages, sys_prompt, strip=self.strip_messages, **kwargs)

    def _render(self, messages: Messages, sys_prompt: str | None, *, strip: bool, **kwargs: Any) -> str:
        system, turns = _split_system(messages, sys_prompt or self.default_system)
        fix = str.strip if strip else (lambda s: s)
        parts = [self.begin]
        if system is not None and self.system:
            parts.append(self.system.format(content=fix(system)))
        merge_system = system is not None and not self.system
        for message in turns:
            content = fix(message["content"])
            if message["role"] == "user":
                if merge_system:
                    content, merge_system = f"{fix(system)}\n\n{content}", False
                parts.append(self.user.format(content=content))
            else:
                parts.append(self.assistant.format(content=content))
        parts.append(self.generation_prompt(**kwargs))
        return "".join(parts)

    def generation_prompt(self, **kwargs: Any) -> str:
        return self.generation

    def stop_tokens(self, tokenizer: Tokenizer) -> tuple[list[int], ...]:
        return _unique(_eos_stops(tokenizer) + _special_ids(tokenizer, *self.end_tokens))


class StableLMAlpha(TurnStyle):
    default_system = (
        "# StableLM Tuned (Alpha version)\n- StableLM is a helpful and harmless open-source AI language model developed"
        " by StabilityAI.\n- StableLM is excited to be able to help the user, but will refuse to do anything that could"
        " be considered harmful to the user.\n- StableLM is more than just an information source, StableLM is also able"
        " to write poetry, short stories, and make jokes.\n- StableLM will refuse to participate in anything that could"
        " harm a human."
    )
    system = "<|SYSTEM|>{content}"
    user = "<|USER|>{content}"
    assistant = "<|ASSISTANT|>{content}"
    generation = "<|ASSISTANT|>"
    end_tokens = ("<|SYSTEM|>", "<|ASSISTANT|>", "<|USER|>")


class StableLMZephyr(TurnStyle):
    system = "<|system|>\n{content}<|endoftext|>\n"
    user = "<|user|>\n{content}<|endoftext|>\n"
    assistant = "<|assistant|>\n{content}<|endoftext|>\n"
    generation = "<|assistant|>\n"
    end_tokens = ("<|endoftext|>",)


class Falcon3(StableLMZephyr):
    pass


class Vicuna(TurnStyle):
    default_system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    system = "{content} "
    user = "USER: {content} "
    assistant = "ASSISTANT: {content}</s>"
    generation = "ASSISTANT:"


class FreeWilly2(TurnStyle):
    default_system = "This is a system prompt, please behave and help the user."
    system = "### System:\n{content}\n\n"
    user = "### User:\n{content}\n\n"
    assistant = "### Assistant:\n{content}\n\n"
    generation = "### Assistant:\n"


class Phi3(TurnStyle):
    default_system = "You are a helpful assistant."
    system = "<|system|>\n{content}<|end|>\n"
    user = "<|user|>\n{content}<|end|>\n"
    assistant = "<|assistant|>\n{content}<|end|>\n"
    generation = "<|assistant|>\n"
    end_tokens = ("<|end|>",)


class Phi4(TurnStyle):
    system = "<|im_start|>system<|im_sep|>{content}<|im_end|>"
    user = "<|im_start|>user<|im_sep|>{content}<|im_end|>"
    assistant = "<|im_start|>assistant<|im_sep|>{content}<|im_end|>"
    generation = "<|im_start|>assistant<|im_sep|>"
    end_tokens = ("<|im_end|>",)


class Phi4Mini(TurnStyle):
    system = "<|system|>{content}<|end|>"
    user = "<|user|>{content}<|end|>"
    assistant = "<|assistant|>{content}<|end|>"
    generation = "<|assistant|>"
    end_tokens = ("<|end|>",)


class Phi4Reasoning(Phi4):
    """Phi-4-reasoning(-plus): Phi-4's turns under the system prompt the model was trained with."""

    default_system = (
        "You are Phi, a language model trained by Microsoft to help users. Your role as an assistant involves "
        "thoroughly exploring questions through a systematic thinking process before providing the final precise and "
        "accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, exploration, "
        "reassessment, reflection, backtracing, and iteration to develop well-considered thinking process. Please "
        "structure your response into two main sections: Thought and Solution using the specified format: <think> "
        "{Thought section} </think> {Solution section}. In the Thought section, detail your reasoning process in "
        "steps. Each step should include detailed considerations such as analysing questions, summarizing relevant "
        "findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, and "
        "revisiting previous steps. In the Solution section, based on various attempts, explorations, and "
        "reflections from the Thought section, systematically present the final solution that you deem correct. The "
        "Solution section should be logical, accurate, and concise and detail necessary steps needed to reach the "
        "conclusion. Now, try to solve the following question through the above guidelines:"
    )


class Phi4MiniReasoning(Phi4Mini):
    default_system = "Your name is Phi, an AI math expert developed by Microsoft."


class R1Base(TurnStyle):
    """DeepSeek-R1 distilled models: the system text first, then ``<｜User｜>``/``<｜Assistant｜>`` turns."""

    system = "{content}"
    user = "<｜User｜>{content}"
    assistant = "<｜Assistant｜>{content}<｜end▁of▁sentence｜>"
    generation = "<｜Assistant｜>"
    strip_messages = True
    end_tokens = ("<｜end▁of▁sentence｜>",)


class TinyLlama(TurnStyle):
    default_system = "You are a friendly chatbot who always gives helpful, detailed, and polite answers."
    system = "<|system|>\n{content}</s>\n"
    user = "<|user|>\n{content}</s>\n"
    assistant = "<|assistant|>\n{content}</s>\n"
    generation = "<|assistant|>\n"


class Gemma(TurnStyle):
    """Gemma has no system role: a system text opens the first user turn."""

    user = "<start_of_turn>user\n{content}<end_of_turn>\n"
    assistant = "<start_of_turn>model\n{content}<end_of_turn>\n"
    generation = "<start_of_turn>model\n"
    end_tokens = ("<end_of_turn>",)


class Llama3(TurnStyle):
    begin = "<|begin_of_text|>"
    default_system = "You are a helpful assistant."
    system = "<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>"
    user = "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
    assistant = "<|start_header_id|>assistant<|end_header_id|>\n\n{content}<|eot_id|>"
    generation = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    strip_messages = True
    end_tokens = ("<|eot_id|>", "<|eom_id|>")


class OLMo(TurnStyle):
    begin = "<|endoftext|>"
    user = "<|user|>\n{content}\n"
    assistant = "<|assistant|>\n{content}<|endoftext|>\n"
    generation = "<|assistant|>\n"


class ChatML(TurnStyle):
    """``<|im_start|>role\\n...<|im_end|>`` turns (Qwen, SmolLM2, Salamandra)."""

    system = "<|im_start|>system\n{content}<|im_end|>\n"
    user = "<|im_start|>user\n{content}<|im_end|>\n"
    assistant = "<|im_start|>assistant\n{content}<|im_end|>\n"
    generation = "<|im_start|>assistant\n"
    end_tokens = ("<|im_end|>", "<|endoftext|>")

    def __init__(self, system_message: str | None = None) -> None:
        if system_message is not None:
            self.default_system = system_message

    @property
    def init_args(self) -> dict[str, Any]:
        if type(self) is ChatML and self.default_system is not None:
            return {"system_message": self.default_system}
        return {}


class Qwen2_5(ChatML):
    default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


class Qwen2_5_Math(ChatML):
    default_system = "Please reason step by step, and put your final answer within \\boxed{}."


class QwQ(ChatML):
    default_system = (
        "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. You should think step-by-step."
    )


class Qwen3(ChatML):
    """No default system prompt. ``enable_thinking=False`` pre-fills an empty ``<think>`` block."""

    def generation_prompt(self, **kwargs: Any) -> str:
        if kwargs.get("enable_thinking", True) is False:
            return self.generation + "<think>\n\n</think>\n\n"
        return self.generation


class SmolLM2(ChatML):
    default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class Salamandra(ChatML):
    default_system = (
        "I am Salamandra, an AI language model developed at the Barcelona Supercomputing Centre (BSC) by the Language"
        " Technologies Unit. My knowledge base was last updated on August 2023. Today Date: 2024-09-30\nSoy Salamandra,"
        " un modelo lingüístico de IA desarrollado en el Barcelona Supercomputing Centre (BSC) por la Language"
        " Technologies Unit. Mi base de conocimientos se actualizó por última vez en agosto de 2023.\nSoc Salamandra,"
        " un model de llenguatge d'IA desenvolupat al Barcelona Supercomputing Centre (BSC) per la Language"
        " Technologies Unit."
    )


# ----------------------------------------------------------------------------------------------------------------
# A tokenizer's own Jinja chat template

# end-of-turn markers of common templates: when a template uses one, it also stops generation
_TEMPLATE_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def _raise_exception(message: str) -> None:
    raise LitGPTError(f"The chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    from datetime import datetime

    return datetime.now().strftime(fmt)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class ChatTemplate(PromptStyle):
    """Renders a Hugging Face Jinja chat template with ``add_generation_prompt=True``."""

    def __init__(self, template: str, bos_token: str | None = None, eos_token: str | None = None) -> None:
        if not isinstance(template, str) or not template.strip():
            raise LitGPTError("ChatTemplate needs the text of a Jinja chat template.")
        self.template = template
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        self._compiled = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> ChatTemplate:
        if not getattr(tokenizer, "chat_template", None):
            raise LitGPTError(f"The tokenizer in {str(tokenizer.checkpoint_dir)!r} has no chat template.")
        return cls(tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)

    @property
    def init_args(self) -> dict[str, Any]:
        return {"template": self.template, "bos_token": self.bos_token, "eos_token": self.eos_token}

    def _jinja(self):
        if self._compiled is None:
            from jinja2 import TemplateError
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.filters["tojson"] = _tojson
            env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
            try:
                self._compiled = env.from_string(self.template)
            except TemplateError as err:
                raise LitGPTError(f"The chat template is not valid Jinja: {err}") from None
        return self._compiled

    def render(self, prompt: str, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        messages = ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + [
            {"role": "user", "content": prompt}
        ]
        return self._render_template(messages, **kwargs)

    def render_messages(self, messages: Messages, *, sys_prompt: str | None = None, **kwargs: Any) -> str:
        if sys_prompt and not (messages and messages[0]["role"] == "system"):
            messages = [{"role": "system", "content": sys_prompt}] + messages
        return self._render_template(messages, **kwargs)

    def apply(
        self, prompt: Union[str, Sequence[Mapping[str, Any]]], *, sys_prompt: str | None = None, **kwargs: Any
    ) -> str:
        if isinstance(prompt, str):
            return self.render(prompt, sys_prompt=sys_prompt, **kwargs)
        # templates may know more roles (tool, ...): leave their checks to the template
        return self.render_messages(_as_messages(prompt, roles=None), sys_prompt=sys_prompt, **kwargs)

    def _render_template(self, messages: Messages, **kwargs: Any) -> str:
        from jinja2 import TemplateError

        context = {"tools": None, "documents": None, **kwargs}
        context.update(
            messages=messages, add_generation_prompt=True, bos_token=self.bos_token, eos_token=self.eos_token
        )
        try:
            return self._jinja().render(**context)
        except TemplateError as err:
            raise LitGPTError(f"Cannot render the chat template: {err}") from None

    def stop_tokens(self, tokenizer: Tokenizer) -> tuple[list[int], ...]:
        used = [t for t in _TEMPLATE_END_TOKENS if t in self.template]
        return _unique(_eos_stops(tokenizer) + _special_ids(tokenizer, *used))

    def __repr__(self) -> str:
        return f"ChatTemplate(<{len(self.template)} characters>, bos_token={self.bos_token!r}, eos_token={self.eos_token!r})"


# ----------------------------------------------------------------------------------------------------------------
# Registry: style names, and which style a model name gets

prompt_styles: dict[str, type[PromptStyle]] = {
    "default": Default,
    # data-set styles
    "alpaca": Alpaca,
    "flan": FLAN,
    "longform": Longform,
    # model styles
    "stablelm-alpha": StableLMAlpha,
    "stablelm-zephyr": StableLMZephyr,
    "falcon": Falcon,
    "falcon3": Falcon3,
    "llama2-function-calling": Llama2FunctionCalling,
    "llama2": Llama2,
    "freewilly2": FreeWilly2,
    "platypus": Platypus,
    "stablecode": StableCode,
    "codellama": CodeLlama,
    "phi-1": Phi1,
    "phi-2": Phi2,
    "phi-3": Phi3,
    "phi-4": Phi4,
    "phi-4-reasoning": Phi4Reasoning,
    "phi-4-mini": Phi4Mini,
    "phi-4-mini-reasoning": Phi4MiniReasoning,
    "r1-base": R1Base,
    "tinyllama": TinyLlama,
    "gemma": Gemma,
    "llama3": Llama3,
    "olmo": OLMo,
    "chatml": ChatML,
    "qwen2.5": Qwen2_5,
    "qwen2.5-math": Qwen2_5_Math,
    "qwq": QwQ,
    "qwen3": Qwen3,
    "smollm2": SmolLM2,
    "salamandra": Salamandra,
    "vicuna": Vicuna,
}

# First match wins: (regular expression searched in the model name, style name).
MODEL_PROMPT_STYLES: tuple[tuple[str, str], ...] = (
    (r"stablelm-tuned-alpha", "stablelm-alpha"),
    (r"stablelm-zephyr", "stablelm-zephyr"),
    (r"stablecode-instruct", "stablecode"),
    (r"Falcon3.*-Instruct", "falcon3"),
    (r"falcon.*-instruct", "falcon"),
    (r"vicuna|longchat", "vicuna"),
    (r"Llama-2-7b-chat-hf-function-calling", "llama2-function-calling"),
    (r"Llama-2.*-chat", "llama2"),
    (r"Llama-3.*-Instruct", "llama3"),
    (r"OLMo-2.*-(Instruct|SFT|DPO)", "llama3"),
    (r"FreeWilly2", "freewilly2"),
    (r"Platypus", "platypus"),
    (r"CodeLlama|Mi[sx]tral.*Instruct", "codellama"),
    (r"phi-1", "phi-1"),
    (r"phi-2", "phi-2"),
    (r"Phi-3", "phi-3"),
    (r"Phi-4-mini-reasoning", "phi-4-mini-reasoning"),
    (r"Phi-4-reasoning", "phi-4-reasoning"),
    (r"R1-Distill", "r1-base"),
    (r"Phi-4-mini", "phi-4-mini"),
    (r"(?i)phi-4", "phi-4"),
    (r"tiny-llama.*chat", "tinyllama"),
    (r"(?i)gemma.*-it\b", "gemma"),
    (r"OLMo.*-hf", "olmo"),
    (r"Qwen2\.5-Math", "qwen2.5-math"),
    (r"Qwen2\.5", "qwen2.5"),
    (r"QwQ", "qwq"),
    (r"Qwen3", "qwen3"),
    (r"SmolLM2.*Instruct", "smollm2"),
    (r"(?i)salamandra.*instruct", "salamandra"),
)


def prompt_style_name_for_model(model_name: str) -> str | None:
    """The registered style for ``model_name``, or None when no rule matches."""
    for pattern, style in MODEL_PROMPT_STYLES:
        if re.search(pattern, model_name or ""):
            return style
    return None


def model_name_to_prompt_style(model_name: str) -> PromptStyle:
    name = prompt_style_name_for_model(model_name)
    return PromptStyle.from_name(name) if name else Default()


# ----------------------------------------------------------------------------------------------------------------
# prompt_style.yaml


def save_prompt_style(style: Union[str, PromptStyle], checkpoint_dir: Union[str, Path]) -> None:
    style = PromptStyle.from_name(style) if isinstance(style, str) else style
    cls = type(style)
    data: dict[str, Any] = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
    if style.init_args:
        data["init_args"] = dict(style.init_args)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write_text(Path(checkpoint_dir) / PROMPT_STYLE_FILE, text)


def load_prompt_style(checkpoint_dir: Union[str, Path]) -> PromptStyle:
    path = Path(checkpoint_dir) / PROMPT_STYLE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise LitGPTError(f"Cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise LitGPTError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("class_path"), str) or "." not in data["class_path"]:
        raise LitGPTError(
            f"{path} must contain 'class_path: module.ClassName', e.g. 'class_path: litgpt.prompts.Alpaca'."
        )
    module_name, cls_name = data["class_path"].rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise LitGPTError(f"{path} names {data['class_path']!r}, which cannot be imported.") from None
    if not (isinstance(cls, type) and issubclass(cls, PromptStyle)):
        raise LitGPTError(f"{path} names {data['class_path']!r}, which is not a PromptStyle class.")
    init_args = data.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise LitGPTError(f"'init_args' in {path} must be a mapping.")
    try:
        return cls(**init_args)
    except TypeError as err:
        raise LitGPTError(f"Cannot build {data['class_path']} from {path}: {err}") from None


def has_prompt_style(checkpoint_dir: Union[str, Path]) -> bool:
    return (Path(checkpoint_dir) / PROMPT_STYLE_FILE).is_file()


def resolve_prompt_style(
    checkpoint_dir: Union[str, Path], config: Config | None = None, tokenizer: Tokenizer | None = None
) -> PromptStyle:
    """The saved style, else the named style for the model, else the tokenizer's chat template, else Default."""
    checkpoint_dir = Path(checkpoint_dir)
    if has_prompt_style(checkpoint_dir):
        return load_prompt_style(checkpoint_dir)
    for name in (getattr(config, "name", None), checkpoint_dir.name):
        style = prompt_style_name_for_model(name) if name else None
        if style:
            return PromptStyle.from_name(style)
    if tokenizer is None and checkpoint_dir.is_dir():
        from litgpt.tokenizer import Tokenizer

        try:
            tokenizer = Tokenizer(checkpoint_dir)
        except LitGPTError:
            tokenizer = None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return ChatTemplate.from_tokenizer(tokenizer)
    return Default()
