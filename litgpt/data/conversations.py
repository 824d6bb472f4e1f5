"""Turning multi-turn conversations (LIMA, Deita) into instruction/response rows."""

from __future__ import annotations

from collections.abc import Sequence


def pairs(turns: Sequence[str], multiturn: bool) -> list[dict]:
    """Rows from alternating user/assistant texts. The first exchange is a plain instruction; with ``multiturn``
    every later exchange becomes a row whose input holds the conversation so far."""
    rows = []
    for k in range(0, len(turns) - 1, 2):
        if k and not multiturn:
            break
        history = "\n\n".join(turns[:k])
        rows.append({"instruction": turns[k], "input": history, "output": turns[k + 1]})
    return rows
