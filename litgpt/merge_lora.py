"""`litgpt merge_lora CKPT`: fold a LoRA finetune's ``lit_model.pth.lora`` into its base weights."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from litgpt.errors import LitGPTError


def merge_lora(
    checkpoint_dir: Path,
    pretrained_checkpoint_dir: Optional[Path] = None,
    precision: Optional[str] = None,
    force: bool = False,
) -> Path:
    """Merge the LoRA weights of a finetuning output into its base model and write ``lit_model.pth`` beside them.

    Arguments:
        checkpoint_dir: A LoRA output folder (``final/`` or ``step-NNNNNN/``) with ``lit_model.pth.lora`` and
            ``hyperparameters.yaml``.
        pretrained_checkpoint_dir: The base model folder (default: ``checkpoint_dir`` in ``hyperparameters.yaml``).
        precision: Store the merged weights in this dtype, e.g. "bf16-true" (default: the base weights' dtype).
        force: Merge again even when ``lit_model.pth`` already exists.
    """
    from litgpt.checkpoint import load_state_dict, model_state, save_state_dict
    from litgpt.config import Config
    from litgpt.finetuned import base_checkpoint, read_hyperparameters
    from litgpt.loading import ensure_lit_weights, parse_precision
    from litgpt.lora import LORA_WEIGHTS, LoRASettings, merge_lora_state, read_lora_file

    checkpoint_dir = Path(checkpoint_dir)
    lora_file = checkpoint_dir / LORA_WEIGHTS
    if not lora_file.is_file():
        raise LitGPTError(f"{checkpoint_dir} has no {LORA_WEIGHTS}; is it the output of `litgpt finetune lora`?")
    out = checkpoint_dir / "lit_model.pth"
    if out.is_file() and not force:
        print(f"LoRA weights have already been merged in {checkpoint_dir} (use --force true to merge again)", file=sys.stderr)
        return out
    hparams = read_hyperparameters(checkpoint_dir)
    base_dir = base_checkpoint(checkpoint_dir, hparams, pretrained_checkpoint_dir)
    config = Config.from_checkpoint(checkpoint_dir)
    base_file = ensure_lit_weights(base_dir)
    base = model_state(load_state_dict(base_file), base_file)
    require_base_of_run(base, config, base_dir, checkpoint_dir, given=pretrained_checkpoint_dir is not None)
    merged = merge_lora_state(base, read_lora_file(lora_file), config, LoRASettings.from_hyperparameters(hparams))
    if precision is not None:
        dtype = parse_precision(precision, "cpu")
        merged = {k: v.to(dtype) if v.is_floating_point() else v for k, v in merged.items()}
    save_state_dict(merged, out)
    print(f"Saved the merged weights to {out}", file=sys.stderr)
    return out


def require_base_of_run(base: dict, config, base_dir: Path, checkpoint_dir: Path, given: bool = True) -> None:
    """The base weights must have the shapes of the model the LoRA was trained on (``checkpoint_dir``'s config);
    ``given``: the base came from --pretrained_checkpoint_dir, not from hyperparameters.yaml."""
    from litgpt.checkpoint import require_shapes
    from litgpt.convert_hf import expected_shapes

    hint = "pass the run's base model with --pretrained_checkpoint_dir"
    if not given:
        hint = "has the folder hyperparameters.yaml names changed since the run? P" + hint[1:]
    source = (
        f"The base model {base_dir} does not match the one the LoRA in {checkpoint_dir} was trained on"
        f"{_config_differences(base_dir, config)}"
    )
    require_shapes(base, expected_shapes(config), source, "the run's model", hint)


def _config_differences(base_dir: Path, config) -> str:
    """' (it has n_embd 128; the run's model_config.yaml n_embd 64)' for the first fields that differ, or ''."""
    from dataclasses import fields

    from litgpt.config import Config

    try:
        base_config = Config.from_checkpoint(base_dir)
    except (LitGPTError, OSError):
        return ""
    names = [f.name for f in fields(Config) if f.name != "name"]
    differ = [n for n in names if getattr(base_config, n) != getattr(config, n)][:3]
    if not differ:
        return ""
    there = ", ".join(f"{n} {getattr(base_config, n)}" for n in differ)
    run = ", ".join(f"{n} {getattr(config, n)}" for n in differ)
    return f" (it has {there}; the run's model_config.yaml {run})"


def export_peft(checkpoint_dir: Path, out_dir: Optional[Path] = None, base_model_name_or_path: Optional[str] = None) -> Path:
    """Export a LoRA finetune as a PEFT adapter (``adapter_model.safetensors`` + ``adapter_config.json``), to load with
    ``peft.PeftModel.from_pretrained(model, out_dir)`` on the base model converted by ``litgpt convert_from_litgpt``.

    Arguments:
        checkpoint_dir: A LoRA output folder with ``lit_model.pth.lora`` and ``hyperparameters.yaml``.
        out_dir: Where to write the adapter files (default: ``checkpoint_dir``).
        base_model_name_or_path: The base model recorded in ``adapter_config.json`` (default: the run's base folder).
    """
    from litgpt.lora import export_peft as _export
    from litgpt.utils import writable_folder

    if out_dir is not None and Path(out_dir).exists():  # a new folder is made only once there is something to write
        writable_folder(Path(out_dir))
    return _export(checkpoint_dir, out_dir, base_model_name_or_path)
