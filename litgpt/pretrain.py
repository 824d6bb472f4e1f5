"""`litgpt pretrain`: train a model from scratch (or continue pretraining one) on a token stream.

Pretraining is one :class:`~litgpt.training.Method` for the shared loop of :mod:`litgpt.training`: the model is a
freshly initialised ``GPT(config)`` (or the weights of ``--initial_checkpoint_dir``), every parameter trains, batches
are ``(B, T + 1)`` token blocks, and checkpoints go to ``step-%08d/`` and ``final/``. What is specific to
pretraining lives here: choosing the architecture, tied embeddings, how the model is distributed, and the throughput
report (FLOPs per step counted once on the meta device, model FLOPs utilisation where the device's peak is known).

Distribution (``--devices`` x ``--num_nodes`` processes, by Lightning Fabric):

- ``--strategy fsdp`` (the default with more than one process): Fabric's ``ModelParallelStrategy`` with FSDP2
  ``fully_shard`` applied to every transformer block and then to the whole model. Works on GPUs (NCCL) and on CPUs
  (gloo). Checkpoints hold the training state as per-rank shards and the weights consolidated into a plain
  ``lit_model.pth``, so any checkpoint folder loads in a single process.
- ``--strategy ddp``: plain data parallelism (every process holds the whole model).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import torch
import torch.nn as nn

from litgpt.config import Config
from litgpt.data import DataModule
from litgpt.errors import LitGPTError
from litgpt.training import EvalArgs, Job, LogArgs, Method, Progress, TrainArgs, fit, hparams_of

try:  # help text for the --train.* / --eval.* fields comes from their docstrings
    from jsonargparse import set_docstring_parse_options

    set_docstring_parse_options(attribute_docstrings=True)
except (ImportError, TypeError):  # pragma: no cover - older jsonargparse
    pass

warnings.filterwarnings("ignore", message=r"\s*Dump of a value that does not round-trip")

Resume = Union[bool, Literal["auto"], Path]
Strategy = Literal["auto", "fsdp", "ddp"]

# Dense bf16/fp16 tensor-core peak and TF32 peak per device, in FLOP/s (vendor data sheets). Matched by substring
# of torch.cuda.get_device_name(), most specific first.
PEAK_FLOPS: list[tuple[str, float, float]] = [
    ("H200", 989.4e12, 494.7e12),
    ("H100 NVL", 835.0e12, 417.5e12),
    ("H100 PCIe", 756.0e12, 378.0e12),
    ("H100", 989.4e12, 494.7e12),
    ("GH200", 989.4e12, 494.7e12),
    ("B200", 2250e12, 1100e12),
    ("A100", 312e12, 156e12),
    ("A10G", 70e12, 35e12),
    ("A10", 125e12, 62.5e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("RTX 4090", 165.2e12, 82.6e12),
    ("RTX 3090", 71e12, 35.6e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
]


def peak_flops(device: torch.device, precision: str) -> Optional[float]:
    """The device's peak FLOP/s for ``precision``, or None when unknown (CPUs, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, half, tf32 in PEAK_FLOPS:
        if key in name:
            if precision.startswith(("bf16", "16")):
                return half
            if precision.startswith("32") and torch.backends.cuda.matmul.allow_tf32:
                return tf32
            return tf32 / 8 if precision.startswith("32") else None  # plain fp32 runs on the CUDA cores
    return None


def measure_flops(config: Config, batch_size: int, seq_len: int, backward: bool = True) -> int:
    """FLOPs of one forward (and backward) pass of ``GPT(config)`` on a ``(batch_size, seq_len)`` batch, counted
    with ``torch.utils.flop_counter`` on the meta device: no memory, no compute, any model size."""
    from torch.utils.flop_counter import FlopCounterMode

    from litgpt.model import GPT

    with torch.device("meta"):
        model = GPT(config)
        x = torch.zeros((batch_size, seq_len), dtype=torch.long)
    model.max_seq_length = seq_len
    counter = FlopCounterMode(display=False)
    with counter:
        y = model(x)
        if backward:
            y.sum().backward()
    return int(counter.get_total_flops())


def shard_blocks(model: nn.Module, device_mesh) -> nn.Module:
    """``parallelize_fn`` of the ModelParallelStrategy: FSDP2 on every transformer block, then on the root."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import fully_shard

    mesh = device_mesh
    if device_mesh.mesh_dim_names and "data_parallel" in device_mesh.mesh_dim_names:
        mesh = device_mesh["data_parallel"]
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def make_strategy(strategy: str, world_size: int):
    """What Fabric gets as ``strategy``."""
    if strategy == "auto":
        strategy = "fsdp" if world_size > 1 else "auto"
    if strategy == "fsdp":
        from lightning.fabric.strategies import ModelParallelStrategy

        return ModelParallelStrategy(
            parallelize_fn=shard_blocks, data_parallel_size=world_size, tensor_parallel_size=1,
            save_distributed_checkpoint=True,
        )  # fmt: skip
    return strategy  # "ddp" or "auto" (one process)


def tie_weights(model: nn.Module) -> None:
    model.lm_head.weight = model.transformer.wte.weight


WARMUP_STEPS = 2000  # pretraining's default --train.lr_warmup_steps


class Pretrain(Method):
    """Every weight trains, starting from a fresh initialisation or from ``initial_checkpoint_dir``."""

    name = "pretrain"
    title = "pretraining"
    default_warmup_steps = WARMUP_STEPS
    restart_hint = "or start a new run from its weights with --initial_checkpoint_dir {path}"
    step_dir_format = "step-{:08d}"

    def __init__(
        self,
        initial_checkpoint_dir: Optional[Path],
        tie_embeddings: bool,
        flops_per_batch: Optional[int],
        precision: str,
    ) -> None:
        super().__init__(initial_checkpoint_dir)
        self.tie_embeddings = tie_embeddings
        self.flops_per_batch = flops_per_batch  # one micro-batch, forward and backward
        self.precision = precision

    def build_model(self, fabric, config: Config, dtype: Optional[torch.dtype], device: torch.device) -> nn.Module:
        from litgpt.model import GPT

        with torch.device(device):
            model = GPT(config)
        model.init_weights()
        if self.checkpoint_dir is not None:
            from litgpt.checkpoint import load_checkpoint
            from litgpt.loading import ensure_lit_weights

            load_checkpoint(model, ensure_lit_weights(Path(self.checkpoint_dir)))  # a mismatch: one line, no traceback
            fabric.print(f"Continuing pretraining from {self.checkpoint_dir}", file=sys.stderr)
        if self.tie_embeddings:
            tie_weights(model)
        return model.to(dtype=dtype) if dtype is not None else model

    # -- throughput
    def _flops_per_step(self, fabric, progress: Progress) -> Optional[float]:
        if not self.flops_per_batch or progress.iter_num == 0:
            return None
        # every process runs one micro-batch per iteration
        return self.flops_per_batch * fabric.world_size * progress.iter_num / max(progress.step_count, 1)

    def _achieved(self, fabric, progress: Progress, elapsed: float) -> Optional[float]:
        if not self.flops_per_batch or elapsed <= 0:
            return None
        return self.flops_per_batch * fabric.world_size * progress.iter_num / elapsed

    def extra_metrics(self, fabric, progress: Progress, elapsed: float) -> dict:
        if elapsed <= 0:
            return {}
        metrics = {
            "throughput/tokens_per_sec": progress.tokens / elapsed,  # counted over every process
            "throughput/device/tokens_per_sec": progress.tokens / fabric.world_size / elapsed,
        }
        achieved = self._achieved(fabric, progress, elapsed)
        if achieved is not None:
            metrics["throughput/flops_per_sec"] = achieved
            peak = peak_flops(fabric.device, self.precision)
            if peak:
                metrics["throughput/mfu"] = achieved / (peak * fabric.world_size)
        return metrics

    def report_lines(self, fabric, progress: Progress, elapsed: float) -> list:
        lines = []
        per_step = self._flops_per_step(fabric, progress)
        if per_step is not None:
            lines.append(f"FLOPs per optimizer step: {per_step:.4g} (counted on the meta device)")
        achieved = self._achieved(fabric, progress, elapsed)
        if achieved is not None:
            peak = peak_flops(fabric.device, self.precision)
            if peak:
                lines.append(
                    f"Model FLOPs utilization (MFU): {achieved / (peak * fabric.world_size):.2%} "
                    f"({achieved / 1e12:.2f} of {peak * fabric.world_size / 1e12:.0f} peak TFLOP/s)"
                )
            else:
                lines.append(
                    f"Achieved: {achieved / 1e9:.2f} GFLOP/s (MFU unknown: no peak FLOP/s on record for "
                    f"{_device_name(fabric.device)} at {self.precision})"
                )
        return lines


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()


def _train_defaults() -> TrainArgs:
    return TrainArgs(
        save_interval=1000, log_interval=1, global_batch_size=512, micro_batch_size=4, max_tokens=int(3e12),
        max_norm=1.0, min_lr=4e-5, lr_warmup_steps=WARMUP_STEPS, tie_embeddings=False,
    )  # fmt: skip


def _eval_defaults() -> EvalArgs:
    return EvalArgs(interval=1000, max_iters=100, initial_validation=False, final_validation=True)


OPTIMIZER = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 4e-4, "weight_decay": 0.1, "betas": [0.9, 0.95]}}


def resolve_model_config(
    model_name: Optional[str], model_config: Optional[Config], initial_checkpoint_dir: Optional[Path]
) -> Config:
    if model_config is not None:
        return model_config
    if model_name is not None:
        return named_config(model_name)
    if initial_checkpoint_dir is not None:
        return Config.from_checkpoint(initial_checkpoint_dir)
    raise LitGPTError("Say which model to pretrain: --model_name NAME (see `litgpt pretrain list`) or --model_config")


def named_config(name: str) -> Config:
    """The registry's config for ``name`` (a hook the tests shrink)."""
    return Config.from_name(name)


def setup(
    model_name: Optional[str] = None,
    model_config: Optional[Config] = None,
    out_dir: Path = Path("out/pretrain"),
    precision: Optional[str] = None,
    initial_checkpoint_dir: Optional[Path] = None,
    resume: Resume = False,
    data: Optional[DataModule] = None,
    train: TrainArgs = _train_defaults(),
    eval: EvalArgs = _eval_defaults(),
    log: LogArgs = LogArgs(),
    optimizer: Union[str, dict] = OPTIMIZER,
    devices: Union[int, str] = "auto",
    num_nodes: int = 1,
    strategy: Strategy = "auto",
    tokenizer_dir: Optional[Path] = None,
    logger_name: Literal["wandb", "tensorboard", "csv"] = "tensorboard",
    seed: int = 42,
) -> None:
    """Pretrain a model.

    Arguments:
        model_name: The name of the model to pretrain. Choose from names in ``litgpt pretrain list``.
        model_config: A ``litgpt.Config`` object to define the model architecture (instead of ``model_name``).
        out_dir: Directory in which to save checkpoints (step-NNNNNNNN/, final/) and logs.
        precision: The precision to use, e.g. "bf16-true", "bf16-mixed", "32-true"
            (default: bf16-true on GPUs with bfloat16, else 16-mixed; bf16-mixed on CPUs with AVX512-BF16, else 32-true).
        initial_checkpoint_dir: A checkpoint folder whose weights start the training (continued pretraining).
        resume: Continue an interrupted run: "auto" (the latest step-* folder in out_dir, if any), true (the
            latest, which must exist), a step-* folder, or false.
        data: Data-related arguments (a data module: TextFiles, TinyStories, OpenWebText, TinyLlama, LitData).
            Default: TinyLlama.
        train: Training-related arguments. See ``litgpt.training.TrainArgs`` for details.
        eval: Evaluation-related arguments. See ``litgpt.training.EvalArgs`` for details.
        log: Logging-related arguments (wandb). See ``litgpt.training.LogArgs`` for details.
        optimizer: An optimizer name (e.g. AdamW) or a class_path/init_args mapping.
            Default: AdamW with lr=4e-4, weight_decay=0.1, betas=(0.9, 0.95).
        devices: How many devices/GPUs per node to use ("auto": all).
        num_nodes: How many nodes the code is being run on (with torchrun or SLURM; see docs/pretrain.md).
        strategy: How to use several processes: "fsdp" (sharded: FSDP2 per block through Fabric's
            ModelParallelStrategy; the default for more than one), "ddp" (replicated), or "auto".
        tokenizer_dir: The folder with the tokenizer files (e.g. from `litgpt download ... --tokenizer_only true`).
            Default: initial_checkpoint_dir.
        logger_name: The name of the logger to send metrics to: tensorboard (default), csv or wandb.
        seed: The random seed to use for reproducibility.
    """
    args = dict(locals())
    from litgpt.data import TinyLlama

    if model_name is not None and model_config is not None:
        raise LitGPTError("Pass either --model_name or --model_config, not both")
    if initial_checkpoint_dir is not None:
        from litgpt.loading import resolve_checkpoint

        initial_checkpoint_dir = resolve_checkpoint(initial_checkpoint_dir, access_token=os.getenv("HF_TOKEN"))
    if tokenizer_dir is None and initial_checkpoint_dir is None:
        raise LitGPTError(
            "Pretraining needs a tokenizer: pass --tokenizer_dir (e.g. checkpoints/TinyLlama/"
            "TinyLlama-1.1B-intermediate-step-1431k-3T after `litgpt download --repo_id ... --tokenizer_only true`)"
        )
    if tokenizer_dir is not None and not Path(tokenizer_dir).is_dir():
        from litgpt.loading import resolve_checkpoint

        tokenizer_dir = resolve_checkpoint(tokenizer_dir, tokenizer_only=True, access_token=os.getenv("HF_TOKEN"))
    config = resolve_model_config(model_name, model_config, initial_checkpoint_dir)
    if data is None:
        data = TinyLlama()
        args["data"] = data

    from litgpt.training import device_count

    n_devices = device_count(devices)
    world_size = n_devices * num_nodes

    from litgpt.training import default_precision, training_precision

    precision = training_precision(precision) if precision else default_precision()
    seq_len = min(train.max_seq_length or config.block_size, config.block_size)
    try:
        flops = measure_flops(config, train.micro_batch_size, seq_len)
    except Exception as e:  # an architecture the meta device cannot trace: report without FLOPs
        print(f"Could not count FLOPs on the meta device ({type(e).__name__}: {e})", file=sys.stderr)
        flops = None
    if os.getenv("LOCAL_RANK", "0") == "0" and os.getenv("NODE_RANK", os.getenv("SLURM_NODEID", "0")) == "0":
        estimate = config.estimated_params() if hasattr(config, "estimated_params") else None
        if estimate:
            print(f"Model {config.name or '(custom)'}: about {estimate / 1e6:,.1f}M parameters", file=sys.stderr)
        if flops is not None:
            print(f"FLOPs per micro-batch (forward + backward): {flops:.4g}", file=sys.stderr)

    if model_name is None and model_config is None:  # the architecture of --initial_checkpoint_dir
        args["model_config"] = config
    hparams = hparams_of({k: v for k, v in args.items()})
    job = Job(
        method=Pretrain(initial_checkpoint_dir, bool(train.tie_embeddings), flops, precision),
        out_dir=Path(out_dir),
        data=data,
        train=train,
        eval=eval,
        log=log,
        checkpoint_dir=initial_checkpoint_dir,
        tokenizer_dir=Path(tokenizer_dir) if tokenizer_dir is not None else initial_checkpoint_dir,
        config=config,
        precision=precision,
        devices=n_devices,
        num_nodes=num_nodes,
        strategy=make_strategy(strategy, world_size),
        optimizer=optimizer,
        logger_name=logger_name,
        seed=seed,
        resume=resume,
        hparams=hparams,
    )
    torch.set_float32_matmul_precision("high")
    fit(job)
