"""litgpt: download, convert, chat with, generate from, finetune, pretrain, evaluate and serve LLMs."""

from litgpt.config import Config
from litgpt.model import GPT

__all__ = ["GPT", "Config", "LLM", "Tokenizer", "PromptStyle"]


def __getattr__(name):  # lazy: importing litgpt must stay cheap
    if name == "LLM":
        from litgpt.api import LLM

        return LLM
    if name == "Tokenizer":
        from litgpt.tokenizer import Tokenizer

        return Tokenizer
    if name == "PromptStyle":
        from litgpt.prompts import PromptStyle

        return PromptStyle
    raise AttributeError(f"module 'litgpt' has no attribute {name!r}")
