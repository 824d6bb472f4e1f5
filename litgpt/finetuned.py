"""Loading a finetuning output folder whose weights file holds only the trained parameters.

A LoRA or adapter checkpoint (``lit_model.pth.lora``, ``.adapter``, ``.adapter_v2``) needs its base model: the run's
``hyperparameters.yaml`` names it (``checkpoint_dir``). ``load_model`` calls :func:`load_finetuned` when a folder has
no ``lit_model.pth``, so ``litgpt generate``, ``litgpt chat`` and ``LLM.load`` accept such folders directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from litgpt.config import Config
from litgpt.errors import LitGPTError

KINDS = {"lit_model.pth.lora": "lora", "lit_model.pth.adapter_v2": "adapter_v2", "lit_model.pth.adapter": "adapter"}


def finetuned_kind(checkpoint_dir: Path) -> Optional[tuple[str, Path]]:
    """(method, weights file) of a finetuning output folder, or None."""
    for name, kind in KINDS.items():
        if (Path(checkpoint_dir) / name).is_file():
            return kind, Path(checkpoint_dir) / name
    return None


def read_hyperparameters(checkpoint_dir: Path) -> dict:
    import yaml

    path = Path(checkpoint_dir) / "hyperparameters.yaml"
    if not path.is_file():
        raise LitGPTError(
            f"{checkpoint_dir} holds finetuned weights but no hyperparameters.yaml (the run's settings: its base "
            "model, LoRA rank and alpha, adapter sizes)"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LitGPTError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise LitGPTError(f"{path} must hold a mapping")
    return data


def base_checkpoint(checkpoint_dir: Path, hparams: dict, override: Optional[Path] = None) -> Path:
    """The base model folder of a finetuning run (``checkpoint_dir`` in its hyperparameters, or ``override``)."""
    from litgpt.loading import CHECKPOINTS, WEIGHTS

    base = override or hparams.get("checkpoint_dir")
    if not base:
        raise LitGPTError(f"{checkpoint_dir}/hyperparameters.yaml has no checkpoint_dir naming the base model")
    base = Path(base)
    for candidate in (base, CHECKPOINTS / base):
        if (candidate / WEIGHTS).is_file() or any(candidate.glob("*.safetensors")):
            return candidate
    source = "given" if override else "from hyperparameters.yaml"
    raise LitGPTError(
        f"The base model of {checkpoint_dir}, {str(base)!r} ({source}), has no {WEIGHTS}; "
        "download or convert it first" + ("" if override else ", or pass its folder explicitly")
    )


def load_finetuned(
    checkpoint_dir: Path,
    config: Optional[Config] = None,
    device: torch.device | str = "cpu",
    dtype: Optional[torch.dtype] = None,
):
    """The GPT of a LoRA/adapter output folder (LoRA merged into the weights), or None for other folders."""
    found = finetuned_kind(checkpoint_dir)
    if found is None:
        return None
    kind, weights = found
    from litgpt.checkpoint import load_state_dict, model_state
    from litgpt.loading import load_model

    hparams = read_hyperparameters(checkpoint_dir)
    base = base_checkpoint(checkpoint_dir, hparams)
    config = config or Config.from_checkpoint(checkpoint_dir)
    model = load_model(base, device=device, dtype=dtype, config=config)
    trained = model_state(load_state_dict(weights), weights)
    if kind == "lora":
        from litgpt.lora import LoRASettings, add_lora, is_lora_param, unwrap_lora

        add_lora(model, LoRASettings.from_hyperparameters(hparams))
        expected = {k for k in model.state_dict() if is_lora_param(k)}
    else:
        from litgpt.adapter import add_adapter, add_adapter_v2, is_adapter_param, is_adapter_v2_param

        add = add_adapter_v2 if kind == "adapter_v2" else add_adapter
        add(model, hparams.get("adapter_prompt_length", 10), hparams.get("adapter_start_layer", 2))
        keep = is_adapter_v2_param if kind == "adapter_v2" else is_adapter_param
        expected = {k for k in model.state_dict() if keep(k) and ("adapter" in k or "gating" in k)}
    missing = sorted(expected - set(trained))
    if missing:
        raise LitGPTError(f"{weights} does not match the run's settings: missing {missing[:3]}")
    model.load_state_dict({k: v.to(device) for k, v in trained.items()}, strict=False)
    if kind == "lora":
        unwrap_lora(model)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model
