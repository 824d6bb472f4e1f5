"""`litgpt finetune lora|qlora|adapter|adapter_v2|full`: the command-line entry points.

Each command only says what its method changes (which parameters train, how the model is wrapped, what is saved);
the loop, checkpoints, logs and resume live in :mod:`litgpt.training`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import torch

from litgpt.adapter import (
    ADAPTER_V2_WEIGHTS,
    ADAPTER_WEIGHTS,
    add_adapter,
    add_adapter_v2,
    is_adapter_param,
    is_adapter_v2_param,
    mark_only_adapter_as_trainable,
)
from litgpt.data import DataModule
from litgpt.errors import LitGPTError
from litgpt.lora import LORA_WEIGHTS, LoRASettings, add_lora, is_lora_param, mark_only_lora_as_trainable
from litgpt.training import EvalArgs, Job, LogArgs, Method, TrainArgs, fit, hparams_of

try:  # help text for the --train.* / --eval.* fields comes from their docstrings
    from jsonargparse import set_docstring_parse_options

    set_docstring_parse_options(attribute_docstrings=True)
except (ImportError, TypeError):  # pragma: no cover - older jsonargparse
    pass

# jsonargparse warns that a Path in a data module dumps as a str; the str parses back to the same Path
warnings.filterwarnings("ignore", message=r"\s*Dump of a value that does not round-trip")

Quantize = Optional[Literal["bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8-training"]]
Logger = Literal["wandb", "tensorboard", "csv"]
Resume = Union[bool, Literal["auto"], Path]


# ------------------------------------------------------------------------------------------------ the methods
class LoRA(Method):
    name = "lora"
    weights_file = LORA_WEIGHTS

    def __init__(self, checkpoint_dir: Path, settings: LoRASettings) -> None:
        super().__init__(checkpoint_dir)
        self.settings = settings

    def prepare(self, model) -> None:
        add_lora(model, self.settings)
        mark_only_lora_as_trainable(model)

    def is_saved(self, key: str) -> bool:
        return is_lora_param(key)

    def finalize(self, model, final_dir: Path) -> None:
        """Also write the merged weights as ``final/lit_model.pth`` (merged from the unquantized base file)."""
        from litgpt.checkpoint import load_state_dict, model_state, save_state_dict
        from litgpt.loading import ensure_lit_weights
        from litgpt.lora import lora_state_dict, merge_lora_state

        base_file = ensure_lit_weights(Path(self.checkpoint_dir))
        base = model_state(load_state_dict(base_file), base_file)
        lora = {k: v.detach().to("cpu") for k, v in lora_state_dict(model).items()}
        merged = merge_lora_state(base, lora, model.config, self.settings)
        save_state_dict(merged, final_dir / "lit_model.pth")


class Adapter(Method):
    name = "adapter"
    weights_file = ADAPTER_WEIGHTS
    v2 = False

    def __init__(self, checkpoint_dir: Path, prompt_length: int, start_layer: int) -> None:
        super().__init__(checkpoint_dir)
        self.prompt_length, self.start_layer = prompt_length, start_layer

    def prepare(self, model) -> None:
        (add_adapter_v2 if self.v2 else add_adapter)(model, self.prompt_length, self.start_layer)
        mark_only_adapter_as_trainable(model, v2=self.v2)

    def is_saved(self, key: str) -> bool:
        return is_adapter_v2_param(key) if self.v2 else is_adapter_param(key)


class AdapterV2(Adapter):
    name = "adapter_v2"
    weights_file = ADAPTER_V2_WEIGHTS
    v2 = True


# ------------------------------------------------------------------------------------------------ shared plumbing
def _run(method_factory, args: dict) -> None:
    from litgpt.data import Alpaca
    from litgpt.loading import resolve_checkpoint

    if args["train"].max_tokens is not None:  # as in the established release: samples have no fixed length here
        raise LitGPTError(
            "--train.max_tokens is for pretraining; say how long to finetune with --train.epochs or --train.max_steps"
        )
    checkpoint_dir = resolve_checkpoint(args["checkpoint_dir"], access_token=args.get("access_token") or os.getenv("HF_TOKEN"))
    args["checkpoint_dir"] = checkpoint_dir
    if args.get("data") is None:
        args["data"] = Alpaca()
    hparams = hparams_of({k: v for k, v in args.items() if k not in ("method", "access_token")})
    job = Job(
        method=method_factory(checkpoint_dir),
        out_dir=Path(args["out_dir"]),
        data=args["data"],
        train=args["train"],
        eval=args["eval"],
        log=args["log"],
        checkpoint_dir=checkpoint_dir,
        precision=args["precision"],
        quantize=args.get("quantize"),
        devices=args["devices"],
        num_nodes=args["num_nodes"],
        optimizer=args["optimizer"],
        logger_name=args["logger_name"],
        seed=args["seed"],
        resume=args["resume"],
        hparams=hparams,
    )
    torch.set_float32_matmul_precision("high")
    fit(job)


def _train_defaults() -> TrainArgs:
    return TrainArgs(
        save_interval=1000, log_interval=1, global_batch_size=16, micro_batch_size=1, lr_warmup_steps=100, epochs=5
    )


def _eval_defaults() -> EvalArgs:
    return EvalArgs(interval=100, max_new_tokens=100, max_iters=100)


COMMON_DOC = """
        checkpoint_dir: The base model: a checkpoint folder, or a model name / repo id (downloaded when missing).
        out_dir: Directory in which to save checkpoints (step-NNNNNN/, final/) and logs.
        precision: The precision to use for finetuning, e.g. "bf16-true", "bf16-mixed", "32-true"
            (default: bf16-true on GPUs with bfloat16, else 16-mixed; bf16-mixed on CPUs with AVX512-BF16, else 32-true).
        devices: How many devices/GPUs to use ("auto": all).
        num_nodes: How many nodes the code is being run on.
        data: Data-related arguments (a data module, e.g. ``--data JSON --data.json_path x.json``). Default: Alpaca.
        train: Training-related arguments. See ``litgpt.training.TrainArgs`` for details.
        eval: Evaluation-related arguments. See ``litgpt.training.EvalArgs`` for details.
        log: Logging-related arguments (wandb). See ``litgpt.training.LogArgs`` for details.
        optimizer: An optimizer name (e.g. AdamW) or a class_path/init_args mapping.
            A name uses lr=3e-4, weight_decay=0 and betas=(0.9, 0.95) where the optimizer takes them.
        logger_name: The name of the logger to send metrics to: csv (default), tensorboard or wandb.
        seed: The random seed to use for reproducibility.
        access_token: Hugging Face token to download a gated base model (default: $HF_TOKEN).
        resume: Continue from a checkpoint: "auto" (the latest in out_dir, if any), true (the latest, which must
            exist), a step-NNNNNN folder, or false.
"""
LORA_DOC = """
        quantize: Quantize the frozen base weights with bitsandbytes (QLoRA; on a CUDA GPU, or on the CPU with a
            bitsandbytes release that has its CPU backend).
        lora_r: The LoRA rank.
        lora_alpha: The LoRA alpha (the update is scaled by alpha / r).
        lora_dropout: The LoRA dropout value.
        lora_query: Whether to apply LoRA to the query weights in attention.
        lora_key: Whether to apply LoRA to the key weights in attention.
        lora_value: Whether to apply LoRA to the value weights in attention.
        lora_projection: Whether to apply LoRA to the output projection in the attention block.
        lora_mlp: Whether to apply LoRA to the weights of the MLP in the attention block.
        lora_head: Whether to apply LoRA to output head in GPT.
"""
ADAPTER_DOC = """
        quantize: Quantize the frozen base weights with bitsandbytes (on a CUDA GPU, or on the CPU with a
            bitsandbytes release that has its CPU backend).
        adapter_prompt_length: Number of learned prefix embeddings per adapted layer.
        adapter_start_layer: Index of the first layer that gets an adapter prefix.
"""


def _doc(summary: str, *parts: str) -> str:
    return f"{summary}\n\n    Arguments:\n" + "".join(parts)


# ------------------------------------------------------------------------------------------------ the commands
def finetune_lora(
    checkpoint_dir: Optional[Path] = None,
    out_dir: Path = Path("out/finetune/lora"),
    precision: Optional[str] = None,
    quantize: Quantize = None,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    lora_query: bool = True,
    lora_key: bool = False,
    lora_value: bool = True,
    lora_projection: bool = False,
    lora_mlp: bool = False,
    lora_head: bool = False,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = "AdamW",
    logger_name: Logger = "csv",
    seed: int = 1337,
    access_token: Optional[str] = None,
    resume: Resume = False,
) -> None:
    args = dict(locals(), method="lora")
    settings = LoRASettings(lora_r, lora_alpha, lora_dropout, lora_query, lora_key, lora_value, lora_projection, lora_mlp, lora_head)
    _run(lambda ckpt: LoRA(ckpt, settings), args)


finetune_lora.__doc__ = _doc("Finetune a model with LoRA (low-rank adapters; the base weights stay frozen).", COMMON_DOC, LORA_DOC)


def finetune_qlora(
    checkpoint_dir: Optional[Path] = None,
    out_dir: Path = Path("out/finetune/qlora"),
    precision: Optional[str] = None,
    quantize: Quantize = "bnb.nf4",
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    lora_query: bool = True,
    lora_key: bool = False,
    lora_value: bool = True,
    lora_projection: bool = False,
    lora_mlp: bool = False,
    lora_head: bool = False,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = "AdamW",
    logger_name: Logger = "csv",
    seed: int = 1337,
    access_token: Optional[str] = None,
    resume: Resume = False,
) -> None:
    args = dict(locals(), method="lora")
    settings = LoRASettings(lora_r, lora_alpha, lora_dropout, lora_query, lora_key, lora_value, lora_projection, lora_mlp, lora_head)
    _run(lambda ckpt: LoRA(ckpt, settings), args)


finetune_qlora.__doc__ = _doc(
    "Finetune a model with QLoRA: LoRA on 4-bit (bitsandbytes) base weights, on a CUDA GPU or the CPU.", COMMON_DOC,
    LORA_DOC,
)


def finetune_adapter(
    checkpoint_dir: Optional[Path] = None,
    out_dir: Path = Path("out/finetune/adapter"),
    precision: Optional[str] = None,
    quantize: Quantize = None,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    adapter_prompt_length: int = 10,
    adapter_start_layer: int = 2,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = "AdamW",
    logger_name: Logger = "csv",
    seed: int = 1337,
    access_token: Optional[str] = None,
    resume: Resume = False,
) -> None:
    args = dict(locals(), method="adapter")
    _run(lambda ckpt: Adapter(ckpt, adapter_prompt_length, adapter_start_layer), args)


finetune_adapter.__doc__ = _doc(
    "Finetune a model with Adapter (learned, zero-gated attention prefixes).", COMMON_DOC, ADAPTER_DOC
)


def finetune_adapter_v2(
    checkpoint_dir: Optional[Path] = None,
    out_dir: Path = Path("out/finetune/adapter-v2"),
    precision: Optional[str] = None,
    quantize: Quantize = None,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    adapter_prompt_length: int = 10,
    adapter_start_layer: int = 2,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = "AdamW",
    logger_name: Logger = "csv",
    seed: int = 1337,
    access_token: Optional[str] = None,
    resume: Resume = False,
) -> None:
    args = dict(locals(), method="adapter_v2")
    _run(lambda ckpt: AdapterV2(ckpt, adapter_prompt_length, adapter_start_layer), args)


finetune_adapter_v2.__doc__ = _doc(
    "Finetune a model with Adapter v2 (prefixes plus a bias and scale on every linear layer, and the norms).",
    COMMON_DOC,
    ADAPTER_DOC,
)


def finetune_full(
    checkpoint_dir: Optional[Path] = None,
    out_dir: Path = Path("out/finetune/full"),
    precision: Optional[str] = None,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = "AdamW",
    logger_name: Logger = "csv",
    seed: int = 1337,
    access_token: Optional[str] = None,
    resume: Resume = False,
) -> None:
    args = dict(locals(), method="full")
    _run(lambda ckpt: Method(ckpt), args)


finetune_full.__doc__ = _doc("Finetune every weight of a model.", COMMON_DOC)
