"""Speculative decoding: a small draft model proposes ``k`` tokens, the target checks them in one forward pass.

Greedy decoding gives exactly the target's own output; with sampling, proposals are accepted with probability
min(1, p/q) and a rejection is resampled from max(0, p - q), so the output follows the target's distribution.
The static KV caches make rollback free: positions past the accepted prefix are simply overwritten later.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from litgpt.errors import LitGPTError
from litgpt.generation import SamplingParams, StopMatcher, draw, filtered_probs, sample
from litgpt.model import GPT


@dataclass
class SpeculativeStats:
    proposed: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


@torch.inference_mode()
def speculative_generate(
    target: GPT,
    draft: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    speculative_k: int = 4,
    params: SamplingParams = SamplingParams(temperature=0),
    stop_tokens=(),
    generator: Optional[torch.Generator] = None,
    target_step=None,
    draft_step=None,
) -> tuple[list[int], SpeculativeStats]:
    """New token ids for the 1-D ``prompt`` and acceptance statistics. ``target_step`` / ``draft_step`` (default:
    the models) run the steps after the prompt, e.g. ``torch.compile``d models (the prompt's pass stays eager)."""
    if speculative_k < 1:
        raise LitGPTError(f"speculative_k must be >= 1, got {speculative_k}")
    if max_new_tokens < 0:
        raise LitGPTError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if max_new_tokens == 0:
        return [], SpeculativeStats()
    target_step = target if target_step is None else target_step
    draft_step = draft if draft_step is None else draft_step
    if draft.config.padded_vocab_size < target.config.vocab_size:
        raise LitGPTError("the draft model's vocabulary is smaller than the target's: they must share a tokenizer")
    T = len(prompt)
    total = T + max_new_tokens  # the proposals of a step never run past the budget (k shrinks to what is left)
    for model in (target, draft):
        if total > model.config.block_size:
            raise LitGPTError(
                f"prompt ({T} tokens) + max_new_tokens ({max_new_tokens}) exceeds the context "
                f"of {model.config.name} ({model.config.block_size} tokens)"
            )
        model.set_kv_cache(1, max_seq_length=total)
    V = target.config.vocab_size
    positions = torch.arange(T, device=prompt.device)
    logits = target(prompt[None], positions)[0, -1, :V]
    draft(prompt[None], positions)
    token = sample(logits[None], params, generator)[0]
    stats, matcher = SpeculativeStats(), StopMatcher(stop_tokens)
    out: list[int] = matcher.push(int(token))
    produced, pos = 1, T  # ``token`` sits at ``pos`` and is in neither cache yet
    pending = token[None]  # tokens the draft still has to see, ending with ``token``
    while produced < max_new_tokens and not matcher.done:
        k = min(speculative_k, max_new_tokens - produced)
        # the draft proposes k tokens
        proposals, draft_probs = [], []
        feed, start = pending, pos - len(pending) + 1
        for i in range(k):
            d_logits = draft_step(feed[None], torch.arange(start, start + len(feed), device=prompt.device))[0, -1, :V]
            if params.greedy:
                nxt = d_logits.argmax()
            else:
                q = filtered_probs(d_logits[None], params)[0]
                nxt = draw(q[None], generator)[0]
                draft_probs.append(q)
            proposals.append(nxt)
            feed, start = nxt[None], pos + 1 + i
        # the target scores token + proposals in one pass
        seq = torch.stack([token, *proposals])
        t_logits = target_step(seq[None], torch.arange(pos, pos + k + 1, device=prompt.device))[0, :, :V]
        n_ok, fix = 0, None
        if params.greedy:
            best = t_logits.argmax(dim=-1)
            while n_ok < k and int(proposals[n_ok]) == int(best[n_ok]):
                n_ok += 1
            fix = best[n_ok]
        else:
            p_all = filtered_probs(t_logits, params)
            for i in range(k):
                p, q, x = p_all[i], draft_probs[i], proposals[i]
                accept = torch.rand((), generator=generator, device=p.device) < torch.clamp(p[x] / q[x], max=1.0)
                if not bool(accept):
                    residual = torch.clamp(p - q, min=0)
                    residual = residual / residual.sum() if residual.sum() > 0 else p
                    fix = draw(residual[None], generator)[0]
                    break
                n_ok += 1
            if fix is None:
                fix = draw(p_all[k][None], generator)[0]
        stats.proposed += k
        stats.accepted += n_ok
        for t in [*proposals[:n_ok], fix]:
            if produced >= max_new_tokens or matcher.done:
                break
            out += matcher.push(int(t))
            produced += 1
        # the draft saw token and proposals[:-1]; if all were accepted it still needs the last proposal
        pending = torch.stack([proposals[-1], fix]) if n_ok == k else fix[None]
        token, pos = fix, pos + n_ok + 1
    if not matcher.done:
        out += matcher.flush()
    return out, stats


def main(
    draft_model_checkpoint_dir: Optional[Path] = None,
    target_model_checkpoint_dir: Optional[Path] = None,
    prompt: str = "What food do llamas eat?",
    sys_prompt: Optional[str] = None,
    num_samples: int = 1,
    speculative_k: int = 3,
    max_new_tokens: int = 50,
    top_k: Optional[int] = 50,
    top_p: float = 1.0,
    temperature: float = 0.8,
    quantize: Optional[str] = None,
    precision: Optional[str] = None,
    compile: bool = False,
    access_token: Optional[str] = None,
) -> None:
    """Generate with the target model, speeded up by proposals from a smaller draft model sharing its tokenizer.

    Args:
        draft_model_checkpoint_dir: The small model that proposes tokens (folder, registry name or repo id).
        target_model_checkpoint_dir: The model whose output is produced.
        prompt: The prompt (formatted with the target's prompt style).
        sys_prompt: An optional system prompt.
        num_samples: How many completions to generate, one after the other.
        speculative_k: How many tokens the draft proposes per step.
        max_new_tokens: The most tokens to generate.
        top_k: Sample among the k most likely tokens (None: all).
        top_p: Nucleus sampling threshold in [0, 1].
        temperature: Sampling temperature; 0 means greedy (identical to the target alone).
        quantize: Weight quantization of both models, as `litgpt generate --quantize`.
        precision: Weight dtype, e.g. "bf16-true" or "32-true" (default: as `litgpt generate`).
        compile: Compile both models' steps after the prompt with torch.compile (slower start, faster tokens).
        access_token: Hugging Face token for gated repos (default: $HF_TOKEN).
    """
    from litgpt.generate import check_settings, load_for_cli

    if draft_model_checkpoint_dir is None or target_model_checkpoint_dir is None:
        raise LitGPTError("give both the draft and the target model: litgpt generate_speculatively DRAFT TARGET")
    check_settings(temperature, top_k, top_p, max_new_tokens, num_samples)
    target = load_for_cli(target_model_checkpoint_dir, precision, quantize, access_token)
    draft = load_for_cli(draft_model_checkpoint_dir, precision, quantize, access_token)
    if compile:
        target.compile()
        draft.compile()
    params = SamplingParams(temperature, top_k, top_p)
    ids = target._prompt_ids(prompt, sys_prompt)
    max_new_tokens = min(llm._max_new([ids], max_new_tokens)[0] for llm in (target, draft))  # as generate: cut to fit
    for i in range(num_samples):
        start = time.perf_counter()
        tokens, stats = speculative_generate(
            target.model, draft.model, ids, max_new_tokens, speculative_k, params, target._stop_tokens(),
            target_step=target.decode_fn, draft_step=draft.decode_fn,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        print(target.preprocessor.decode(tokens))
        print(
            f"Time for inference {i + 1}: {elapsed:.02f} sec total, {len(tokens) / elapsed:.02f} tokens/sec, "
            f"{len(tokens)} tokens",
            file=sys.stderr,
        )
        print(
            f"Acceptance rate: {stats.acceptance_rate:.1%} ({stats.accepted} of {stats.proposed} proposed tokens)",
            file=sys.stderr,
        )
