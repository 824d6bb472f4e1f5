"""Small helpers shared across the package."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def require_folder(path: Path, what: str = "Checkpoint folder") -> None:
    """A one-line error unless ``path`` is a folder: it does not exist, or it is a file."""
    from litgpt.errors import LitGPTError

    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise LitGPTError(f"{what} {str(path)!r} {state}")


def writable_folder(folder: Path, option: str = "--out_dir") -> None:
    """Create ``folder`` if needed and check that files can be written in it (one-line errors, not mid-run);
    ``option`` is how the command names the folder (a positional one: "output folder")."""
    from litgpt.errors import LitGPTError

    if folder.exists() and not folder.is_dir():
        raise LitGPTError(f"the output folder {str(folder)!r} is a file; choose another {option}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise LitGPTError(f"cannot write into the output folder {str(folder)!r}: {e.strerror or e}") from None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it is renamed to ``path`` only if the block succeeds, with the mode a
    new file gets (mkstemp makes it private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, usual_mode(directory=False))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def usual_mode(directory: bool) -> int:
    """The mode a new file or folder gets under the process's umask (tempfile makes private ones)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit systems


@contextmanager
def keep_freed_memory(device: object = "cpu", top: int = 1 << 30) -> Iterator[bool]:
    """Within the block, glibc keeps memory freed at the top of its heap (up to ``top`` bytes) instead of handing it
    back to the kernel, and serves blocks up to 32 MiB from that heap; yields whether it applies (tensors on the CPU
    ``device``, Linux with glibc). Training on another device leaves the allocator as it is.

    A training step frees most of what it allocates (activations, gradients) and allocates it again in the next
    step. By default glibc returns a freed top of heap of more than twice its largest recent block, so every step
    touches that memory afresh: on a 2-core VM, a full finetuning step of SmolLM2-135M (4 x 256 tokens, bfloat16)
    took about 210,000 page faults (850 MB) and 0.5 s of system time, some 10% of the step. Kept, the step takes
    about 50,000 (the blocks above 32 MiB, which glibc always maps afresh). The peak is unchanged: what is kept is
    what the next step uses again. Forbidding fresh mappings altogether (``M_MMAP_MAX`` 0) removes those too, but
    with batches of varying length the heap then fragments and grew to twice the resident memory in 120 steps.

    On leaving, the thresholds become the values glibc's own adjustment settles at for such programs (blocks up to
    32 MiB from the heap, a free top of more than 64 MiB returned) and the kept memory is returned."""
    on_cpu = str(device).split(":")[0] == "cpu"  # a str or a torch.device
    libc = _glibc() if on_cpu else None
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, top)
    try:
        yield libc is not None
    finally:
        if libc is not None:
            libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)
            libc.malloc_trim(0)


def return_freed_memory() -> None:
    """Hand the pages of memory freed inside glibc's heap back to the kernel (``malloc_trim``); a no-op elsewhere."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc():
    """This process's C library as a ``ctypes.CDLL`` on Linux with glibc (mallopt, malloc_trim), else None."""
    import ctypes
    import platform

    return ctypes.CDLL(None) if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc" else None


def peak_rss_gb() -> float:
    """This process's peak resident memory: VmHWM on Linux (ru_maxrss there also counts the peak of the parent this
    process was forked from), ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1e9 if sys.platform == "darwin" else 1e6)
