"""`litgpt evaluate`: run EleutherAI's LM Evaluation Harness (``lm-eval``) on a checkpoint.

The model is wrapped as an ``lm_eval.api.model.LM`` (:class:`LitEvalLM`) that scores with our own GPT and generates
with our generation core, so every architecture, precision and quantization mode that loads here can be evaluated,
without converting to Hugging Face first.

* ``loglikelihood``: tokenized the way lm-eval's own Hugging Face backend does, so that both give the same scores on
  the same weights: trailing whitespace of the context moves to the continuation, ``context + continuation`` is
  encoded as one text and the continuation is what follows the length of the context's own encoding; the BOS leads
  when the tokenizer adds one, and an empty context is the BOS (or EOS) token alone. Over-long inputs are cut from the
  left. Only the continuation positions go through ``lm_head``.
* ``loglikelihood_rolling``: the text's tokens are scored in consecutive windows of at most ``max_length`` tokens; each
  window predicts tokens no earlier window predicted, and the last one is filled with earlier tokens as context.
* ``generate_until``: greedy (or sampled when a task asks for ``do_sample``) decoding, stopped at the EOS token or the
  first of the ``until`` strings, which is cut from the answer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch

from litgpt.errors import LitGPTError

try:
    from lm_eval.api.model import LM as _LMBase
except ImportError:  # the CLI says how to install it; the class below still imports
    _LMBase = object

DEFAULT_MAX_LENGTH = 2048  # longest sequence scored at once when the model's context is longer (memory, time)


def _require_lm_eval() -> None:
    if _LMBase is object:
        raise LitGPTError("litgpt evaluate needs the LM Evaluation Harness: pip install lm-eval")


class LitEvalLM(_LMBase):
    """A LitGPT ``GPT`` and its tokenizer as an lm-eval language model."""

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 1,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        generator: torch.Generator | None = None,
    ) -> None:
        _require_lm_eval()
        super().__init__()
        if batch_size < 1:
            raise LitGPTError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        limit = min(model.max_seq_length, model.config.block_size)
        self.max_length = min(max_length or min(limit, DEFAULT_MAX_LENGTH), limit)
        self.max_gen_toks = max_gen_toks
        self.generator = generator

    # ------------------------------------------------------------------ tokens
    @property
    def device(self) -> torch.device:
        return self.model.transformer.wte.weight.device

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.checkpoint_dir).replace("/", "__")

    @property
    def prefix_token_id(self) -> int:
        """The token put before a text that has no context (a rolling text, an empty context)."""
        for idx in (self.tokenizer.bos_id, self.tokenizer.eos_id):
            if idx is not None:
                return idx
        return 0

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, bos=False).tolist()

    def _leading(self) -> list[int]:
        """Tokens every model input starts with (the BOS when the tokenizer adds one)."""
        return [self.tokenizer.bos_id] if self.tokenizer.use_bos and self.tokenizer.bos_id is not None else []

    def _with_leading(self, ids: list[int]) -> list[int]:
        """``ids`` behind the leading tokens, unless the text itself already began with them (no doubled BOS)."""
        lead = self._leading()
        return ids if lead and ids[: len(lead)] == lead else lead + ids

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation token ids, split at the context's boundary in the joint encoding.

        The rules are those of lm-eval's Hugging Face backend (the reference that published numbers come from), so
        that a task scores the same here and there: all trailing whitespace (newlines too) of the context moves to the
        continuation; the continuation's ids are the joint encoding past the length of the context's own encoding,
        even in the rare case where a word piece merges across the boundary; and an empty context is the prefix token
        alone (or the continuation's first token when that already is the prefix token).
        """
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        if not stripped:  # (lm-eval leaves a whitespace-only context with no tokens at all: the prefix token is saner)
            cont = self._encode(continuation)
            if cont[:1] == [self.prefix_token_id]:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        ctx = self._with_leading(self._encode(stripped))
        whole = self._with_leading(self._encode(stripped + continuation))
        return ctx, whole[len(ctx) :]

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def score(self, items: Sequence[tuple[list[int], int]], desc: str = "", disable_tqdm: bool = False):
        """For each ``(tokens, n)``: the summed log-probability of the last ``n`` tokens given the ones before, and
        whether each of them is the greedy choice. ``tokens`` must hold at most ``max_length + 1`` ids."""
        from tqdm import tqdm

        results: list[tuple[float, bool] | None] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))  # similar lengths share a batch
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=desc, disable=disable_tqdm or len(batches) < 2, file=sys.stderr):
            width = max(len(items[i][0]) - 1 for i in batch)
            inputs = torch.zeros((len(batch), width), dtype=torch.long)
            rows, positions, targets = [], [], []
            for row, i in enumerate(batch):
                tokens, n = items[i]
                if not 0 < n < len(tokens) or len(tokens) - 1 > self.max_length:
                    raise LitGPTError(f"cannot score {n} of {len(tokens)} tokens with a context of {self.max_length}")
                inputs[row, : len(tokens) - 1] = torch.tensor(tokens[:-1])
                start = len(tokens) - 1 - n  # logits at position p predict token p + 1
                rows += [row] * n
                positions += range(start, start + n)
                targets += tokens[-n:]
            hidden = self.model(inputs.to(self.device), return_hidden=True)  # right padding: causal, harmless
            index = (torch.tensor(rows, device=self.device), torch.tensor(positions, device=self.device))
            logits = self.model.project(hidden[index]).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(targets, device=self.device)
            picked = logprobs.gather(-1, target[:, None])[:, 0]
            greedy = logits.argmax(-1) == target
            offset = 0
            for i in batch:
                n = items[i][1]
                results[i] = (float(picked[offset : offset + n].sum()), bool(greedy[offset : offset + n].all()))
                offset += n
        return results

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items = []
        for request in requests:
            context, continuation = request.args
            ctx, cont = self.encode_pair(context, continuation)
            tokens = (ctx + cont)[-(self.max_length + 1) :]
            items.append((tokens, min(len(cont), len(tokens) - 1)))
        scored = [i for i, (_, n) in enumerate(items) if n > 0]  # an empty continuation has probability 1
        results: list[tuple[float, bool]] = [(0.0, True)] * len(items)
        for i, result in zip(scored, self.score([items[i] for i in scored], "loglikelihood", disable_tqdm)):
            results[i] = result
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def rolling_windows(self, tokens: list[int]) -> list[tuple[list[int], int]]:
        """``(window tokens, how many of its last tokens to score)`` covering ``tokens`` (the prefix token first)."""
        L = self.max_length
        windows = []
        a = 1
        while a < len(tokens):
            e = min(a + L - 1, len(tokens) - 1)  # the window predicts tokens a..e
            s = max(0, e - L)  # and reads up to L tokens ending just before e
            windows.append((tokens[s : e + 1], e - a + 1))
            a = e + 1
        return windows

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        items, owner = [], []
        for k, request in enumerate(requests):
            (text,) = request.args[:1]
            tokens = [self.prefix_token_id] + self._encode(text)
            for window in self.rolling_windows(tokens):
                items.append(window)
                owner.append(k)
        scores = self.score(items, "loglikelihood_rolling", disable_tqdm)
        totals = [0.0] * len(requests)
        for k, (logprob, _) in zip(owner, scores):
            totals[k] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm import tqdm

        outputs: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        batches = []
        for indices in groups.values():
            indices.sort(key=lambda i: -len(requests[i].args[0]))
            batches += [indices[j : j + self.batch_size] for j in range(0, len(indices), self.batch_size)]
        for batch in tqdm(batches, desc="generate_until", disable=disable_tqdm or len(batches) < 2, file=sys.stderr):
            texts = self._generate([requests[i].args[0] for i in batch], dict(requests[batch[0]].args[1]))
            for i, text in zip(batch, texts):
                outputs[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return outputs

    @torch.inference_mode()
    def _generate(self, contexts: list[str], kwargs: dict[str, Any]) -> list[str]:
        from litgpt.generation import SamplingParams, generate_batch

        until = kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
        temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
        sampled = bool(kwargs.pop("do_sample", False)) and temperature > 0
        params = SamplingParams(temperature if sampled else 0.0, kwargs.pop("top_k", None), kwargs.pop("top_p", 1.0))
        max_new = max(1, min(max_new, self.max_length - 1))
        keep = self.max_length - max_new
        prompts = [
            torch.tensor(self._with_leading(self._encode(c))[-keep:] or [self.prefix_token_id], device=self.device)
            for c in contexts
        ]
        stop_ids = set(self.tokenizer.stop_ids)
        new: list[list[int]] = [[] for _ in contexts]
        texts = ["" for _ in contexts]
        done = [False] * len(contexts)
        for tokens in generate_batch(self.model, prompts, max_new, params, generator=self.generator):
            for row, token in enumerate(tokens.tolist()):
                if done[row]:
                    continue
                if token in stop_ids:
                    done[row] = True
                    continue
                new[row].append(token)
                texts[row] = self.tokenizer.decode(new[row], skip_special_tokens=True)
                if any(s and s in texts[row] for s in until):
                    done[row] = True
            if all(done):
                break
        out = []
        for text in texts:
            for s in until:
                if s:
                    text = text.split(s, 1)[0]
            out.append(text)
        return out


# ---------------------------------------------------------------------------------------------------------- the CLI
def task_manager(include_path: Optional[Path] = None, names: Sequence[str] = ()):
    """lm-eval's task index: the local definitions alone when they hold every task asked for (indexing the thousands
    of built-in tasks takes a while), else the built-in tasks plus the local ones."""
    from lm_eval.tasks import TaskManager

    if include_path is None:
        return TaskManager()
    if not Path(include_path).exists():
        raise LitGPTError(f"--include_path {str(include_path)!r} does not exist")
    if names:
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(name in local.all_tasks for name in names):
            return local
    return TaskManager(include_path=str(include_path))


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.dtype):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _run_tasks(simple_evaluate, **kwargs) -> Optional[dict]:
    """``simple_evaluate``, with a task whose data cannot be fetched (offline, no such dataset) as a one-line error."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return simple_evaluate(**kwargs)
    except (ConnectionError, LocalEntryNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LitGPTError(
            f"the data of task(s) {', '.join(kwargs['tasks'])} could not be fetched ({first}); connect to the "
            "Hugging Face Hub once to cache it, or use a local task (--include_path)"
        ) from None


def _check_device_and_dtype(device: Optional[str], dtype: Optional[str]) -> None:
    """--device and --dtype, checked before the model loads, in the words of these options (the model placement
    underneath speaks of accelerator and precision)."""
    from litgpt.loading import PRECISIONS

    if device is not None:
        kind, _, index = device.partition(":")
        if kind not in ("cpu", "cuda", "gpu") or (index and (kind == "cpu" or not index.isdigit())):
            raise LitGPTError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        if kind != "cpu" and not torch.cuda.is_available():
            raise LitGPTError(f"--device {device} but no CUDA device is visible; use --device cpu (or leave it out)")
        if index and int(index) >= torch.cuda.device_count():
            raise LitGPTError(f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dtype is not None and dtype not in PRECISIONS:
        raise LitGPTError(f"--dtype {dtype!r} is not a known dtype; use one of {', '.join(sorted(PRECISIONS))}")


def main(
    checkpoint_dir: Optional[Path] = None,
    tasks: Optional[str] = None,
    out_dir: Optional[Path] = None,
    *,
    num_fewshot: Optional[int] = None,
    batch_size: Union[int, str] = 1,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    quantize: Optional[str] = None,
    limit: Optional[float] = None,
    seed: int = 1234,
    save_filepath: Optional[Path] = None,
    include_path: Optional[Path] = None,
    max_length: Optional[int] = None,
    access_token: Optional[str] = None,
    force_conversion: bool = False,
) -> Optional[dict]:
    """Evaluate a model with the LM Evaluation Harness (``pip install lm-eval``) and write ``results.json``.

    Args:
        checkpoint_dir: A checkpoint folder, a registry name or repo id, or a .gguf file. Default: the bundled model.
        tasks: Comma-separated task names, e.g. "hellaswag,arc_easy". Without it the available tasks are listed.
        out_dir: Where to write results.json (default: an ``evaluate`` folder inside the checkpoint folder).
        num_fewshot: Number of few-shot examples per prompt (default: each task's own).
        batch_size: Sequences scored or generated together ("auto" means 4).
        device: "cpu", "cuda" or "cuda:0" (default: a GPU when there is one).
        dtype: Weight dtype, e.g. "bfloat16" or "float32" (default: bf16 where the hardware computes in it,
            CPUs with AVX512-BF16 included; else fp16 on GPUs, fp32 on CPUs).
        quantize: Weight quantization, e.g. "int8" or "int4" (see ``litgpt generate --quantize``).
        limit: At most this many examples per task (a fraction of each task when below 1).
        seed: Random seed for few-shot sampling, numpy and torch.
        save_filepath: Where to write the results (default: ``out_dir/results.json``).
        include_path: A folder (or YAML file) with extra task definitions, e.g. local tasks read from JSON files.
        max_length: Longest sequence scored at once (default: the model's context, at most 2048).
        access_token: Hugging Face token for gated repos (default: $HF_TOKEN).
        force_conversion: Accepted for compatibility; no conversion to Hugging Face is needed here.
    """
    _require_lm_eval()
    names = [t.strip() for t in (tasks or "").split(",") if t.strip()]
    manager = task_manager(include_path, names)
    if not names:
        print("\n".join(manager.all_tasks))
        print("\nThese are the available tasks and groups; pick some with --tasks name1,name2", file=sys.stderr)
        return None
    unknown = [t for t in names if t not in manager.all_tasks]
    if unknown:
        from litgpt.config import suggest

        raise LitGPTError(f"Unknown task {unknown[0]!r}. {suggest(unknown[0], manager.all_tasks, what='task')}")
    if isinstance(batch_size, str):
        if batch_size != "auto":
            raise LitGPTError(f"--batch_size must be a positive integer or 'auto', got {batch_size!r}")
        batch_size = 4
    if batch_size < 1:
        raise LitGPTError(f"--batch_size must be a positive integer or 'auto', got {batch_size}")
    if limit is not None and limit <= 0:
        raise LitGPTError(f"--limit must be positive (a count, or a fraction of each task below 1), got {limit:g}")
    if num_fewshot is not None and num_fewshot < 0:
        raise LitGPTError(f"--num_fewshot must be 0 or more, got {num_fewshot}")
    _check_device_and_dtype(device, dtype)
    if max_length is not None and max_length < 2:
        raise LitGPTError(f"max_length must be at least 2 tokens, got {max_length}")
    out_dir = Path(out_dir) if out_dir is not None else None
    save_filepath = Path(save_filepath) if save_filepath is not None else None
    if save_filepath is not None and save_filepath.is_dir():
        raise LitGPTError(f"--save_filepath {str(save_filepath)!r} is a folder; name a file such as results.json")

    from lm_eval import simple_evaluate

    from litgpt.api import LLM
    from litgpt.loading import resolve_checkpoint

    torch.manual_seed(seed)
    folder = resolve_checkpoint(checkpoint_dir, access_token=access_token)
    llm = LLM.load(folder, distribute=None)
    accelerator = "auto" if device is None else device.split(":")[0]
    if device is not None and ":" in device:  # cuda:N: distribute() places the model on the current CUDA device
        torch.cuda.set_device(int(device.partition(":")[2]))
    llm.distribute(accelerator=accelerator, precision=dtype, quantize=quantize)
    print(f"Loaded {llm.config.name} from {folder}", file=sys.stderr)
    generator = torch.Generator(llm.preprocessor.device).manual_seed(seed)
    lm = LitEvalLM(llm.model, llm.tokenizer, batch_size=batch_size, max_length=max_length, generator=generator)
    out_dir = out_dir if out_dir is not None else Path(folder) / "evaluate"
    save_filepath = save_filepath if save_filepath is not None else out_dir / "results.json"
    from litgpt.utils import writable_folder

    writable_folder(save_filepath.parent)  # before the evaluation, not after it
    results = _run_tasks(
        simple_evaluate,
        model=lm,
        tasks=names,
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if results is None:  # not the main process
        return None
    from lm_eval.utils import make_table

    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    results.pop("samples", None)
    from litgpt.utils import atomic_write_text

    atomic_write_text(save_filepath, json.dumps(results, indent=2, default=_jsonable))
    print(f"Saved the results to {save_filepath}", file=sys.stderr)
    return results
