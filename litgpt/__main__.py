"""The `litgpt` command line: a table of commands, each a function whose signature jsonargparse turns into options.

Commands are imported lazily so that `litgpt --help` and `litgpt download list` stay fast.
"""

from __future__ import annotations

import importlib
import re
import sys

from litgpt.errors import LitGPTError

# command -> "module:function". Register a command only when it works.
COMMANDS: dict[str, str] = {
    "download": "litgpt.download:download_from_hub",
    "generate": "litgpt.generate:main",
    "chat": "litgpt.chat:main",
    "generate_speculatively": "litgpt.speculative:main",
    **{f"generate_{kind}": "litgpt.generate:generate_finetuned" for kind in ("full", "adapter", "adapter_v2")},
    "serve": "litgpt.serve:main",
    "convert_to_litgpt": "litgpt.convert_hf:convert_to_litgpt",
    "convert_from_litgpt": "litgpt.convert_hf:convert_from_litgpt",
    "finetune_lora": "litgpt.finetune:finetune_lora",
    "finetune_qlora": "litgpt.finetune:finetune_qlora",
    "finetune_adapter": "litgpt.finetune:finetune_adapter",
    "finetune_adapter_v2": "litgpt.finetune:finetune_adapter_v2",
    "finetune_full": "litgpt.finetune:finetune_full",
    "merge_lora": "litgpt.merge_lora:merge_lora",
    "export_peft": "litgpt.merge_lora:export_peft",
    "evaluate": "litgpt.evaluate:main",
    "pretrain": "litgpt.pretrain:setup",
    "convert_pretrained_checkpoint": "litgpt.convert_pretrained_checkpoint:convert_pretrained_checkpoint",
}
# commands that print their sorted names when given no argument or `list`
LISTS: dict[str, str] = {"pretrain": "litgpt.config:config_names", "download": "litgpt.config:repo_ids"}
# spellings of the established release that mean the same command
ALIASES: dict[str, str] = {
    **{f"finetune {m}": f"finetune_{m}" for m in ("lora", "qlora", "adapter", "adapter_v2", "full")},
    "finetune": "finetune_lora",  # bare `litgpt finetune` is LoRA
    "generate_sequentially": "generate --generate_strategy sequential",
    "generate_tp": "generate --generate_strategy tensor_parallel",
}
# commands whose first options may also be given as bare leading arguments (`litgpt chat microsoft/phi-2`)
POSITIONAL: dict[str, tuple[str, ...]] = {
    "generate": ("checkpoint_dir",),
    **{f"generate_{kind}": ("checkpoint_dir",) for kind in ("full", "adapter", "adapter_v2")},
    "chat": ("checkpoint_dir",),
    "serve": ("checkpoint_dir",),
    "download": ("repo_id",),
    "evaluate": ("checkpoint_dir",),
    "generate_speculatively": ("draft_model_checkpoint_dir", "target_model_checkpoint_dir"),
    "pretrain": ("model_name",),  # `litgpt pretrain EleutherAI/pythia-14m --tokenizer_dir ...`
    **{f"finetune_{m}": ("checkpoint_dir",) for m in ("lora", "qlora", "adapter", "adapter_v2", "full")},
}


def resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _name_beside_dotted_options(args: list[str], option: str) -> list[str]:
    """``--optimizer SGD --optimizer.lr 0.5``: jsonargparse lets the dotted option replace the name (AdamW would
    run); as ``--optimizer.class_path SGD`` the two merge, in either order."""
    if not any(a.startswith(option + ".") for a in args):
        return args
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == option and i + 1 < len(args) and not args[i + 1].lstrip().startswith(("{", "-")):
            out += [option + ".class_path", args[i + 1]]
            i += 2
            continue
        if arg.startswith(option + "=") and not arg.split("=", 1)[1].lstrip().startswith("{"):
            arg = f"{option}.class_path={arg.split('=', 1)[1]}"
        out.append(arg)
        i += 1
    return out


def _refuse_misspelled_method(argv: list[str]) -> None:
    """`litgpt finetune loraa ckpt`: bare `finetune CKPT` is LoRA, so the typo would be taken for a checkpoint."""
    if len(argv) < 2 or argv[0] != "finetune" or argv[1].startswith("-") or f"finetune {argv[1]}" in ALIASES:
        return
    import difflib
    from pathlib import Path

    methods = [alias.split()[1] for alias in ALIASES if alias.startswith("finetune ")]
    close = difflib.get_close_matches(argv[1], methods, n=1, cutoff=0.75)
    if close and not Path(argv[1]).exists():
        sys.exit(f"litgpt finetune: unknown method {argv[1]!r}; did you mean {close[0]!r}? ({', '.join(methods)})")


def _warnings_on_one_line() -> None:
    """Our warnings (a length cut to fit the context, ...) print as ``litgpt: warning: ...``, not with a source line."""
    import warnings

    from litgpt.errors import LitGPTWarning

    show = warnings.showwarning
    if getattr(show, "litgpt_one_line", False):  # main() called again in the same process
        return

    def one_line(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LitGPTWarning):
            print(f"litgpt: warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    one_line.litgpt_one_line = True
    warnings.showwarning = one_line


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _warnings_on_one_line()
    _refuse_misspelled_method(argv)
    shown = argv[0] if argv else ""  # the command as the user spelled it, for messages
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in ALIASES:  # two-word spellings: `finetune lora`
        shown = f"{argv[0]} {argv[1]}"
        argv[0:2] = ALIASES[shown].split()
    elif argv and argv[0] in ALIASES:  # the alias's own options go last so a bare first argument stays first
        command, *options = ALIASES[argv[0]].split()
        argv = [command, *argv[1:], *options]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: litgpt <command> [options]\n\ncommands:\n  " + "\n  ".join(sorted(set(COMMANDS) | set(LISTS) | set(ALIASES))))
        return
    if argv[0] in LISTS and argv[1:] in ([], ["list"]):
        try:
            print("\n".join(resolve(LISTS[argv[0]])()), flush=True)
        except BrokenPipeError:  # `litgpt pretrain | head`: the reader left; no traceback, and none at exit
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if argv[0] not in COMMANDS:
        from litgpt.config import suggest

        sys.exit(f"litgpt: unknown command {argv[0]!r}. {suggest(argv[0], COMMANDS, what='command')}")
    name, rest = argv[0], argv[1:]
    named: list[str] = []
    for option in POSITIONAL.get(name, ()):
        if not rest or rest[0].startswith("-"):
            break
        named += [f"--{option}", rest.pop(0)]
    rest = named + rest
    rest = _name_beside_dotted_options(rest, "--optimizer")
    from argparse import ArgumentError

    from jsonargparse import CLI

    if any(a.startswith(("http://", "https://", "--config=http")) for a in rest):
        _read_configs_from_urls()

    try:
        CLI(
            resolve(COMMANDS[name]), args=rest, prog=f"litgpt {shown}", as_positional=True, exit_on_error=False,
            allow_abbrev=False,  # `serve --max_tokens 5` would silently set --max_tokens_cap
        )  # fmt: skip
    except LitGPTError as e:
        sys.exit(f"litgpt {shown}: error: {e}")
    except ArgumentError as e:  # jsonargparse's own: one line instead of the whole usage text
        message = _option_error(str(e)) + _close_options(str(e), resolve(COMMANDS[name]))
        sys.exit(f"litgpt {shown}: error: {message} (see litgpt {shown} --help)")
    except ValueError as e:
        ours = _cause(e, LitGPTError)  # raised while jsonargparse built an option's object (a data module)
        if ours is None:
            raise
        sys.exit(f"litgpt {shown}: error: {ours}")
    except OSError as e:  # an output folder that is a file, read-only, a full disk: the system's own words
        if type(e).__module__.startswith("requests"):  # a --config URL that cannot be fetched
            sys.exit(f"litgpt {shown}: error: cannot read a --config URL ({type(e).__name__}): {e}")
        if e.filename is None:
            raise
        sys.exit(f"litgpt {shown}: error: {e.strerror or e}: {e.filename}")
    except KeyboardInterrupt:  # Ctrl-C: outputs are written to temporary names first, so nothing half-written
        sys.exit(f"litgpt {shown}: interrupted")


def _read_configs_from_urls() -> None:
    """``--config https://.../lora.yaml`` as the established release reads it (jsonargparse fetches with requests)."""
    import jsonargparse

    if hasattr(jsonargparse, "set_parsing_settings"):
        jsonargparse.set_parsing_settings(config_read_mode_urls_enabled=True)
    else:  # older jsonargparse releases
        jsonargparse.set_config_read_mode(urls_enabled=True)


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``error``'s chain of causes."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _close_options(text: str, command) -> str:
    """For unrecognized options: the command's options spelled closest to each (`--max_tokens` -> --max_tokens_cap,
    --max_new_tokens), its own and those of its dataclass groups (`--train.lr` -> --train.max_steps, ...)."""
    import dataclasses
    import inspect

    from litgpt.config import suggest

    if "nrecognized arguments" not in text:
        return ""
    options = []
    for parameter in inspect.signature(command).parameters.values():
        options.append(parameter.name)
        if dataclasses.is_dataclass(parameter.default):
            options += [f"{parameter.name}.{f.name}" for f in dataclasses.fields(parameter.default)]
    hints = []
    for given in re.findall(r"--([\w.-]+)", text.split("nrecognized arguments", 1)[1]):
        close = suggest(given, options, what="option")
        if close.startswith("Did you mean"):
            hints.append(f"for --{given}: " + ", ".join(f"--{o}" for o in close[len("Did you mean: ") : -1].split(", ")))
    return f"; closest options {'; '.join(hints)}" if hints else ""


def _option_error(text: str) -> str:
    """jsonargparse's message for a bad option value, shortened to the option, the value and what it may be."""
    key = re.match(r'Parser key "([^"]+)"', text)
    given = re.search(r"(?:Given value|Got value): (.*)", text)
    choices = list(dict.fromkeys(re.findall(r"typing\.Literal\[([^\]]*)\]", text)))
    expected = re.match(r"Parser key \"[^\"]+\":\s*Expected a <class '(\w+)'>", text)
    field = re.search(r"Problem with given class_path '[^']*':\s*Parser key \"([^\"]+)\":", text)
    if key and field:  # --data.FIELD VALUE of the wrong type, reported nested under the --data union: name the field
        return _field_error(f"--{key.group(1)}.{field.group(1)}", text[field.end() :])
    if key and given and "litgpt.data.base.DataModule" in text:  # --data Foo: name the data modules
        import inspect

        import litgpt.data
        from litgpt.config import suggest

        modules = [n for n, obj in vars(litgpt.data).items() if inspect.isclass(obj) and n in litgpt.data.__all__
                   and issubclass(obj, litgpt.data.DataModule) and not n.endswith("DataModule")]  # not the bases
        value = given.group(1).strip()
        hint = suggest(value, modules, what="data module")
        if not hint.startswith("Did you mean"):
            hint = f"Choose one of {', '.join(sorted(modules))}, or give a class path."
        return f"--{key.group(1)} {value} is not a data module. {hint}"
    if key and given and (choices or expected):
        what = f"one of {', '.join(choices)}" if choices else f"of type {expected.group(1)}"
        return f"--{key.group(1)} {given.group(1).strip()} is not {what}" + (" or null" if "NoneType" in text else "")
    return " ".join(text.split())


def _field_error(option: str, text: str) -> str:
    """The message for one field of a class option (``text``: jsonargparse's report that follows the field's key)."""
    given = re.search(r"(?:Given value|Got value): (.*)", text)
    head = text[: given.start()] if given else text  # what the field may be: up to its own "Given value"
    choices = list(dict.fromkeys(re.findall(r"typing\.Literal\[([^\]]*)\]", head)))
    types = re.findall(r"Expected a <class '(\w+)'>|Not of type (\w+)", head)
    types = [t for t in dict.fromkeys(a or b for a, b in types) if t != "NoneType"]
    value = f" {given.group(1).strip()}" if given and not given.group(1).startswith("NestedArg(") else ""
    if not (choices or types):
        return f"{option}{value}: " + " ".join(head.split())
    what = f"one of {', '.join(choices)}" if choices else f"of type {' or '.join(types)}"
    return f"{option}{value} is not {what}" + (" or null" if "NoneType" in head else "")


if __name__ == "__main__":
    main()
