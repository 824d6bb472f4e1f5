"""The one training loop of litgpt, shared by every finetuning method (and meant for pretraining too).

Reusable entry point
--------------------
``fit(method, ...)`` runs a whole training job: Fabric setup and launch, data, model, optimizer, the loop, periodic
validation with a generated example, checkpoints, resume, logs and the final report. What differs between jobs is
a :class:`Method` (subclass it and override only what differs):

- ``build_model(fabric, config)``: where the weights come from (default: the base checkpoint of ``checkpoint_dir``;
  pretraining overrides this to build ``GPT(config)`` and call ``init_weights()``);
- ``prepare(model)``: how the model is wrapped and which parameters train (LoRA, adapters; default: all train);
- ``weights_file`` / ``is_saved(key)``: what each checkpoint stores (default: the whole model as ``lit_model.pth``);
- ``finalize(model, final_dir)``: extra files in ``final/`` (LoRA also writes the merged ``lit_model.pth``);
- ``split_batch(batch)``: (input ids, targets aligned with the inputs) from a batch: SFT dicts by default,
  ``(B, T+1)`` token tensors (pretraining data) also work.

The loop: gradient accumulation from ``global_batch_size / (micro_batch_size * devices * num_nodes)`` (no gradient
sync while accumulating), linear warmup then cosine decay to ``min_lr``, optional gradient clipping
(``--train.max_norm``), validation every ``--eval.interval`` optimizer steps, a checkpoint every
``--train.save_interval`` steps in ``out_dir/step-%06d`` and one in ``out_dir/final``. Checkpoints are written to a
hidden temporary folder and renamed into place, so a run killed at any moment loses at most the steps since the last
checkpoint and never leaves a partial one. ``--resume auto`` continues from the latest checkpoint: trained weights,
optimizer, scheduler, data position, RNG state and the loss history are restored, so the resumed run reproduces the
uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from litgpt.config import Config
from litgpt.errors import LitGPTError
from litgpt.loading import PRECISIONS

TRAINING_STATE = "training_state.pth"
TRAINING_LAYOUT = "training_layout.json"
HYPERPARAMETERS = "hyperparameters.yaml"
STEP_DIR = re.compile(r"^step-(\d+)$")


# ------------------------------------------------------------------------------------------------ argument groups
@dataclass
class TrainArgs:
    """Training-related arguments (``--train.*``)."""

    save_interval: Optional[int] = 1000
    """Number of optimizer steps between saving checkpoints (None: only the final one)"""
    log_interval: int = 1
    """Number of iterations between logging calls"""
    global_batch_size: int = 64
    """Number of samples between optimizer steps across data-parallel ranks"""
    micro_batch_size: int = 4
    """Number of samples per data-parallel rank"""
    lr_warmup_steps: Optional[int] = 100
    """Number of optimizer steps with learning rate warmup active"""
    lr_warmup_fraction: Optional[float] = None
    """The fraction of an epoch to use for learning rate warmup (instead of lr_warmup_steps)"""
    epochs: Optional[int] = None
    """Number of epochs to train on"""
    max_tokens: Optional[int] = None
    """Total number of tokens to train on"""
    max_steps: Optional[int] = None
    """Limits the number of optimizer steps to run"""
    max_time: Optional[float] = None
    """Stop training after this many seconds of this run's loop (at the end of an optimizer step; the final
    checkpoint is saved as usual). The learning-rate schedule still follows the other limits"""
    max_seq_length: Optional[int] = None
    """Limits the length of samples (default: the model's block size)"""
    tie_embeddings: Optional[bool] = None
    """Whether to tie the embedding weights with the language modeling head weights (pretraining)"""
    max_norm: Optional[float] = None
    """Clip gradients to this total norm (None: no clipping)"""
    min_lr: float = 6e-5
    """The learning rate at the end of the cosine decay"""
    group_by_length: bool = False
    """Batch samples of similar length together (less padding; batches still come in a seeded random order)"""
    activation_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: much less memory, about a third more compute"""

    def check(self) -> None:
        _at_least_one("train", log_interval=self.log_interval, global_batch_size=self.global_batch_size,
                      micro_batch_size=self.micro_batch_size, epochs=self.epochs, max_steps=self.max_steps,
                      max_tokens=self.max_tokens, max_seq_length=self.max_seq_length)  # fmt: skip
        if self.max_time is not None and not self.max_time > 0:
            raise LitGPTError(f"--train.max_time must be a positive number of seconds, got {self.max_time}")
        # `not x > 0` rather than `x <= 0`: NaN is refused too
        if self.max_norm is not None and not self.max_norm > 0:  # a negative one flips the gradients (ascent)
            raise LitGPTError(f"--train.max_norm must be a positive number (or null: no clipping), got {self.max_norm}")
        if not self.min_lr >= 0:
            raise LitGPTError(f"--train.min_lr must be 0 or more, got {self.min_lr}")
        if self.lr_warmup_steps is not None and self.lr_warmup_steps < 0:
            raise LitGPTError(f"--train.lr_warmup_steps must be 0 or more, got {self.lr_warmup_steps}")
        if self.lr_warmup_fraction is not None and not 0 <= self.lr_warmup_fraction <= 1:
            raise LitGPTError(f"--train.lr_warmup_fraction must be between 0 and 1, got {self.lr_warmup_fraction}")

    def gradient_accumulation_iters(self, devices: int, num_nodes: int = 1) -> int:
        per_step = self.micro_batch_size * devices * num_nodes
        if self.global_batch_size % per_step:
            raise LitGPTError(
                f"--train.global_batch_size ({self.global_batch_size}) must be a multiple of "
                f"--train.micro_batch_size x devices x num_nodes ({per_step})"
            )
        return self.global_batch_size // per_step

    def warmup_steps(self, steps_per_epoch: int, default_steps: int = 100) -> int:
        """Warmup steps; ``default_steps`` is the command's default lr_warmup_steps (pretrain: 2000), which a
        --train.lr_warmup_fraction replaces (any other explicit value conflicts with it)."""
        if self.lr_warmup_fraction is not None:
            if self.lr_warmup_steps not in (None, 0, default_steps):
                raise LitGPTError("Set either --train.lr_warmup_steps or --train.lr_warmup_fraction, not both")
            return round(self.lr_warmup_fraction * steps_per_epoch)
        return self.lr_warmup_steps or 0


@dataclass
class EvalArgs:
    """Evaluation-related arguments (``--eval.*``)."""

    interval: int = 600
    """Number of optimizer steps between evaluation calls"""
    max_new_tokens: Optional[int] = None
    """Number of tokens to generate for the example shown at each evaluation (None or 0: no example)"""
    max_iters: int = 100
    """Number of validation batches: the loss is over the first max_iters x micro_batch_size validation samples,
    shared out among the processes (the same value for any number of them)"""
    initial_validation: bool = False
    """Whether to evaluate on the validation set at the beginning of the training"""
    final_validation: bool = True
    """Whether to evaluate on the validation set at the end of the training"""
    evaluate_example: Union[str, int] = "first"
    """Which validation sample to generate from: "first", "random", or an index"""

    def check(self) -> None:
        _at_least_one("eval", interval=self.interval, max_iters=self.max_iters)
        if self.max_new_tokens is not None and self.max_new_tokens < 0:
            raise LitGPTError(f"--eval.max_new_tokens must be 0 or more (0: no example), got {self.max_new_tokens}")
        example = self.evaluate_example
        if example not in ("first", "random") and not (isinstance(example, int) or str(example).lstrip("-").isdigit()):
            raise LitGPTError(f"--eval.evaluate_example must be first, random or a sample index, got {example!r}")


def device_count(devices: Union[int, str]) -> int:
    """``--devices`` as a number: "auto" and -1 mean every CUDA GPU (one CPU process without one)."""
    if devices in ("auto", -1, "-1"):
        return torch.cuda.device_count() if torch.cuda.is_available() else 1
    try:
        count = int(devices)
    except ValueError:
        count = 0
    if count < 1:
        raise LitGPTError(f"--devices must be a positive number of devices, 'auto' or -1, got {devices!r}")
    return count


def _at_least_one(group: str, **values: Optional[int]) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise LitGPTError(f"--{group}.{name} must be at least 1, got {value}")


@dataclass
class LogArgs:
    """Logging-related arguments (``--log.*``, used by the wandb logger)."""

    project: Optional[str] = None
    """Project name"""
    run: Optional[str] = None
    """Run name"""
    group: Optional[str] = None
    """Group name"""
    log_model: bool = False
    """Upload the checkpoints as artifacts (wandb)"""
    # the established release's Lightning.ai logger (litlogger) fields: accepted so that its configs and
    # hyperparameters.yaml files run here; no logger of this tool uses them
    teamspace: Optional[str] = None
    """Lightning.ai teamspace (litlogger only; ignored here)"""
    metadata: Optional[dict] = None
    """Tags for the experiment (litlogger only; ignored here)"""
    save_logs: bool = True
    """Upload the terminal logs (litlogger only; ignored here)"""
    checkpoint_name: Optional[str] = None
    """Base name of logged checkpoints (litlogger only; ignored here)"""

    def warn_ignored(self) -> None:
        import warnings

        defaults = LogArgs()
        for name in ("teamspace", "metadata", "save_logs", "checkpoint_name"):
            if getattr(self, name) != getattr(defaults, name):
                warnings.warn(f"--log.{name} is ignored: only the Lightning.ai logger (litlogger) uses it", stacklevel=2)


# ------------------------------------------------------------------------------------------------ what a method changes
class Method:
    """The full-finetuning behaviour; other methods override what differs (see the module docstring)."""

    name = "full"
    weights_file = "lit_model.pth"
    step_dir_format = "step-{:06d}"
    """Name of the periodic checkpoint folders (pretraining uses ``step-{:08d}``)"""
    title: Optional[str] = None
    """Progress-bar label (default: "<name> finetuning")"""
    default_warmup_steps = TrainArgs.lr_warmup_steps
    """The command's default --train.lr_warmup_steps (a --train.lr_warmup_fraction alone replaces it)"""
    restart_hint = "or start a new run"
    """How to continue from a checkpoint's weights (``{path}``) without resuming its training state"""

    def __init__(self, checkpoint_dir: Optional[Path] = None) -> None:
        self.checkpoint_dir = checkpoint_dir

    def build_model(self, fabric, config: Config, dtype: Optional[torch.dtype], device: torch.device) -> nn.Module:
        from litgpt.loading import load_model

        return load_model(self.checkpoint_dir, device=device, dtype=dtype, config=config)

    def prepare(self, model: nn.Module) -> None:
        for param in model.parameters():
            param.requires_grad = True

    def is_saved(self, key: str) -> bool:
        return True

    def finalize(self, model: nn.Module, final_dir: Path) -> None:
        pass

    def extra_metrics(self, fabric, progress: Progress, elapsed: float) -> dict:
        """Metrics logged beside the loss at every log interval (pretraining: throughput)."""
        return {}

    def report_lines(self, fabric, progress: Progress, elapsed: float) -> list:
        """Lines added to the final report (pretraining: FLOPs and model FLOPs utilisation)."""
        return []

    def split_batch(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, targets) with ``targets[:, t]`` the label of the token after position t."""
        if isinstance(batch, dict):
            input_ids, labels = batch["input_ids"], batch["labels"]
            pad = torch.full_like(labels[:, :1], -100)  # litgpt.loss.IGNORE_INDEX
            return input_ids, torch.cat((labels[:, 1:], pad), dim=1)
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


# ------------------------------------------------------------------------------------------------ small pieces
def separate_shared_trainables(model: nn.Module) -> int:
    """Give a trainable parameter that shares its data with another parameter its own copy; return how many.

    An output layer saved as the embedding it copies loads as one tensor (memory-mapped, or one cast copy), which
    inference keeps. Trained, each of the two learns on its own, as in the established release (and frozen ones,
    as under LoRA, stay shared)."""
    seen: dict[int, nn.Parameter] = {}
    separated = 0
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            other = seen.setdefault(param.data_ptr(), param)
            if other is not param and (param.requires_grad or other.requires_grad):
                module._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
                separated += 1
    return separated


def default_precision(quantize: Optional[str] = None) -> str:
    """The training precision when none is given. GPUs: bfloat16 weights where they support it, else mixed float16.
    CPUs with AVX512-BF16: mixed bfloat16 (float32 weights and optimizer, products in bfloat16 under autocast; the
    established release's default), where the LoRA recipe of config_hub/finetune/smollm2-135m trains at 631
    tokens/s against 380 in float32 (795 with bfloat16 weights, which learn more coarsely: a small model pretrained
    in pure bfloat16 lagged float32 by 0.2 nats after 120 steps). QLoRA needs true bfloat16. Other CPUs: float32."""
    if torch.cuda.is_available():
        return "bf16-true" if torch.cuda.is_bf16_supported() else "16-mixed"
    from litgpt import kernels

    if not kernels.native_bf16():
        return "32-true"
    return "bf16-true" if quantize is not None else "bf16-mixed"


# --precision for training: the names generate/chat/serve take (litgpt.loading.PRECISIONS) as Fabric's "-true"
# settings, plus Fabric's own: bare "16" and "bf16" mean mixed precision to it, and "64-true"
TRAINING_PRECISIONS = {
    **{name: {torch.float32: "32-true", torch.bfloat16: "bf16-true", torch.float16: "16-true"}[dtype]
       for name, dtype in PRECISIONS.items()},
    "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed", "16": "16-mixed", "16-mixed": "16-mixed", "64-true": "64-true",
}  # fmt: skip
TRANSFORMER_ENGINE = ("transformer-engine", "transformer-engine-float16")


def training_precision(precision: Union[str, int]) -> str:
    """Fabric's precision setting for ``--precision`` (a one-line error for an unknown one)."""
    name = str(precision)
    if name in TRANSFORMER_ENGINE:  # Fabric's FP8 setting, where NVIDIA Transformer Engine is installed
        import importlib.util

        if importlib.util.find_spec("transformer_engine") is None:
            raise LitGPTError(
                f"--precision {name} needs NVIDIA Transformer Engine (a CUDA GPU and pip install transformer_engine); "
                f"without it use one of {', '.join(sorted(TRAINING_PRECISIONS))}"
            )
        return name
    if name not in TRAINING_PRECISIONS:
        raise LitGPTError(f"Unknown precision {name!r}; use one of {', '.join(sorted(TRAINING_PRECISIONS))}")
    return TRAINING_PRECISIONS[name]


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype the weights are stored in under a Fabric precision setting."""
    if precision.endswith("-true"):
        return {"bf16": torch.bfloat16, "16": torch.float16, "64": torch.float64}.get(precision[:-5], torch.float32)
    return torch.float32


def make_optimizer(spec: Union[str, dict], params, **defaults) -> torch.optim.Optimizer:
    """An optimizer from a name (``AdamW``, ``torch.optim.SGD``) or ``{class_path, init_args}``."""
    import importlib

    if isinstance(spec, str):
        class_path, init_args = spec, {}
    elif isinstance(spec, dict):
        # {class_path, init_args}; keys beside them come from dotted overrides (`--optimizer.lr 0.1`), which
        # jsonargparse passes as strings; alone they configure the default optimizer
        import yaml

        class_path = spec.get("class_path", "AdamW")
        init_args = dict(spec.get("init_args") or {})
        extra = {k: v for k, v in spec.items() if k not in ("class_path", "init_args")}
        init_args.update({k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in extra.items()})
    else:
        raise LitGPTError(f"--optimizer must be a name like AdamW or a class_path/init_args mapping, got {spec!r}")
    if "." in class_path:
        module, _, cls_name = class_path.rpartition(".")
    else:
        module, cls_name = "torch.optim", class_path
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):
        raise LitGPTError(f"Unknown optimizer {class_path!r}; use a torch.optim class such as AdamW or SGD") from None
    if "betas" in init_args:
        init_args["betas"] = tuple(init_args["betas"])
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in defaults.items() if k in accepted}
    kwargs.update(init_args)
    params = list(params)
    if "fused" in accepted and "fused" not in kwargs and "foreach" not in kwargs and fusable(params):
        kwargs["fused"] = True  # one kernel per tensor instead of a dozen passes: 4-8x faster Adam steps on a CPU
    try:
        return cls(params, **kwargs)
    except (ValueError, TypeError) as e:  # torch's own checks: "Invalid learning rate: -1", an unknown argument
        raise LitGPTError(f"--optimizer {cls.__name__}: {e}") from None


def fusable(params: list) -> bool:
    """Whether torch's fused optimizer kernels take these parameters: plain floating tensors on a CPU or GPU."""
    flat = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    return bool(flat) and all(
        type(p) is torch.nn.Parameter and p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in flat
    )


OPTIMIZER_DEFAULTS = dict(lr=3e-4, weight_decay=0.0, betas=(0.9, 0.95))


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Picklable schedule function for ``LambdaLR`` (so that the scheduler state round-trips)."""

    def __init__(self, warmup: int, total: int, min_ratio: float) -> None:
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.warmup, self.total, self.min_ratio)


class ResumableBatchSampler(Sampler):
    """Batches of indices for one epoch: shuffled with ``seed + epoch``, sharded across ranks, starting at ``start``.

    The order depends only on (seed, epoch), so a resumed run sees exactly the batches the interrupted run would have.
    """

    GROUP_SPAN = 64  # with lengths: samples sorted by length within windows of this many batches

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        lengths: Optional[Sequence[int]] = None,
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.lengths = lengths
        self.epoch = 0
        self.start = 0

    def _indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        per_rank = math.ceil(self.n / self.world_size)
        order += order[: per_rank * self.world_size - self.n]  # pad so that every rank gets as many
        if self.shuffle and self.lengths is not None:
            order = self._grouped(order)
        return order[self.rank :: self.world_size]

    def _grouped(self, order: list[int]) -> list[int]:
        """``order`` rearranged so that each step's samples (one batch per rank) have similar lengths: sorted by
        length within windows of ``GROUP_SPAN`` steps, then the steps shuffled (seeded like the order)."""
        step = self.batch_size * self.world_size
        window = step * self.GROUP_SPAN
        steps = []
        for start in range(0, len(order), window):
            part = sorted(order[start : start + window], key=lambda i: -self.lengths[i])
            steps += [part[k : k + step] for k in range(0, len(part), step)]
        # whole steps are shuffled; a short last one stays last, so that every step is one contiguous block of
        # batch_size * world_size indices and the caller's [rank::world_size] slicing gives each rank its batch
        tail = steps.pop() if len(steps[-1]) < step else None
        shuffle = torch.Generator().manual_seed(self.seed + self.epoch + 1_000_003)
        steps = [steps[k] for k in torch.randperm(len(steps), generator=shuffle).tolist()] + ([tail] if tail else [])
        return [i for s in steps for i in s]

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.n / self.world_size) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:  # computed on the fly: a huge streaming dataset needs no list of all its indices
            per_rank = math.ceil(self.n / self.world_size)
            for b in range(self.start, len(self)):
                positions = range(b * self.batch_size, min((b + 1) * self.batch_size, per_rank))
                yield [(k * self.world_size + self.rank) % self.n for k in positions]
            return
        indices = self._indices()
        for b in range(self.start, len(self)):
            yield indices[b * self.batch_size : (b + 1) * self.batch_size]


def val_shard(loader: DataLoader, max_batches: int, rank: int, world_size: int) -> Iterator[tuple[Any, int]]:
    """This process's share of the first ``max_batches * batch_size`` samples of ``loader``'s dataset: (batch, how
    many of its leading rows are real). Every process gets as many batches; rows past the end repeat a sample and
    must not count."""
    batch_size = loader.batch_size or 1
    n = min(len(loader.dataset), max_batches * batch_size)
    per_rank = math.ceil(n / world_size)
    positions = list(range(rank, per_rank * world_size, world_size))  # sample k*world_size + rank: k-th of this rank
    batches = [positions[b : b + batch_size] for b in range(0, len(positions), batch_size)]
    real = [sum(pos < n for pos in batch) for batch in batches]
    shard = DataLoader(
        loader.dataset,
        batch_sampler=[[pos % n for pos in batch] for batch in batches],
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
    )
    yield from zip(shard, real)


def sample_lengths(dataset) -> list[int]:
    """Token count of every sample, for ``--train.group_by_length`` (instruction datasets know them)."""
    if not hasattr(dataset, "lengths"):
        raise LitGPTError(
            f"--train.group_by_length needs a dataset that knows its sample lengths (instruction data); "
            f"{type(dataset).__name__} does not"
        )
    return list(dataset.lengths())


@dataclass
class Progress:
    """Everything besides weights and optimizer that a resumed run needs to continue exactly."""

    iter_num: int = 0
    step_count: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0
    real_tokens: int = 0
    val_loss: Optional[float] = None
    recent_losses: list = field(default_factory=list)
    history: list = field(default_factory=list)  # [kind, step, iter, loss]
    elapsed: float = 0.0


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module``'s parameters are DTensor shards (FSDP2 through Fabric's ModelParallelStrategy)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state_dict(module: nn.Module) -> dict:
    """The whole, unsharded state dict (for a sharded module a collective call: every rank must make it; the full
    tensors land on rank 0, in CPU memory)."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def find_resume_checkpoint(out_dir: Path, weights_file: str) -> Optional[Path]:
    """The latest complete ``step-*`` folder in ``out_dir`` (hidden temporary folders are ignored)."""
    best, best_step = None, -1
    if not out_dir.is_dir():
        return None
    for path in out_dir.iterdir():
        match = STEP_DIR.match(path.name)
        if match and (path / TRAINING_STATE).exists() and (path / weights_file).is_file():
            if int(match.group(1)) > best_step:
                best, best_step = path, int(match.group(1))
    return best


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``; an existing ``target`` is replaced only once ``tmp`` is whole."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def plot_losses(history: list, path: Path) -> Optional[Path]:
    """``loss.png`` with the train and validation loss against the optimizer step (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    train = [(h[1], h[3]) for h in history if h[0] == "train"]
    val = [(h[1], h[3]) for h in history if h[0] == "val"]
    if not train and not val:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from litgpt.utils import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def make_logger(logger_name: str, out_dir: Path, log: LogArgs):
    root = out_dir / "logs"
    if logger_name == "csv":
        from lightning.fabric.loggers import CSVLogger

        return CSVLogger(root_dir=root, name="csv", flush_logs_every_n_steps=10)
    if logger_name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError:
                raise LitGPTError("--logger_name tensorboard needs tensorboard: pip install tensorboard") from None
        from lightning.fabric.loggers import TensorBoardLogger

        return TensorBoardLogger(root_dir=root, name="tensorboard")
    if logger_name == "wandb":
        try:
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:
            raise LitGPTError("--logger_name wandb needs wandb: pip install wandb") from None
        return WandbLogger(
            project=log.project or "litgpt", name=log.run, group=log.group, save_dir=str(root), log_model=log.log_model
        )
    raise LitGPTError(f"Unknown logger {logger_name!r}; use csv, tensorboard or wandb")


def copy_checkpoint_files(src: Optional[Path], dst: Path, config: Optional[Config] = None) -> None:
    """Tokenizer and other side files of the base checkpoint, so that every output folder is self-contained. A
    config.json that describes another model than ``config`` (pretraining with another model's tokenizer folder)
    is left out: tools that read it would take the trained model for that one."""
    from litgpt.api import TOKENIZER_FILES
    from litgpt.hf_config import describes

    if src is None:
        return
    for name in TOKENIZER_FILES:
        source = Path(src) / name
        if source.is_file() and not (name == "config.json" and config is not None and not describes(source, config)):
            shutil.copy2(source, dst / name)


# ------------------------------------------------------------------------------------------------ the job
@dataclass
class Job:
    """Everything ``fit`` needs: the command's resolved arguments."""

    method: Method
    out_dir: Path
    data: Any
    train: TrainArgs
    eval: EvalArgs
    log: LogArgs = field(default_factory=LogArgs)
    checkpoint_dir: Optional[Path] = None
    tokenizer_dir: Optional[Path] = None
    config: Optional[Config] = None
    precision: Optional[str] = None
    quantize: Optional[str] = None
    devices: Union[int, str] = 1
    num_nodes: int = 1
    strategy: Any = "auto"
    optimizer: Union[str, dict] = "AdamW"
    logger_name: str = "csv"
    seed: int = 1337
    resume: Union[bool, str, Path] = False
    hparams: dict = field(default_factory=dict)
    accelerator: str = "auto"


def fit(job: Job) -> Optional[Progress]:
    """Set up Fabric and run the job (on every process when several devices are used)."""
    import lightning as L

    job.train.check()
    job.eval.check()
    job.log.warn_ignored()
    precision = training_precision(job.precision) if job.precision else default_precision(job.quantize)
    if job.quantize is not None:
        if not job.quantize.startswith("bnb."):
            raise LitGPTError(f"--quantize {job.quantize!r} is not supported; use bnb.nf4, bnb.nf4-dq, bnb.fp4, bnb.fp4-dq or bnb.int8")
        if "mixed" in precision:
            raise LitGPTError("--quantize cannot be combined with a mixed --precision; use bf16-true or 16-true")
        from litgpt.quantize import check_mode

        on_gpu = job.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        check_mode(job.quantize, "cuda" if on_gpu else "cpu", instead="or finetune with LoRA without --quantize")
    devices = device_count(job.devices)
    if getattr(job.data, "num_workers", 0) < 0:
        raise LitGPTError(f"--data.num_workers must be 0 or more, got {job.data.num_workers}")
    strategy = job.strategy
    if strategy == "auto" and devices * job.num_nodes > 1:
        strategy = "ddp"
        if job.method.name == "full" and torch.cuda.is_available():
            from lightning.fabric.strategies import FSDPStrategy

            from litgpt.model import Block

            strategy = FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full", limit_all_gathers=True)
    job.train.gradient_accumulation_iters(devices, job.num_nodes)  # fail before launching
    job.out_dir = Path(job.out_dir)
    with output_folder(job.out_dir):  # before any training: a run must be able to save what it learns
        logger = make_logger(job.logger_name, job.out_dir, job.log)
        try:
            fabric = L.Fabric(
                accelerator=job.accelerator,
                devices=devices,
                num_nodes=job.num_nodes,
                strategy=strategy,
                precision=precision,
                loggers=logger,
            )
        except (ValueError, RuntimeError, ImportError) as e:  # Lightning's word on --devices, --accelerator, a package
            raise LitGPTError(" ".join(str(e).split())) from None
        return fabric.launch(_run, job, weight_dtype(precision))


@contextmanager
def output_folder(folder: Path) -> Iterator[None]:
    """Create ``folder`` (checking that it is writable) for the block; if the block fails, the folders this created
    are removed again while they hold no file (a run that fails to start leaves nothing behind)."""
    from litgpt.utils import writable_folder

    created = folder.absolute()
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    created = None if created.exists() else created  # the top-most folder this run makes
    try:
        writable_folder(folder)
        yield
    except BaseException:
        if created is not None:
            remove_empty_folders(created)
        raise


def remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders below it, bottom up, as far as they are empty (files are never removed)."""
    if not top.is_dir():
        return
    for path, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(path)
        except OSError:  # not empty: something in it is kept
            pass


def _run(fabric, job: Job, dtype: torch.dtype) -> Progress:
    from litgpt.utils import keep_freed_memory

    with keep_freed_memory(fabric.device):  # on a CPU, each step reuses the last step's pages (no page faults)
        return _train(fabric, job, dtype)


def _train(fabric, job: Job, dtype: torch.dtype) -> Progress:
    from litgpt.tokenizer import Tokenizer

    train, evaluation, method = job.train, job.eval, job.method
    fabric.seed_everything(job.seed)
    out_dir = job.out_dir
    config = job.config or Config.from_checkpoint(job.checkpoint_dir)
    tokenizer = Tokenizer(job.tokenizer_dir or job.checkpoint_dir)
    max_seq_length = min(train.max_seq_length or config.block_size, config.block_size)
    accum = train.gradient_accumulation_iters(fabric.world_size // max(1, job.num_nodes), job.num_nodes)

    # -- data
    data = job.data
    data.connect(tokenizer=tokenizer, batch_size=train.micro_batch_size, max_seq_length=max_seq_length)
    with fabric.rank_zero_first():
        data.prepare_data()
    data.setup()
    train_loader = data.train_dataloader()
    val_loader = data.val_dataloader()
    shuffle = getattr(data, "shuffle_in_loop", True)  # streaming modules shuffle locally, in their own dataset
    lengths = sample_lengths(train_loader.dataset) if train.group_by_length else None
    sampler = ResumableBatchSampler(
        len(train_loader.dataset), train.micro_batch_size, shuffle, job.seed, fabric.global_rank, fabric.world_size,
        lengths=lengths,
    )  # fmt: skip
    batches_per_epoch = len(sampler)
    if batches_per_epoch == 0:
        raise LitGPTError("The training set is empty")
    loader = DataLoader(
        train_loader.dataset,
        batch_sampler=sampler,
        collate_fn=train_loader.collate_fn,
        num_workers=train_loader.num_workers,
        generator=torch.Generator().manual_seed(job.seed),  # creating iterators must not draw from the global RNG
    )
    val_loader = val_loader if val_loader is not None and len(val_loader) else None  # sharded by validate()

    # -- how long
    # --train.epochs: exactly that many passes (micro-batches), the last accumulation window cut short if the
    # passes do not fill it (a dataset smaller than a global batch still takes one optimizer step per window)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
    limits = []  # (optimizer steps, micro-batches)
    if train.max_steps is not None:
        limits.append((train.max_steps, train.max_steps * accum))
    if train.epochs is not None:
        iters = train.epochs * batches_per_epoch
        limits.append((math.ceil(iters / accum), iters))
    if train.max_tokens is not None:
        tokens_per_step = train.micro_batch_size * max_seq_length * accum * fabric.world_size
        steps = max(1, train.max_tokens // tokens_per_step)
        limits.append((steps, steps * accum))
    if not limits:
        raise LitGPTError("Say how long to train: set --train.max_steps, --train.epochs or --train.max_tokens")
    total_steps, total_iters = min(limits)
    warmup = train.warmup_steps(steps_per_epoch, method.default_warmup_steps)

    # -- model and optimizer
    on_device = fabric.device if job.quantize is None else torch.device("cpu")
    model = method.build_model(fabric, config, dtype, on_device)
    model.max_seq_length = max_seq_length
    model.activation_checkpointing = train.activation_checkpointing
    method.prepare(model)
    separate_shared_trainables(model)
    # counted before quantizing: bitsandbytes packs two 4-bit weights into a byte of a uint8 tensor
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    if job.quantize is not None:  # QLoRA: the frozen base layers become bitsandbytes' ones, quantized on the device
        from litgpt.quantize import quantize_model

        quantize_model(model, job.quantize, device=fabric.device, dtype=dtype, use_kernel=False)
    if fabric.device.type == "cpu":
        from litgpt.kernels import cpu_linear

        cpu_linear(model)  # float32 products through oneDNN where it beats MKL (litgpt.kernels.gemm)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise LitGPTError(f"The {method.name} method left no parameter to train")
    fabric.print(f"Number of trainable parameters: {n_trainable:,}", file=sys.stderr)
    fabric.print(f"Number of non-trainable parameters: {n_frozen:,}", file=sys.stderr)
    model = fabric.setup(model)
    # sharding strategies (FSDP) replace the parameters while setting up: the optimizer takes the new ones
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(job.optimizer, trainable, **OPTIMIZER_DEFAULTS)
    optimizer = fabric.setup_optimizers(optimizer)
    base_lr = optimizer.param_groups[0]["lr"]
    min_ratio = min(1.0, train.min_lr / base_lr) if base_lr > 0 else 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total_steps, min_ratio))

    progress = Progress()
    resume_from = _resume_path(job.resume, out_dir, method.weights_file)
    if resume_from is not None:
        check_batch_sizes(resume_from, train, method)
        progress = _load_checkpoint(fabric, model, optimizer, scheduler, resume_from, method)
        fabric.print(f"Resuming from {resume_from} at step {progress.step_count}", file=sys.stderr)

    loop = _Loop(fabric, job, model, optimizer, scheduler, data, tokenizer, val_loader, progress, accum, total_steps, total_iters)
    loop.config = config
    if resume_from is None:
        if evaluation.initial_validation:
            loop.validate(full=True)
        elif val_loader is not None:
            loop.validate(full=False, sanity=True)
    loop.train(loader, sampler, batches_per_epoch)

    # -- the end
    just_validated = bool(progress.history) and progress.history[-1][:2] == ["val", progress.step_count]
    if evaluation.final_validation and val_loader is not None and not just_validated:
        loop.validate(full=True)
    final_dir = out_dir / "final"
    loop.save(final_dir, with_state=False, finalize=True)
    loop.report()
    return progress


def _resume_path(resume, out_dir: Path, weights_file: str) -> Optional[Path]:
    if resume is False or resume is None or (isinstance(resume, str) and resume.lower() == "false"):
        return None
    if resume is True or (isinstance(resume, str) and resume.lower() in ("auto", "true")):
        found = find_resume_checkpoint(out_dir, weights_file)
        if found is None and not (isinstance(resume, str) and resume.lower() == "auto"):
            raise LitGPTError(f"--resume true, but {out_dir} holds no checkpoint to resume from")
        return found
    path = Path(resume)
    if path.is_file():
        path = path.parent
    if not (path / TRAINING_STATE).exists():
        raise LitGPTError(f"--resume {resume}: {path} holds no {TRAINING_STATE} (is it a step-* checkpoint folder?)")
    return path


def _load_checkpoint(fabric, model, optimizer, scheduler, path: Path, method: Method) -> Progress:
    # the saved scheduler brings back its step count, but the schedule is this run's (a longer --train.max_steps on
    # resume decays to the new end, as the learning rate follows the current settings in the established release)
    schedules = [dict(fn.__dict__) for fn in scheduler.lr_lambdas]
    progress = _load_training_state(fabric, model, optimizer, scheduler, path, method)
    for fn, settings in zip(scheduler.lr_lambdas, schedules):
        fn.__dict__.update(settings)
    for group, base_lr, fn in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * fn(scheduler.last_epoch)
    return progress


def check_layout(fabric, path: Path, sharded: bool, method: Method) -> None:
    """A training state resumes only on the number of processes and the kind of strategy that saved it (the
    optimizer shards, the data position and the random state are per process)."""

    state = path / TRAINING_STATE
    saved_sharded = state.is_dir()  # a sharded strategy saves a folder of per-rank shards
    saved_world = None
    if (layout := saved_layout(path)) is not None:
        saved_world, saved_sharded = layout.get("world_size"), layout.get("sharded", saved_sharded)
    elif saved_sharded:
        saved_world = len(list(state.glob("*.distcp"))) or None
    if saved_sharded == sharded and saved_world in (None, fabric.world_size):
        return
    def processes(n: Optional[int], sharded: bool, fsdp: str) -> str:
        if n is None and not sharded:  # an earlier release's checkpoint: one file, from 1 process or ddp
            return "an unsharded strategy (1 process or ddp)"
        text = "1 process" if n == 1 else f"{n or 'several'} process(es)"
        return text + (f" with {fsdp}" if sharded else (" with ddp" if n != 1 else ""))

    saved = processes(saved_world, saved_sharded, "a sharded strategy (fsdp)")
    now = processes(fabric.world_size, sharded, "fsdp")
    raise LitGPTError(
        f"cannot resume from {path}: it was saved by {saved}, this run has {now}; resume with the same "
        f"--devices/--num_nodes and --strategy, {method.restart_hint.format(path=path)}"
    )


def saved_layout(path: Path) -> Optional[dict]:
    """What a training state's training_layout.json records (processes, strategy, batch sizes); None without one."""
    import json

    file = path / TRAINING_LAYOUT
    return json.loads(file.read_text()) if file.is_file() else None


def check_batch_sizes(path: Path, train: TrainArgs, method: Method) -> None:
    """A training state resumes only with the batch sizes that saved it: its step count, schedule and data position
    are counted in its batches (with another global batch size a --train.max_tokens budget was reached at once)."""
    layout = saved_layout(path) or {}
    saved = layout.get("global_batch_size"), layout.get("micro_batch_size")
    if None in saved or saved == (train.global_batch_size, train.micro_batch_size):  # an earlier release's layout
        return
    raise LitGPTError(
        f"cannot resume from {path}: it was saved with --train.global_batch_size {saved[0]} --train.micro_batch_size "
        f"{saved[1]}, this run has {train.global_batch_size} and {train.micro_batch_size}; resume with the same batch "
        f"sizes, {method.restart_hint.format(path=path)}"
    )


def _load_training_state(fabric, model, optimizer, scheduler, path: Path, method: Method) -> Progress:
    from litgpt.checkpoint import load_state_dict, model_state

    module = model.module if hasattr(model, "module") else model
    check_layout(fabric, path, is_sharded(module), method)
    if is_sharded(module):  # model and optimizer shards come back through the strategy
        wanted = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
        remainder = fabric.load(path / TRAINING_STATE, wanted, strict=False)
        if isinstance(wanted["scheduler"], dict):  # the sharded loader hands plain state back instead of loading it
            scheduler.load_state_dict(wanted["scheduler"])
        set_rng_state(remainder["rng"])
        return Progress(**remainder["progress"])
    weights = model_state(load_state_dict(path / method.weights_file, mmap=False), path / method.weights_file)
    expected = {k for k in module.state_dict() if method.is_saved(k)}
    missing = sorted(expected - set(weights))
    if missing:
        raise LitGPTError(f"{path / method.weights_file} lacks {len(missing)} trained tensor(s), e.g. {missing[:3]}")
    own = module.state_dict()
    for key in sorted(expected):
        legacy_gate = key.endswith("gating_factor") and weights[key].numel() == own[key].numel()  # loads transposed
        if tuple(weights[key].shape) != tuple(own[key].shape) and not legacy_gate:
            raise LitGPTError(
                f"cannot resume from {path}: its {key} has shape {tuple(weights[key].shape)}, this run's "
                f"{tuple(own[key].shape)}; resume with the settings it was trained with (see its hyperparameters.yaml)"
            )
    module.load_state_dict(weights, strict=False)
    remainder = fabric.load(path / TRAINING_STATE, {"optimizer": optimizer, "scheduler": scheduler}, strict=False)
    progress = Progress(**remainder["progress"])
    set_rng_state(remainder["rng"])
    return progress


class _Loop:
    def __init__(self, fabric, job, model, optimizer, scheduler, data, tokenizer, val_loader, progress, accum, total,
                 total_iters: int):  # fmt: skip
        self.fabric, self.job, self.model, self.optimizer, self.scheduler = fabric, job, model, optimizer, scheduler
        self.data, self.tokenizer, self.val_loader, self.p = data, tokenizer, val_loader, progress
        self.accum, self.total_steps, self.total_iters = accum, total, total_iters
        self.method: Method = job.method
        self.start_time = time.perf_counter()
        self.elapsed_before = progress.elapsed

    def _window(self, iter_num: int) -> tuple[int, bool]:
        """The size of the accumulation window that micro-batch ``iter_num`` (from 1) falls in, and whether the
        window goes on after it; the last window ends with the run's last micro-batch."""
        start = (iter_num - 1) // self.accum * self.accum
        size = max(iter_num - start, min(self.accum, self.total_iters - start))
        return size, iter_num - start < size

    def _inputs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, targets) on the device, the data's ``ignore_index`` (masked prompts, padding) turned into the
        loss's -100."""
        from litgpt.loss import IGNORE_INDEX

        input_ids, targets = self.method.split_batch(batch)
        ignore = getattr(self.data, "ignore_index", IGNORE_INDEX)
        if isinstance(ignore, int) and ignore != IGNORE_INDEX:
            targets = targets.masked_fill(targets == ignore, IGNORE_INDEX)
        return input_ids.to(self.fabric.device), targets.to(self.fabric.device)

    # -- training
    def train(self, loader: DataLoader, sampler: ResumableBatchSampler, batches_per_epoch: int) -> None:
        from tqdm import tqdm

        fabric, p, train = self.fabric, self.p, self.job.train
        recent = deque(p.recent_losses, maxlen=self.accum)
        bar = tqdm(
            total=self.total_steps, initial=p.step_count, unit="step", desc=self.method.title or f"{self.method.name} finetuning",
            disable=fabric.global_rank != 0, file=sys.stderr, dynamic_ncols=True, leave=True,
        )  # fmt: skip
        self.bar = bar
        self.model.train()
        iter_start = loop_start = time.perf_counter()
        window_tokens = torch.zeros(2, dtype=torch.long)  # this process's (tokens, real tokens) since the last step
        stop = False
        while p.step_count < self.total_steps and not stop:
            sampler.epoch, sampler.start = p.epoch, p.batch_in_epoch
            for batch in loader:
                p.batch_in_epoch += 1
                p.iter_num += 1
                window, is_accumulating = self._window(p.iter_num)
                input_ids, targets = self._inputs(batch)
                with fabric.no_backward_sync(self.model, enabled=is_accumulating):
                    loss = self.model(input_ids, targets=targets)
                    fabric.backward(loss / window)
                recent.append(loss.detach().item())
                counts = batch.get("token_counts") if isinstance(batch, dict) else None
                window_tokens[0] += input_ids.numel()
                window_tokens[1] += int(counts.sum()) if counts is not None else input_ids.numel()
                if not is_accumulating:
                    # every process's tokens of this step: processes see batches of different lengths
                    step_tokens = window_tokens.to(fabric.device)
                    if fabric.world_size > 1:
                        step_tokens = fabric.all_reduce(step_tokens, reduce_op="sum")
                    p.tokens += int(step_tokens[0])
                    p.real_tokens += int(step_tokens[1])
                    window_tokens.zero_()
                    if train.max_norm is not None:
                        fabric.clip_gradients(self.model, self.optimizer, max_norm=train.max_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    p.step_count += 1
                    bar.update(1)
                iter_time = time.perf_counter() - iter_start
                train_loss = sum(recent) / len(recent)
                if not is_accumulating:
                    p.history.append(["train", p.step_count, p.iter_num, train_loss])
                if p.iter_num % train.log_interval == 0:
                    self.log_iteration(train_loss, iter_time, is_accumulating)
                if not is_accumulating:
                    if p.step_count % self.job.eval.interval == 0 and self.val_loader is not None:
                        self.validate(full=True)
                    p.recent_losses = list(recent)
                    if train.save_interval and p.step_count % train.save_interval == 0:
                        self.save(self.job.out_dir / self.method.step_dir_format.format(p.step_count), with_state=True)
                    stop = self._out_of_time(loop_start)
                    if p.step_count >= self.total_steps or stop:
                        if p.batch_in_epoch == batches_per_epoch:  # the run ends with an epoch: count it
                            p.epoch, p.batch_in_epoch = p.epoch + 1, 0
                        break
                iter_start = time.perf_counter()
            else:
                p.epoch += 1
                p.batch_in_epoch = 0
        bar.close()
        self.bar = None

    def _out_of_time(self, loop_start: float) -> bool:
        """Whether --train.max_time has passed (rank 0's clock decides, so that every process stops together)."""
        max_time = self.job.train.max_time
        if max_time is None:
            return False
        over = time.perf_counter() - loop_start > max_time
        if self.fabric.world_size > 1:
            over = self.fabric.broadcast(over, src=0)
        if over:
            self.say(f"Max time ({max_time / 60:.2f} min) reached, stopping training")
        return bool(over)

    def say(self, text: str) -> None:
        if self.fabric.global_rank != 0:
            return
        if getattr(self, "bar", None) is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def log_iteration(self, train_loss: float, iter_time: float, is_accumulating: bool) -> None:
        p = self.p
        metrics = {
            "loss": train_loss,
            "iter": p.iter_num,
            "step": p.step_count,
            "epoch": p.epoch,
            "iter_time": iter_time,
            "tokens": p.tokens,
            "total_tokens": p.real_tokens,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
        }
        val = "n/a" if p.val_loss is None else f"{p.val_loss:.3f}"
        self.say(
            f"Epoch {p.epoch + 1} | iter {p.iter_num} step {p.step_count} | loss train: {train_loss:.3f}, val: {val} | "
            f"iter time: {iter_time * 1000:.2f} ms{'' if is_accumulating else ' (step)'}"
        )
        elapsed = self.elapsed_before + time.perf_counter() - self.start_time
        metrics.update(self.method.extra_metrics(self.fabric, p, elapsed))
        self.fabric.log_dict(metrics, step=p.iter_num)

    # -- validation
    @torch.no_grad()
    def validate(self, full: bool, sanity: bool = False) -> Optional[float]:
        fabric, p = self.fabric, self.p
        max_iters = self.job.eval.max_iters if full else 1
        was_training = self.model.training
        self.model.eval()
        start = time.perf_counter()
        # the mean loss over the supervised tokens of the first max_iters x micro_batch_size validation samples,
        # whatever the number of processes: the samples are dealt out without duplicates (a process short of a
        # batch runs one whose targets are all ignored, as sharded models need every process in every forward)
        totals = torch.zeros(2, dtype=torch.float64, device=fabric.device)  # (loss sum, supervised tokens)
        for batch, real in val_shard(self.val_loader, max_iters, fabric.global_rank, fabric.world_size):
            input_ids, targets = self._inputs(batch)
            if real < len(targets):  # a copy: targets may share memory with the inputs
                targets = targets.clone()
                targets[real:] = -100
            supervised = (targets != -100).sum()
            totals += torch.stack((self.model(input_ids, targets=targets).double() * supervised, supervised.double()))
        if fabric.world_size > 1:
            totals = fabric.all_reduce(totals, reduce_op="sum")
        val_loss = (totals[0] / totals[1]).item() if totals[1] > 0 else float("nan")
        if was_training:
            self.model.train()
        if sanity:
            return val_loss
        p.val_loss = val_loss
        p.history.append(["val", p.step_count, p.iter_num, val_loss])
        ppl = math.exp(val_loss) if val_loss < 50 else float("inf")
        self.say(
            f"Validating ... iter {p.iter_num} step {p.step_count}: val loss {val_loss:.4f}, "
            f"val ppl {ppl:.4f}, val time: {(time.perf_counter() - start) * 1000:.2f} ms"
        )
        fabric.log_dict({"val_loss": val_loss, "val_ppl": ppl}, step=p.iter_num)
        self.generate_example()
        return val_loss

    def example_prompt(self) -> Optional[str]:
        dataset = getattr(self.data, "test_dataset", None)
        if dataset is None or not hasattr(dataset, "prompt") or len(dataset) == 0:
            return None
        which = self.job.eval.evaluate_example
        if which == "first":
            index = 0
        elif which == "random":
            index = int(torch.randint(len(dataset), (1,), generator=torch.Generator().manual_seed(self.p.step_count)))
        else:
            index = int(which) % len(dataset)
        return dataset.prompt(index)

    @torch.no_grad()
    def generate_example(self) -> None:
        max_new = self.job.eval.max_new_tokens
        prompt = self.example_prompt() if max_new else None
        if prompt is None:
            return
        from litgpt.generation import generate

        module = self.model.module if hasattr(self.model, "module") else self.model
        fabric = self.fabric
        ids = self.tokenizer.encode(prompt, device=fabric.device)
        room = module.max_seq_length - len(ids)
        if room <= 0:
            return
        saved_length = module.max_seq_length
        style = getattr(self.data, "prompt_style", None)
        stops = tuple(style.stop_tokens(self.tokenizer)) if style is not None else ()
        generator = torch.Generator(device=fabric.device).manual_seed(self.job.seed + self.p.step_count)
        module.eval()
        try:
            with fabric.autocast():
                out = generate(
                    module, ids, min(max_new, room), temperature=0.8, top_k=50, stop_tokens=stops,
                    include_prompt=False, generator=generator,
                )  # fmt: skip
        finally:
            module.clear_kv_cache()
            module.max_seq_length = saved_length
            module.rope_cos, module.rope_sin = torch.empty(0), torch.empty(0)  # built under inference mode
            module.train()
        self.say(f"{prompt}{self.tokenizer.decode(out)}")

    # -- checkpoints
    def save(self, target: Path, with_state: bool, finalize: bool = False) -> None:
        """Write the checkpoint folder ``target`` via a hidden temporary folder and a rename."""
        fabric, method = self.fabric, self.method
        target = Path(target)
        tmp = target.with_name(f".{target.name}.tmp")
        if fabric.global_rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        fabric.barrier()
        module = self.model.module if hasattr(self.model, "module") else self.model
        state = {k: v for k, v in full_state_dict(module).items() if method.is_saved(k)}
        self.p.elapsed = self.elapsed_before + time.perf_counter() - self.start_time
        if fabric.global_rank == 0:
            from litgpt.checkpoint import save_state_dict

            save_state_dict(state, tmp / method.weights_file)
        if with_state:
            progress = asdict(self.p)
            training_state = {
                "optimizer": self.optimizer,
                "scheduler": self.scheduler,
                "progress": progress,
                "rng": rng_state(),
            }
            if is_sharded(module):  # the strategy saves the model and optimizer shards (a folder, one file per rank)
                training_state["model"] = self.model
            fabric.save(tmp / TRAINING_STATE, training_state)
            if fabric.global_rank == 0:
                import json

                train = self.job.train
                layout = {"world_size": fabric.world_size, "sharded": is_sharded(module),
                          "micro_batch_size": train.micro_batch_size, "global_batch_size": train.global_batch_size}  # fmt: skip
                (tmp / TRAINING_LAYOUT).write_text(json.dumps(layout))
        if fabric.global_rank == 0:
            self.write_side_files(tmp)
            if finalize:
                method.finalize(module, tmp)
            replace_dir(tmp, target)
            self.say(f"Saved {method.name} checkpoint to {str(target)!r}")
            self.flush_logs()
        fabric.barrier()

    def write_side_files(self, folder: Path) -> None:
        import yaml

        from litgpt.prompts import save_prompt_style
        from litgpt.utils import atomic_write_text

        copy_checkpoint_files(self.job.tokenizer_dir or self.job.checkpoint_dir, folder, self.job.config)
        self.config.save(folder / "model_config.yaml")
        atomic_write_text(folder / HYPERPARAMETERS, yaml.safe_dump(self.job.hparams, sort_keys=False))
        style = getattr(self.data, "prompt_style", None)
        if style is not None:
            save_prompt_style(style, folder)

    def flush_logs(self) -> None:
        logger = self.fabric.logger
        if logger is not None and hasattr(logger, "save"):
            logger.save()
        log_dir = getattr(logger, "log_dir", None) if logger is not None else None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            plot_losses(self.p.history, Path(log_dir) / "loss.png")

    def report(self) -> None:
        fabric, p = self.fabric, self.p
        elapsed = self.elapsed_before + time.perf_counter() - self.start_time
        tokens, processed = p.real_tokens, p.tokens  # over every process
        lines = [
            f"Training time: {elapsed:.2f}s",
            f"Steps: {p.step_count} ({p.iter_num} iterations, {p.epoch} full epoch(s))",
            f"Tokens: {tokens:,} (processed with padding: {processed:,})",
            f"Throughput: {tokens / max(elapsed, 1e-9):,.1f} tokens/sec",
        ]
        if fabric.device.type == "cuda":
            lines.append(f"Memory used: {torch.cuda.max_memory_allocated() / 1e9:.02f} GB")
        lines += self.method.report_lines(fabric, p, elapsed)
        for line in lines:
            self.say(line)
        if fabric.logger is not None:
            fabric.logger.finalize("success")
        if fabric.global_rank == 0:  # elsewhere a logger's log_dir would make a new, empty version folder
            self.flush_logs()


def hparams_of(values: dict) -> dict:
    """A YAML-ready mapping of a command's arguments (what ``--config`` accepts back)."""
    out = {}
    for key, value in values.items():
        out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    import dataclasses

    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "connect"):  # a data module: class_path + init_args
            # a secret never lands in hyperparameters.yaml (a data module's access_token)
            fields = [f for f in dataclasses.fields(value) if f.init and f.name != "access_token"]
            args = {f.name: _plain(getattr(value, f.name)) for f in fields}
            cls = type(value)
            module = "litgpt.data" if cls.__module__.startswith("litgpt.data.") else cls.__module__
            return {"class_path": f"{module}.{cls.__qualname__}", "init_args": args}
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "init_args") and hasattr(value, "apply"):  # a prompt style
        cls = type(value)
        spec = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
        if value.init_args:
            spec["init_args"] = _plain(dict(value.init_args))
        return spec
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)

