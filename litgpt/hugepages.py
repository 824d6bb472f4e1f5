"""CPU memory in 2 MB pages for what decoding reads at every token: the weights.

Decoding on a CPU streams every weight from memory once per token. With the kernel's 4 KB pages, that stream crosses
a page boundary every 4 KB: a TLB miss each time, and the hardware prefetchers stop at the boundary. On the Intel Xeon
(AMX) VM of ``benchmarks/README.md``, two cores read 212 MB of SmolLM2-135M's bfloat16 layers in 12.9 ms from 4 KB
pages and in 10.4 ms from 2 MB pages (one core: 25.2 and 17.7 ms), and whole decoding ran 1.12-1.32x faster.

Linux gives an anonymous mapping transparent huge pages where it asks for them (``MADV_HUGEPAGE``) unless they are
switched off (``/sys/kernel/mm/transparent_hugepage/enabled`` set to ``never``); memory-mapped checkpoint files and
PyTorch's allocations get 4 KB pages. :func:`to_huge_pages` moves a model's CPU tensors into one such mapping,
:func:`empty` allocates one tensor there. ``LITGPT_HUGE_PAGES=0`` switches both off (plain allocations).

:meth:`litgpt.api.LLM.distribute` marks a CPU model (:func:`move_later`) and the generation core moves it at its first
decode step (:func:`settle`), after the first token is out: a 2 MB page of memory the process never touched before
costs a zeroing (about 0.25 ms) but, in a VM whose host reclaims the guest's free memory (free page reporting, as on
this project's VMs), a host fault too. There, 270 MB of fresh huge pages took 0.25-0.7 s in the first allocation of
some processes and 37 ms in others, so the move stays off the time to the first token, and a generation of fewer
than ``MIN_TOKENS`` tokens leaves the model pending.
"""

from __future__ import annotations

import mmap
import os
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

from litgpt.utils import return_freed_memory

HUGE_PAGE = 2 << 20
ALIGN = 64  # each tensor's data starts on a cache line
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
TRIM_EVERY = 16 << 20
# a generation of fewer tokens leaves a pending model where it is: on the VM of benchmarks/README.md the move took
# 0.06-0.15 s (0.3-0.8 s from fresh host memory) and saved 1.4-4.9 ms per token
MIN_TOKENS = 32
CHUNK = 16 << 20


def enabled() -> bool:
    """Whether this process can ask for huge pages: Linux with transparent huge pages not switched off, and
    ``LITGPT_HUGE_PAGES`` not 0."""
    if os.environ.get("LITGPT_HUGE_PAGES", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        return "[never]" not in THP_SETTING.read_text()
    except OSError:
        return False


class _Region:
    """One anonymous mapping of at least ``nbytes`` from a 2 MB boundary, asked to be backed by huge pages. Tensors
    are carved from it in order with :meth:`take`, each one's pages faulted in first, one touch per 2 MB page (a copy
    into pages not yet there, faulting them from several threads at once, was several times slower). Each tensor
    holds the mapping alive."""

    def __init__(self, nbytes: int) -> None:
        self.map = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = torch.frombuffer(self.map, dtype=torch.uint8, count=1).data_ptr()
        self.offset = self.faulted = -base % HUGE_PAGE
        self.map.madvise(mmap.MADV_HUGEPAGE)

    def take(self, nbytes: int, fault: bool = True) -> torch.UntypedStorage:
        """The next ``nbytes``; ``fault=False`` leaves its pages to be faulted in (zeroed) as they are written."""
        nbytes = max(nbytes, 1)
        storage = torch.frombuffer(self.map, dtype=torch.uint8, count=nbytes, offset=self.offset)
        self.offset += -(-nbytes // ALIGN) * ALIGN
        while fault and self.faulted < self.offset:
            self.map[self.faulted] = 0
            self.faulted += HUGE_PAGE
        return storage.untyped_storage()


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)`` on the CPU, in huge pages where :func:`enabled` (a tensor of its own
    mapping, rounded up to 2 MB: meant for large tensors)."""
    if not enabled():
        return torch.empty(shape, dtype=dtype)
    nbytes = torch.Size(shape).numel() * dtype.itemsize
    return torch.empty(0, dtype=dtype).set_(_Region(nbytes).take(nbytes), 0, shape)


def zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """``torch.zeros(shape, dtype=dtype)`` on the CPU, in huge pages where :func:`enabled`, faulted in as it is first
    written (the kernel hands out zeroed pages), so a large buffer that fills slowly, such as a KV cache, costs
    memory only for what has been written. A tensor of its own mapping; under 2 MB a plain ``torch.zeros``."""
    nbytes = torch.Size(shape).numel() * dtype.itemsize
    if not enabled() or nbytes < HUGE_PAGE:
        return torch.zeros(shape, dtype=dtype)
    return torch.empty(0, dtype=dtype).set_(_Region(nbytes).take(nbytes, fault=False), 0, shape)


def _movable(t: torch.Tensor | None) -> bool:
    """A plain dense CPU tensor: a subclass (bitsandbytes' packed parameters) may keep its own view of the data."""
    plain = type(t) in (torch.Tensor, torch.nn.Parameter)
    return plain and t.device.type == "cpu" and t.layout == torch.strided and not t.is_quantized


def to_huge_pages(
    module: torch.nn.Module,
    release: Callable[[torch.Tensor], None] | None = None,
    keep: tuple[torch.Tensor, ...] = (),
) -> int:
    """Move ``module``'s CPU parameters and buffers into one mapping of huge pages, in place (the same Parameter
    objects; tensors that shared a storage still share one), except those sharing a storage with a tensor of
    ``keep``; returns the bytes moved, 0 where not :func:`enabled`.

    Storages are copied one at a time, in slices of ``CHUNK`` bytes each passed to ``release`` once copied (such as
    :meth:`litgpt.checkpoint.MappedFile.release`, which lets go of memory-mapped weights' pages), and each source is
    dropped before the next, so the weights are not held twice: at most one source tensor PyTorch allocated more.
    Each tensor keeps a storage of its own over its part of the mapping (``torch.save`` of one writes that part
    only); the mapping is freed when the last of them is. Move a model once it is final: tensors that later replace
    some of its weights leave the rest of the mapping in memory."""
    if not enabled():
        return 0
    kept = {t.untyped_storage().data_ptr() for t in keep}
    owners: dict[int, list[tuple[dict, str]]] = {}  # storage address -> the (module dict, name) pairs using it
    storages: dict[int, torch.UntypedStorage] = {}
    for sub in module.modules():
        for table in (sub._parameters, sub._buffers):
            for name, t in table.items():
                if not _movable(t):
                    continue
                storage = t.untyped_storage()
                if storage.nbytes() == 0 or storage.data_ptr() in kept:
                    continue
                storages.setdefault(storage.data_ptr(), storage)
                owners.setdefault(storage.data_ptr(), []).append((table, name))
    total = sum(-(-storage.nbytes() // ALIGN) * ALIGN for storage in storages.values())
    if total == 0:
        return 0
    region = _Region(total)
    freed = 0
    for address in list(storages):
        storage = storages.pop(address)
        new = region.take(storage.nbytes())
        source, target = (torch.empty(0, dtype=torch.uint8).set_(s, 0, (s.nbytes(),)) for s in (storage, new))
        for start in range(0, storage.nbytes(), CHUNK):
            target[start : start + CHUNK].copy_(source[start : start + CHUNK])
            if release is not None:
                release(source[start : start + CHUNK])
        for table, name in owners[address]:
            old = table[name]
            moved = torch.empty(0, dtype=old.dtype).set_(new, old.storage_offset(), old.shape, old.stride())
            if isinstance(old, torch.nn.Parameter):
                old.data = moved
            else:
                table[name] = moved
        freed += storage.nbytes()
        del storage, source, old
        if freed >= TRIM_EVERY:  # sources PyTorch allocated from glibc's heap: hand their pages back as we go
            freed = 0
            return_freed_memory()
    return_freed_memory()
    return total


_PENDING: weakref.WeakSet = weakref.WeakSet()


def move_later(model: torch.nn.Module) -> None:
    """Have :func:`settle` move ``model`` (an inference model, final: no training, no later quantization)."""
    if enabled():
        _PENDING.add(model)


def settle(model: torch.nn.Module) -> None:
    """Move ``model`` (a GPT) into huge pages if :func:`move_later` asked for it and it has not moved yet;
    memory-mapped weights let go of their file's pages as they are copied. The embedding table stays where it is
    (with an output layer tied to it): a decode step reads one row of it, and the output layer's int8 copy (in huge
    pages, :func:`litgpt.kernels.head_screen`) stands in for the whole when only the top logits are needed."""
    if model in _PENDING:
        _PENDING.discard(model)
        from litgpt.checkpoint import MappedFile

        to_huge_pages(model, release=MappedFile(None).release, keep=(model.transformer.wte.weight,))
