"""`litgpt download`: fetch a model's Hugging Face files into ``checkpoints/<org>/<name>`` and convert them.

The file list (with sizes) comes from the Hub's model info. Tokenizer and config files are always fetched; of the
weights, safetensors are preferred over PyTorch ``.bin`` files and only one of the two formats is fetched. Each file
is streamed into a partial file under ``<dir>/.cache/litgpt/`` that is kept when the download is interrupted, so the
next run asks the server only for the bytes still missing (huggingface_hub's own ``hf_hub_download`` discards its
partial files). Files already present and up to date are skipped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from litgpt.errors import LitGPTError

# fetched whenever the repository has them, also with --tokenizer_only
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "generation_config.json",
    "config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
# `.bin` files at the top of a repository that are not model weights
NOT_WEIGHTS = frozenset({"training_args.bin", "optimizer.bin", "scheduler.bin", "rng_state.bin"})
PARTIAL_DIR = Path(".cache") / "litgpt"


class HubLookupError(LitGPTError):
    """The Hub could not be asked for a repository, or has no such repository; ``reason`` says which in a clause
    (for a caller that also looked for the name elsewhere, such as a local folder)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    version: str  # the LFS sha256 or git blob id: changes whenever the content does


def download_from_hub(
    repo_id: str | None = None,
    access_token: str | None = None,
    tokenizer_only: bool = False,
    convert_checkpoint: bool = True,
    dtype: str | None = None,
    checkpoint_dir: Path = Path("checkpoints"),
    model_name: str | None = None,
) -> Path:
    """Download a model from the Hugging Face Hub and convert it to a LitGPT checkpoint.

    Without a repo id, prints the ids of the supported models (as `litgpt download list` does).

    Args:
        repo_id: The repository to download, as ``org/name`` (e.g. ``microsoft/phi-2``). A repository outside the
            list of supported models is accepted when its ``config.json`` describes a supported architecture or
            ``--model_name`` names one.
        access_token: Hugging Face token, needed for gated and private repositories (defaults to ``$HF_TOKEN``).
        tokenizer_only: Fetch only the tokenizer and config files, not the weights.
        convert_checkpoint: Convert the downloaded weights to ``lit_model.pth`` + ``model_config.yaml``.
        dtype: Data type of the converted weights (e.g. ``bfloat16``); the checkpoint's own by default.
        checkpoint_dir: Where to put the files: they land in ``checkpoint_dir/org/name``.
        model_name: The LitGPT model name (architecture) to convert with, for repositories LitGPT does not list.
    """
    from litgpt.config import Config, name_to_config, repo_ids

    if repo_id is None or repo_id.strip() in ("", "list"):
        print("\n".join(repo_ids()))
        return Path(checkpoint_dir)
    repo_id = repo_id.strip().strip("/")
    registry = name_to_config()
    if "/" not in repo_id and repo_id in registry:  # a short model name: use its repository
        entry = registry[repo_id]["hf_config"]
        repo_id = f"{entry['org']}/{entry['name']}"
    if "/" not in repo_id:  # the Hub would only say it does not know it (or nothing at all, offline)
        raise LitGPTError(_not_a_repo_id_message(repo_id))
    registered = _registered_name(repo_id)
    converting = convert_checkpoint and not tokenizer_only
    if model_name is not None:
        Config.from_name(model_name)  # fail now, with close names, rather than after a long download
    if converting and dtype is not None:
        _check_dtype(dtype)
    token = access_token or os.getenv("HF_TOKEN") or None

    hub = _Hub(repo_id, token)
    with hub.errors():
        files, info_id, revision, gated = hub.list_files()
        repo_id = hub.repo_id = info_id or repo_id  # the Hub's spelling
        if gated and not hub.has_token():
            raise LitGPTError(_gated_message(repo_id, hub.endpoint, token_given=False))
        wanted = [f for f in TOKENIZER_FILES if f in files]
        if not tokenizer_only:
            weights = select_weights(files, hub.read_index(files, revision))
            if not weights:
                raise LitGPTError(_no_weights_message(repo_id, files))
            wanted += weights
        elif not wanted:
            raise LitGPTError(f"{repo_id} has none of the tokenizer files ({', '.join(TOKENIZER_FILES)})")
        if converting and registered is None and model_name is None and "config.json" not in files:
            raise LitGPTError(
                f"{repo_id} is not a model LitGPT lists and has no config.json to read its architecture from; "
                "pass --model_name with the LitGPT model it is built like (see `litgpt pretrain list`)"
            )

        directory = Path(checkpoint_dir) / repo_id
        plan = [files[name] for name in wanted]
        weight_bytes = sum(f.size for f in plan if f.name not in TOKENIZER_FILES)
        check_disk_space(directory, plan, extra=weight_bytes if converting else 0)

        total = sum(f.size for f in plan)
        print(f"Downloading {len(plan)} files ({_human(total)}) from {repo_id} to {directory}", file=sys.stderr)
        small = [f for f in plan if f.name in TOKENIZER_FILES]
        for remote in small:
            hub.fetch(remote, directory, revision)
        if converting and registered is None and model_name is None:
            _check_architecture(repo_id, directory / "config.json")
        for remote in plan:
            if remote not in small:
                hub.fetch(remote, directory, revision)

    if converting:
        from litgpt.convert_hf import convert_to_litgpt

        convert_to_litgpt(directory, model_name=model_name or registered, dtype=dtype)
    print(f"Saved {repo_id} to {directory}")
    return directory


def select_weights(files: Iterable[str], index: dict | None = None) -> list[str]:
    """The weight files to fetch: safetensors if there are any, else PyTorch `.bin` files; never both.

    With a shard index, the index and exactly the shards it names; else the single standard file when present
    (a Mistral-style ``consolidated.safetensors`` beside it is a duplicate), else every top-level file of the format.
    ``index`` maps an index file name to its parsed content when it was read.
    """
    names = set(files)
    index = index or {}
    for index_name, single, suffix in (
        (SAFETENSORS_INDEX, "model.safetensors", ".safetensors"),
        (BIN_INDEX, "pytorch_model.bin", ".bin"),
    ):
        if index_name in names and index_name in index:
            shards = sorted(set(index[index_name].get("weight_map", {}).values()))
            missing = [s for s in shards if s not in names]
            if missing:
                raise LitGPTError(f"{index_name} names shards the repository lacks: {', '.join(missing[:5])}")
            return [index_name, *shards]
        if single in names:
            return [single]
        top = sorted(n for n in names if "/" not in n and n.endswith(suffix) and n not in NOT_WEIGHTS)
        if top:
            return ([index_name] if index_name in names else []) + top
    return []


def check_disk_space(directory: Path, plan: list[RemoteFile], extra: int = 0) -> None:
    """Raise before downloading when the disk holding `directory` cannot take the files still missing there."""
    needed = extra
    for remote in plan:
        if _up_to_date(directory, remote):
            continue
        partial = _partial_path(directory, remote)
        have = partial.stat().st_size if partial.is_file() else 0
        needed += max(remote.size - have, 0)
    probe = Path(directory).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        what = f"{_human(needed - extra)} to download" + (f" + {_human(extra)} for lit_model.pth" if extra else "")
        raise LitGPTError(
            f"Not enough disk space in {probe}: need {_human(needed)} ({what}) but only {_human(free)} is free; "
            "free some space or pass --checkpoint_dir on a larger disk"
        )


class _Hub:
    """The Hugging Face Hub calls download_from_hub makes, with their failures turned into LitGPTErrors."""

    def __init__(self, repo_id: str, token: str | None) -> None:
        from huggingface_hub import constants

        self.repo_id = repo_id
        self.token = token
        # read at call time so that a HF_ENDPOINT set after huggingface_hub was imported still counts
        self.endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")

    def has_token(self) -> bool:
        from huggingface_hub import get_token

        return bool(self.token or get_token())

    def list_files(self) -> tuple[dict[str, RemoteFile], str | None, str, bool]:
        """name -> file (with size), the canonical repo id, the commit to fetch from, whether the repo is gated."""
        from huggingface_hub import HfApi

        info = HfApi(endpoint=self.endpoint).model_info(self.repo_id, files_metadata=True, token=self.token, timeout=60)
        files = {}
        for sib in info.siblings or []:
            version = (sib.lfs.sha256 if sib.lfs is not None else None) or sib.blob_id or ""
            files[sib.rfilename] = RemoteFile(sib.rfilename, int(sib.size or 0), version)
        return files, info.id, info.sha or "main", bool(info.gated)

    def read_index(self, files: Iterable[str], revision: str) -> dict:
        """The shard indexes of the repo, read into memory (they are small; the shard list sizes the download)."""
        from huggingface_hub import get_session, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

        out = {}
        for name in (SAFETENSORS_INDEX, BIN_INDEX):
            if name not in files:
                continue
            url = hf_hub_url(self.repo_id, name, revision=revision, endpoint=self.endpoint)
            response = get_session().get(url, headers=build_hf_headers(token=self.token), timeout=60)
            hf_raise_for_status(response)
            try:
                out[name] = json.loads(response.content)
            except ValueError:
                raise LitGPTError(f"{self.repo_id}: {name} is not valid JSON") from None
            if name == SAFETENSORS_INDEX:
                break  # safetensors win: the .bin index is not needed
        return out

    def fetch(self, remote: RemoteFile, directory: Path, revision: str) -> Path:
        """Download one file into `directory`, resuming a partial download left by an earlier run."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        dest = directory / remote.name
        if _up_to_date(directory, remote):
            print(f"{remote.name} is already downloaded", file=sys.stderr)
            return dest
        url = hf_hub_url(self.repo_id, remote.name, revision=revision, endpoint=self.endpoint)
        meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint, timeout=60)
        headers = build_hf_headers(token=self.token)
        # a Xet-stored file is fetched through its resolve address, which redirects to a plain HTTP bridge
        location = url if meta.xet_file_data is not None else (meta.location or url)
        if urlsplit(location).netloc != urlsplit(url).netloc:
            headers.pop("authorization", None)  # a signed CDN address: the token stays with the Hub
        expected = meta.size if meta.size is not None else remote.size
        partial = _partial_path(directory, remote)
        partial.parent.mkdir(parents=True, exist_ok=True)
        have = partial.stat().st_size if partial.is_file() else 0
        if expected is not None and have > expected:  # not a prefix of this file: start over
            partial.unlink()
            have = 0
        if have:
            print(f"Resuming {remote.name} from {_human(have)}", file=sys.stderr)
        with open(partial, "ab") as f:
            http_get(
                location, f, resume_size=have, headers=headers, expected_size=expected, displayed_filename=remote.name
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, dest)
        _version_path(directory, remote).write_text(remote.version)
        return dest

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the Hub's exceptions into one-line LitGPTErrors for the CLI."""
        try:
            yield
        except LitGPTError:
            raise
        except Exception as e:
            message = _explain(e, self)
            if message is None:
                raise
            reason = _lookup_failure(e, self)
            raise (LitGPTError(message) if reason is None else HubLookupError(message, reason)) from e


def _explain(error: BaseException, hub: _Hub) -> str | None:
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    repo_id = hub.repo_id
    if isinstance(error, GatedRepoError):
        return _gated_message(repo_id, hub.endpoint, token_given=hub.has_token())
    if isinstance(error, (RepositoryNotFoundError, HFValidationError)):
        return _unknown_repo_message(repo_id, private_hint=not hub.has_token())
    if isinstance(error, (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.TransportError)):
        from litgpt.config import repo_ids, suggest

        known = repo_ids()
        typo = "" if repo_id in known else suggest(repo_id, known, what="repo id")
        typo = f" {typo}" if typo.startswith("Did you mean") else ""
        return (
            f"Cannot reach the Hugging Face Hub at {hub.endpoint} to download {repo_id} "
            f"({type(error).__name__}: no network?).{typo} Check your connection, or load a model you already have: "
            "a local checkpoint folder, or a GGUF file with `litgpt convert_to_litgpt file.gguf`"
        )
    if isinstance(error, EntryNotFoundError):
        return f"{repo_id} changed on the Hub while downloading ({_first_line(error)}); run the command again"
    if isinstance(error, HfHubHTTPError) and error.response is not None and error.response.status_code == 401:
        return (
            f"The Hugging Face Hub rejected the access token while downloading {repo_id} ({_first_line(error)}); "
            "check --access_token or HF_TOKEN"
        )
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return f"The Hugging Face Hub answered {status} for {repo_id}: {_first_line(error)}. Try again later"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"The disk filled up while downloading {repo_id}; free some space and run the command again to resume"
    if isinstance(error, OSError) and "Consistency check failed" in str(error):
        return f"A file of {repo_id} arrived incomplete ({_first_line(error)}); run the command again to resume"
    return None


def _lookup_failure(error: BaseException, hub: _Hub) -> str | None:
    """Why the Hub gave nothing for the repository, as a clause, when it could not be asked or has no such
    repository; else None."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return None
    if isinstance(error, (RepositoryNotFoundError, HFValidationError)):
        private = " (a private one needs --access_token)" if not hub.has_token() else ""
        return f"the Hugging Face Hub has no repository {hub.repo_id}{private}"
    if isinstance(error, OfflineModeIsEnabled):
        return "the Hugging Face Hub was not asked (HF_HUB_OFFLINE is set)"
    if isinstance(error, (LocalEntryNotFoundError, httpx2.TransportError)):
        return f"the Hugging Face Hub at {hub.endpoint} could not be reached ({type(error).__name__}: no network?)"
    return None


def _not_a_repo_id_message(name: str) -> str:
    """For a name without an org: the registry's repo ids whose name part is close to it."""
    import difflib

    from litgpt.config import repo_ids

    by_name = {rid.split("/", 1)[1].lower(): rid for rid in repo_ids()}
    close = [by_name[n] for n in difflib.get_close_matches(name.lower(), list(by_name), n=5, cutoff=0.6)]
    hint = f"Did you mean: {', '.join(close)}?" if close else "Run `litgpt download list` to see the supported ones."
    return f"{name!r} is not a repo id: a repo id has the form org/name, such as microsoft/phi-2. {hint}"


def _registered_name(repo_id: str) -> str | None:
    from litgpt.config import _repo_index

    return _repo_index().get(repo_id.lower())


def _check_dtype(dtype: str) -> None:
    import torch

    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise LitGPTError(f"--dtype {dtype!r} is not a torch dtype; use e.g. float32, float16 or bfloat16")


def _check_architecture(repo_id: str, config_json: Path) -> None:
    """A repository outside the registry is usable only when its config.json maps to a LitGPT config."""
    try:
        from litgpt.hf_config import config_from_hf
    except ImportError:
        return
    try:
        config_from_hf(config_json)
    except LitGPTError as e:
        raise LitGPTError(
            f"{repo_id} is not a model LitGPT lists and its config.json is not supported ({e}); "
            "pass --model_name with the LitGPT model it is built like, or --convert_checkpoint false"
        ) from None


def _gated_message(repo_id: str, endpoint: str, token_given: bool) -> str:
    page = f"{endpoint}/{repo_id}"
    if token_given:
        return (
            f"{repo_id} is a gated repository and your token has no access to it yet: accept its licence at {page} "
            "with the account the token belongs to, then run the command again"
        )
    return (
        f"{repo_id} is a gated repository: accept its licence at {page}, then pass --access_token <your token> "
        "or set HF_TOKEN (tokens: https://huggingface.co/settings/tokens)"
    )


def _unknown_repo_message(repo_id: str, private_hint: bool) -> str:
    from litgpt.config import repo_ids, suggest

    hint = suggest(repo_id, repo_ids(), what="repo id")
    if not hint.startswith("Did you mean"):
        hint = "Run `litgpt download list` to see the supported repo ids."
    private = " (a private repository needs --access_token)" if private_hint else ""
    return f"Repository {repo_id!r} was not found on the Hugging Face Hub{private}. {hint}"


def _no_weights_message(repo_id: str, files: Iterable[str]) -> str:
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if ggufs:
        return (
            f"{repo_id} has no .safetensors or .bin weights, only GGUF files ({', '.join(ggufs[:3])}); "
            "download one and run `litgpt convert_to_litgpt file.gguf`"
        )
    return f"{repo_id} has no .safetensors or .bin weights; pass --tokenizer_only true to fetch only its tokenizer"


def _partial_path(directory: Path, remote: RemoteFile) -> Path:
    return Path(directory) / PARTIAL_DIR / f"{remote.name}.{remote.version[:16] or 'unversioned'}.incomplete"


def _version_path(directory: Path, remote: RemoteFile) -> Path:
    return Path(directory) / PARTIAL_DIR / f"{remote.name}.version"


def _up_to_date(directory: Path, remote: RemoteFile) -> bool:
    """The file is there with the right size and, when this tool fetched it, the same version as on the Hub."""
    dest = Path(directory) / remote.name
    if not dest.is_file() or dest.stat().st_size != remote.size:
        return False
    record = _version_path(directory, remote)
    return not record.is_file() or record.read_text().strip() == remote.version


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
