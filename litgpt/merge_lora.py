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
    merged = merge_lora_state(base, read_lora_file(lora_file), config, LoRASettings.from_hyperparameters(hparams))
    if precision is not None:
        dtype = parse_precision(precision, "cpu")
        merged = {k: v.to(dtype) if v.is_floating_point() else v for k, v in merged.items()}
    save_state_dict(merged, out)
    print(f"Saved the merged weights to {out}", file=sys.stderr)
    return out


def export_peft(checkpoint_dir: Path, out_dir: Optional[Path] = None, base_model_name_or_path: Optional[str] = None) -> Path:
    """Export a LoRA finetune as a PEFT adapter (``adapter_model.safetensors`` + ``adapter_config.json``), to load with
    ``peft.PeftModel.from_pretrained(model, out_dir)`` on the base model converted by ``litgpt convert_from_litgpt``.

    Arguments:
        checkpoint_dir: A LoRA output folder with ``lit_model.pth.lora`` and ``hyperparameters.yaml``.
        out_dir: Where to write the adapter files (default: ``checkpoint_dir``).
        base_model_name_or_path: The base model recorded in ``adapter_config.json`` (default: the run's base folder).
    """
    from litgpt.lora import export_peft as _export

    return _export(checkpoint_dir, out_dir, base_model_name_or_path)
