"""Safe reading and writing of weight files.

Every pickle-based file (``.pth``, ``.bin``, ``.pt``, ``.ckpt``) is read with ``weights_only=True``: a file that
would need to run code or rebuild arbitrary objects is refused with a :class:`LitGPTError` instead of being trusted.
``.safetensors`` files hold no code at all. Large files are memory-mapped where the format allows it.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from litgpt.errors import LitGPTError
from litgpt.utils import atomic_torch_save

PICKLE_SUFFIXES = (".pth", ".bin", ".pt", ".ckpt")


def load_state_dict(path: str | Path, mmap: bool = True) -> dict[str, Any]:
    """Load a state dict from ``.safetensors`` or a pickle-based file (``.pth``/``.bin``/``.pt``), never running code.

    Tensors land on the CPU. With ``mmap=True`` pickle-based files in the zip format are memory-mapped, so a tensor
    costs memory only once it is read or copied.
    """
    path = Path(path)
    if not path.is_file():
        raise LitGPTError(f"Weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as e:
            raise LitGPTError(f"{path} is not a readable safetensors file: {_first_line(e)}") from None
    return _torch_load(path, mmap)


def _torch_load(path: Path, mmap: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise LitGPTError(
            f"{path} contains pickled code or objects other than tensors ({_unsafe_global(e)}); "
            "refusing to load it. Only load weights you trust, re-saved as a plain state dict or safetensors"
        ) from None
    except RuntimeError as e:
        message = str(e)
        if mmap and ("mmap" in message or "zipfile" in message):  # legacy (non-zip) files cannot be mapped
            return _torch_load(path, mmap=False)
        raise LitGPTError(f"{path} could not be read as a PyTorch checkpoint: {_first_line(e)}") from None
    except Exception as e:  # truncated or foreign files fail in many ways inside the unpickler
        if _broken_zip(path):
            raise LitGPTError(
                f"{path} is corrupt or truncated (its zip archive is incomplete); save or copy it again"
            ) from None
        raise LitGPTError(
            f"{path} could not be read as a PyTorch checkpoint ({_first_line(e)}); is the file corrupt or truncated?"
        ) from None


def _broken_zip(path: Path) -> bool:
    """A file that starts as a zip archive (torch.save's format) but whose archive cannot be read: cut short, say."""
    import zipfile

    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def model_state(obj: Any, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The model's state dict inside a loaded checkpoint: plain, or wrapped as ``{"model": state_dict}``."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise LitGPTError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return dict(obj)


def load_checkpoint(model: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load the weights at ``path`` into ``model``; missing, unexpected or misshaped tensors give one clear error."""
    state = model_state(load_state_dict(path), path)
    expected = model.state_dict()
    if strict:
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensor(s): {_few(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s): {_few(unexpected)}")
        if problems:
            raise LitGPTError(
                f"{path} does not match the model: {'; '.join(problems)}. "
                "Is model_config.yaml the config these weights were trained with?"
            )
    require_shapes(state, expected, path, "the model", "the weights do not match the model config")
    model.load_state_dict(state, strict=strict)
    return model


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (``.safetensors`` or a torch pickle of plain tensors)."""
    path = Path(path)
    state = {k: own_storage(v) for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        from litgpt.utils import atomic_path

        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        return
    atomic_torch_save(state, path)


def own_storage(t: torch.Tensor) -> torch.Tensor:
    """``t`` with a storage of its own: torch.save writes a view's whole storage, so a slice would drag its parent."""
    if t.storage_offset() != 0 or t.untyped_storage().nbytes() != t.numel() * t.element_size() or not t.is_contiguous():
        return t.clone(memory_format=torch.contiguous_format)
    return t


def _unsafe_global(e: Exception) -> str:
    for line in str(e).splitlines():
        line = line.strip()
        if "GLOBAL" in line or "Unsupported" in line:
            return line.rstrip(".")
    return "not allowed by weights_only loading"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def require_shapes(state: Mapping[str, Any], expected: Mapping[str, Any], source, expecter: str, hint: str) -> None:
    """A one-line error for the first tensor of ``state`` whose shape differs from ``expected``'s (tensors or shape
    tuples) under the same name: what ``load_state_dict`` would report as a page of size mismatches."""
    for name, tensor in state.items():
        want = expected.get(name)
        want = tuple(want.shape) if isinstance(want, torch.Tensor) else want
        if want is not None and tuple(tensor.shape) != tuple(want):
            raise LitGPTError(f"{source}: tensor {name} has shape {tuple(tensor.shape)} but {expecter} expects {want}; {hint}")


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


class MappedFile:
    """Where a weights file is memory-mapped into this process (read from ``/proc/self/maps``; Linux only), so that
    the resident pages of a tensor read from it can be let go once the tensor has been copied (cast to another dtype,
    moved to a GPU): a model loaded in another dtype than its file's then never holds two copies of the weights.
    Only pages inside the file's own mappings are ever released; touching them again reads the file again. Release
    only tensors that nothing wrote to since they were loaded: a write to a private mapping lives in the pages let
    go of."""

    MADV_DONTNEED = 4
    CHUNK_BYTES = 1 << 26  # larger tensors are copied (and let go of) in row slices of about this size

    def __init__(self, path: str | Path | None) -> None:
        """``path`` None: every file this process maps (its weights however they were loaded)."""
        self.ranges: list[tuple[int, int]] = []
        if not sys.platform.startswith("linux"):
            return
        target = None if path is None else str(Path(path).resolve())
        try:
            lines = Path("/proc/self/maps").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            fields = line.split(None, 5)
            if len(fields) == 6 and (fields[5] == target or target is None and fields[5].startswith("/")):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                self.ranges.append((low, high))

    def release(self, tensor: torch.Tensor) -> None:
        """Let go of the resident pages wholly inside ``tensor``'s (contiguous) data, if it lies in this file's
        mapping."""
        if not self.ranges or tensor.device.type != "cpu" or not tensor.is_contiguous():
            return
        begin, page = tensor.data_ptr(), mmap.PAGESIZE
        low, high = -(-begin // page) * page, (begin + tensor.nbytes) // page * page
        if high > low and any(a <= low and high <= b for a, b in self.ranges):
            _libc().madvise(ctypes.c_void_p(low), ctypes.c_size_t(high - low), self.MADV_DONTNEED)

    def copy(self, t: torch.Tensor, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """``t.to(device, dtype)``, letting go of ``t``'s pages as the copy is made (a large tensor in row slices,
        so that a 600 MB embedding is never resident twice over)."""
        if t.dtype == dtype and t.device == torch.device(device):
            return t
        if not self.ranges or t.device.type != "cpu" or t.dim() == 0 or t.nbytes <= self.CHUNK_BYTES:
            out = t.to(device=device, dtype=dtype)
            self.release(t)
            return out
        out = torch.empty(t.shape, dtype=dtype, device=device)
        rows = max(1, self.CHUNK_BYTES * t.shape[0] // t.nbytes)
        for start in range(0, t.shape[0], rows):
            part = t[start : start + rows]
            out[start : start + rows].copy_(part)
            self.release(part)
        return out

    def cast(self, model: torch.nn.Module, device: torch.device | str, dtype: torch.dtype | None) -> torch.nn.Module:
        """``model.to(device, dtype)`` (``dtype=None``: each tensor keeps its own), releasing each mapped tensor's
        pages as its copy is made. Tensors that are one view of one storage in the file (an output layer saved as
        the embedding it copies) stay one tensor: one copy, not two, as they were in the file."""
        copies: dict[tuple, torch.Tensor] = {}

        def convert(t: torch.Tensor) -> torch.Tensor:
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if key not in copies:
                copies[key] = self.copy(t, device, dtype if dtype is not None and t.is_floating_point() else t.dtype)
            return copies[key]

        return model._apply(convert)
