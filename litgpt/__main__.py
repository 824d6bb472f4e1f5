"""The `litgpt` command line: a table of commands, each a function whose signature jsonargparse turns into options.

Commands are imported lazily so that `litgpt --help` and `litgpt download list` stay fast.
"""

from __future__ import annotations

import importlib
import sys

from litgpt.errors import LitGPTError

# command -> "module:function". Register a command only when it works.
COMMANDS: dict[str, str] = {
    "download": "litgpt.download:download_from_hub",
    "generate": "litgpt.generate:main",
    "chat": "litgpt.chat:main",
    "convert_to_litgpt": "litgpt.convert_hf:convert_to_litgpt",
    "convert_from_litgpt": "litgpt.convert_hf:convert_from_litgpt",
}
# commands that print their sorted names when given no argument or `list`
LISTS: dict[str, str] = {"pretrain": "litgpt.config:config_names", "download": "litgpt.config:repo_ids"}
# spellings of the established release that mean the same command
ALIASES: dict[str, str] = {
    "generate_sequentially": "generate --generate_strategy sequential",
    "generate_tp": "generate --generate_strategy tensor_parallel",
}
# commands whose first option may also be given as a bare first argument (`litgpt chat microsoft/phi-2`)
POSITIONAL: dict[str, str] = {"generate": "checkpoint_dir", "chat": "checkpoint_dir", "download": "repo_id"}


def resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ALIASES:  # the alias's own options go last so a bare first argument stays first
        command, *options = ALIASES[argv[0]].split()
        argv = [command, *argv[1:], *options]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: litgpt <command> [options]\n\ncommands:\n  " + "\n  ".join(sorted(set(COMMANDS) | set(LISTS) | set(ALIASES))))
        return
    if argv[0] in LISTS and argv[1:] in ([], ["list"]):
        print("\n".join(resolve(LISTS[argv[0]])()))
        return
    if argv[0] not in COMMANDS:
        from litgpt.config import suggest

        sys.exit(f"litgpt: unknown command {argv[0]!r}. {suggest(argv[0], COMMANDS, what='command')}")
    name, rest = argv[0], argv[1:]
    if name in POSITIONAL and rest and not rest[0].startswith("-"):
        rest = [f"--{POSITIONAL[name]}", rest[0], *rest[1:]]
    from jsonargparse import CLI

    try:
        CLI(resolve(COMMANDS[name]), args=rest, prog=f"litgpt {name}", as_positional=True)
    except LitGPTError as e:
        sys.exit(f"litgpt {name}: error: {e}")


if __name__ == "__main__":
    main()
