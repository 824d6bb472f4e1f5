"""litgpt: download, convert, chat with, generate from, finetune, pretrain, evaluate and serve LLMs."""

from importlib import import_module

__all__ = ["GPT", "Config", "LLM", "Tokenizer", "PromptStyle"]

# imported on first use: `litgpt download list` must not pay for importing torch
_LAZY = {
    "GPT": "litgpt.model",
    "Config": "litgpt.config",
    "LLM": "litgpt.api",
    "Tokenizer": "litgpt.tokenizer",
    "PromptStyle": "litgpt.prompts",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'litgpt' has no attribute {name!r}")
