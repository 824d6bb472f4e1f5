"""`litgpt convert_pretrained_checkpoint CKPT OUT`: a pretraining checkpoint as a model folder for
generate/chat/finetune/serve: the weights alone (no optimizer, scheduler or loop state), the model config and the
tokenizer files."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from litgpt.errors import LitGPTError

WEIGHTS = "lit_model.pth"
SIDE_FILES = (
    "model_config.yaml",
    "config.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "hyperparameters.yaml",
    "prompt_style.yaml",
)


def _weights_from(checkpoint_dir: Path) -> dict:
    """The model's state dict from a checkpoint folder (or file), whatever layout the pretraining run wrote."""
    from litgpt.checkpoint import load_state_dict
    from litgpt.training import TRAINING_STATE

    if checkpoint_dir.is_file():
        candidates = [checkpoint_dir]
    else:
        candidates = [checkpoint_dir / WEIGHTS]
    for path in candidates:
        if path.is_file():
            obj = load_state_dict(path, mmap=False)
            # a plain state dict, or {"model": state, "optimizer": ..., "iter_num": ...} as single-file trainers write
            if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
                obj = obj["model"]
            return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    sharded = checkpoint_dir / TRAINING_STATE
    if sharded.is_dir():  # only per-rank shards (a distributed checkpoint): consolidate them
        return _consolidate(sharded)
    raise LitGPTError(f"{checkpoint_dir} holds no {WEIGHTS} (nor a sharded {TRAINING_STATE} folder) to convert")


def _consolidate(folder: Path) -> dict:
    import tempfile

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "full.pt"
        dcp_to_torch_save(folder, target)
        full = torch.load(target, map_location="cpu", weights_only=False)
    state = full.get("model", full)
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def convert_pretrained_checkpoint(checkpoint_dir: Path, output_dir: Path) -> None:
    """Convert a checkpoint of `litgpt pretrain` into a model folder.

    Arguments:
        checkpoint_dir: A pretraining checkpoint: out_dir/final, out_dir/step-NNNNNNNN, or a lit_model.pth file.
        output_dir: The folder to write lit_model.pth, model_config.yaml and the tokenizer files to.
    """
    from litgpt.checkpoint import save_state_dict

    checkpoint_dir, output_dir = Path(checkpoint_dir), Path(output_dir)
    if not checkpoint_dir.exists():
        raise LitGPTError(f"The checkpoint {str(checkpoint_dir)!r} does not exist")
    source = checkpoint_dir if checkpoint_dir.is_dir() else checkpoint_dir.parent
    if not (source / "model_config.yaml").is_file():
        raise LitGPTError(f"{source} has no model_config.yaml; is it a litgpt pretraining checkpoint?")
    if output_dir.resolve() == source.resolve():
        raise LitGPTError("The output folder must differ from the checkpoint folder")
    if output_dir.exists():  # a new folder is made only once the weights have been read
        from litgpt.utils import writable_folder

        writable_folder(output_dir, option="output folder")
    state = _weights_from(checkpoint_dir)
    # the fresh copy also unties shared (tied-embedding) tensors, as the state dict format expects
    state = {k: v.detach().to("cpu").clone() for k, v in state.items()}
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, output_dir / name)
    save_state_dict(state, output_dir / WEIGHTS)
    print(
        f"Saved the model weights ({len(state)} tensors) with its config and tokenizer to {output_dir}", file=sys.stderr
    )
