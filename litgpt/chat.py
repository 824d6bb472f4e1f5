"""`litgpt chat`: talk with a model in the terminal (default: the bundled Gemma-3-270M)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from litgpt.generate import check_settings, load_for_cli, print_reply

EXIT_WORDS = ("!quit", "!exit")


def read_prompt(multiline: bool) -> Optional[str]:
    """The next prompt, or None to leave. Multiline input ends with a line `!submit`; a line `!quit` or `!exit`
    leaves at once."""
    lines: list[str] = []
    try:
        lines.append(input(">> Prompt: "))
        while multiline and lines[-1].strip().lower() not in ("!submit", *EXIT_WORDS):
            lines.append(input())
    except (EOFError, KeyboardInterrupt):
        if not multiline or not lines:
            return None
    if lines and lines[-1].strip().lower() in EXIT_WORDS:
        return None
    text = "\n".join(line for line in lines if line.strip().lower() != "!submit")
    return None if not text.strip() else text


def main(
    checkpoint_dir: Optional[Path] = None,
    *,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Optional[str] = None,
    precision: Optional[str] = None,
    multiline: bool = False,
    sys_prompt: Optional[str] = None,
    access_token: Optional[str] = None,
    compile: bool = False,
) -> None:
    """Chat with a model; earlier turns stay in the conversation.

    Args:
        checkpoint_dir: A checkpoint folder, a registry name or repo id, or a .gguf file. Default: the bundled model.
        max_new_tokens: The most tokens per reply.
        top_k: Sample among the k most likely tokens (None: all).
        top_p: Nucleus sampling threshold in [0, 1]; 0 means greedy.
        temperature: Sampling temperature; 0 means greedy.
        quantize: Weight quantization for inference.
        precision: Weight dtype, e.g. "bf16-true" or "32-true" (default: as `litgpt generate`).
        multiline: Read several lines per prompt; finish a prompt with a line `!submit`.
        sys_prompt: An optional system prompt.
        access_token: Hugging Face token for gated repos (default: $HF_TOKEN).
        compile: Compile the decode step with torch.compile (slower start, faster tokens).
    """
    check_settings(temperature, top_k, top_p, max_new_tokens)  # not only at the first prompt
    llm = load_for_cli(checkpoint_dir, precision, quantize, access_token)
    if compile:
        llm.compile()
    print(f"Now chatting with {llm.config.name}.")
    if multiline:
        print("Multiline input: end a prompt with a line `!submit`; a line `!quit` or `!exit` leaves.\n")
    else:
        print("To exit, press 'Enter' on an empty prompt.\n")
    history: list[dict] = []
    while (prompt := read_prompt(multiline)) is not None:
        history.append({"role": "user", "content": prompt})
        if not fit_history(llm, history, sys_prompt, max_new_tokens):
            history.pop()  # the chat goes on without it
            continue
        print(">> Reply: ", end="", flush=True)
        start = time.perf_counter()
        tokens = llm.generate(
            history, sys_prompt=sys_prompt, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=top_k, top_p=top_p, stream=True, return_as_token_ids=True,
        )  # fmt: skip
        pieces = print_reply(llm, tokens)  # Ctrl-C ends this reply, not the chat
        elapsed = time.perf_counter() - start
        history.append({"role": "assistant", "content": llm.preprocessor.decode(pieces)})
        print(
            f"\nTime for inference: {elapsed:.02f} sec total, {len(pieces) / elapsed:.02f} tokens/sec, "
            f"{len(pieces)} tokens",
            file=sys.stderr,
        )
        print()


def fit_history(llm, history: list[dict], sys_prompt: Optional[str], max_new_tokens: int) -> bool:
    """Drop the oldest exchanges until the conversation plus a reply fits the context; say so when it happens. The
    room kept for the reply is max_new_tokens, at most half the context (a larger max_new_tokens would forget the
    whole conversation at every turn; the reply is then cut where the context ends). False (and said) when the last
    prompt alone leaves no room for a reply."""
    limit = llm.context_length
    room = min(max_new_tokens, limit // 2)
    dropped = 0
    length = len(llm._prompt_ids(history, sys_prompt))
    while len(history) > 1 and length + room > limit:
        gone = 2 if len(history) > 2 else 1
        del history[:gone]
        dropped += gone
        length = len(llm._prompt_ids(history, sys_prompt))
    if dropped:
        print(
            f"(Dropped the {dropped} oldest message(s): the conversation and a reply of {room} tokens must fit the "
            f"context of {limit} tokens.)"
        )
    if length >= limit:
        print(f"(That prompt has {length} tokens but the context holds {limit}: shorten it.)")
        return False
    return True
