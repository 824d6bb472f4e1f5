"""`litgpt download` against a local stand-in of the Hugging Face Hub (HF_ENDPOINT points at it): nothing here
reaches the network. The stand-in serves the model-info API (file list with sizes) and `resolve` downloads with the
headers huggingface_hub checks (X-Repo-Commit, ETag, Content-Length) and HTTP Range requests, and it can drop a
connection halfway through a file or fail, to exercise resuming."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from litgpt.__main__ import main
from litgpt.download import download_from_hub, select_weights
from litgpt.errors import LitGPTError

TINYLLAMA = "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"
GOOD_TOKEN = "hf_good"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pth")


class FakeHub:
    """Repositories in memory, plus a log of the requests served and knobs to break downloads."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drop: dict[str, int] = {}  # filename -> how many GETs to cut off halfway
        self.fail: set[str] = set()  # filenames answered with 500 once their drops are used up
        self.server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, files: dict[str, bytes], gated: bool = False) -> None:
        self.repos[repo_id.lower()] = {"id": repo_id, "files": files, "gated": gated}

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def gets(self, suffix: str = "") -> list[tuple[str, str | None]]:
        return [(p, r) for m, p, r in self.log if m == "GET" and "/resolve/" in p and p.endswith(suffix)]


def _versions(name: str, data: bytes) -> dict:
    if name.endswith(WEIGHT_SUFFIXES):  # stored with LFS on the real Hub: the ETag is the sha256
        sha = hashlib.sha256(data).hexdigest()
        return {
            "etag": sha,
            "blobId": hashlib.sha1(data).hexdigest(),
            "lfs": {"sha256": sha, "size": len(data), "pointerSize": 134},
        }
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return {"etag": blob, "blobId": blob, "lfs": None}


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a dropped body is seen as cut short

        def log_message(self, *args) -> None:
            pass

        def _error(self, status: int, code: str | None = None) -> None:
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _repo(self, repo_id: str) -> dict | None:
            return hub.repos.get(repo_id.lower())

        def _allowed(self, repo: dict) -> bool:
            if not repo["gated"]:
                return True
            return self.headers.get("authorization") == f"Bearer {GOOD_TOKEN}"

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.log.append((self.command, path, self.headers.get("Range")))
            parts = path.strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self._info("/".join(parts[2:4]))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._file("/".join(parts[:2]), "/".join(parts[4:]), body)
            self._error(404)

        def _info(self, repo_id: str) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return self._error(401, "RepoNotFound")
            siblings = []
            for name, data in repo["files"].items():
                v = _versions(name, data)
                siblings.append({"rfilename": name, "size": len(data), "blobId": v["blobId"], "lfs": v["lfs"]})
            payload = {
                "id": repo["id"],
                "sha": COMMIT,
                "private": False,
                "gated": "manual" if repo["gated"] else False,
                "siblings": siblings,
            }
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _file(self, repo_id: str, name: str, body: bool) -> None:
            repo = self._repo(repo_id)
            if repo is None:
                return self._error(401, "RepoNotFound")
            if not self._allowed(repo):
                return self._error(401 if "authorization" not in self.headers else 403, "GatedRepo")
            if name not in repo["files"]:
                return self._error(404, "EntryNotFound")
            data = repo["files"][name]
            if body and hub.drop.get(name, 0) <= 0 and name in hub.fail:
                return self._error(500)
            start = 0
            wanted = self.headers.get("Range")
            if body and wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes=") : -1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{_versions(name, data)["etag"]}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if hub.drop.get(name, 0) > 0:  # send half of what was promised, then hang up
                hub.drop[name] -= 1
                self.wfile.write(data[start : start + (len(data) - start) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    return Handler


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.server = server
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-hf-home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # so that a cut-off body leaves bytes to resume
    yield fake
    server.shutdown()
    server.server_close()


def _tokenizer_files() -> dict[str, bytes]:
    return {
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}',
        "tokenizer.model": b"\x0a\x0bsentencepiece",
        "tokenizer_config.json": b'{"bos_token": "<s>", "eos_token": "</s>"}',
        "generation_config.json": b'{"bos_token_id": 1, "eos_token_id": 2}',
        "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}',
        "special_tokens_map.json": b'{"bos_token": "<s>"}',
    }


def _files(directory: Path) -> set[str]:
    return {
        p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file() and ".cache" not in p.parts
    }


def test_select_weights_prefers_safetensors_and_follows_the_index():
    index = {"model.safetensors.index.json": {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}}
    files = [
        "model.safetensors.index.json",
        "model-1.safetensors",
        "model-2.safetensors",
        "consolidated.safetensors",  # a duplicate of the shards in another layout
        "pytorch_model.bin.index.json",
        "pytorch_model-1.bin",
        "README.md",
    ]
    assert select_weights(files, index) == [
        "model.safetensors.index.json",
        "model-1.safetensors",
        "model-2.safetensors",
    ]
    assert select_weights(["model.safetensors", "consolidated.safetensors", "pytorch_model.bin"]) == [
        "model.safetensors"
    ]
    assert select_weights(["pytorch_model.bin", "training_args.bin", "config.json"]) == ["pytorch_model.bin"]
    bins = {"pytorch_model.bin.index.json": {"weight_map": {"a": "p-1.bin", "b": "p-2.bin", "c": "p-1.bin"}}}
    assert select_weights(["pytorch_model.bin.index.json", "p-1.bin", "p-2.bin", "training_args.bin"], bins) == [
        "pytorch_model.bin.index.json",
        "p-1.bin",
        "p-2.bin",
    ]
    assert select_weights(["model.gguf", "config.json"]) == []


def test_safetensors_preferred_over_bin(hub, tmp_path):
    files = {
        **_tokenizer_files(),
        "model.safetensors": b"S" * 5000,
        "pytorch_model.bin": b"B" * 5000,
        "README.md": b"# card",
        "original/consolidated.pth": b"C" * 100,
    }
    hub.add("some-org/both-formats", files)
    out = download_from_hub("some-org/both-formats", convert_checkpoint=False, checkpoint_dir=tmp_path / "ckpt")
    assert out == tmp_path / "ckpt" / "some-org" / "both-formats"
    assert _files(out) == set(_tokenizer_files()) | {"model.safetensors"}
    assert (out / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert not hub.gets(".bin")


def test_sharded_safetensors_fetch_exactly_the_indexed_shards(hub, tmp_path):
    index = {
        "metadata": {},
        "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"},
    }
    files = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"1" * 300,
        "model-00002-of-00002.safetensors": b"2" * 300,
        "consolidated.safetensors": b"c" * 600,
        "pytorch_model.bin.index.json": b"{}",
        "pytorch_model-00001-of-00001.bin": b"b" * 600,
    }
    hub.add("some-org/sharded", files)
    out = download_from_hub("some-org/sharded", convert_checkpoint=False, checkpoint_dir=tmp_path)
    assert _files(out) == {
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }


def test_tokenizer_only_tutorial_flow(hub, tmp_path, monkeypatch, capsys):
    """`litgpt download --repo_id TinyLlama/... --tokenizer_only true` puts only the tokenizer in checkpoints/."""
    files = {**_tokenizer_files(), "model.safetensors": b"W" * 10_000, "README.md": b"# TinyLlama"}
    hub.add(TINYLLAMA, files)
    monkeypatch.chdir(tmp_path)
    main(["download", "--repo_id", TINYLLAMA, "--tokenizer_only", "true"])
    out = tmp_path / "checkpoints" / TINYLLAMA
    assert _files(out) == set(_tokenizer_files())
    for name, data in _tokenizer_files().items():
        assert (out / name).read_bytes() == data
    assert not hub.gets(".safetensors")
    assert str(Path("checkpoints") / TINYLLAMA) in capsys.readouterr().out


def test_repo_id_may_be_given_positionally(hub, tmp_path, monkeypatch, capsys):
    """`litgpt download TinyLlama/...` as well as `--repo_id TinyLlama/...`."""
    hub.add(TINYLLAMA, _tokenizer_files())
    monkeypatch.chdir(tmp_path)
    main(["download", TINYLLAMA, "--tokenizer_only", "true"])
    assert _files(tmp_path / "checkpoints" / TINYLLAMA) == set(_tokenizer_files())


def test_a_short_model_name_means_its_repository(hub, tmp_path):
    hub.add(TINYLLAMA, _tokenizer_files())
    out = download_from_hub("tiny-llama-1.1b", tokenizer_only=True, checkpoint_dir=tmp_path)
    assert out == tmp_path / TINYLLAMA


def test_dropped_connection_resumes_with_a_range_request(hub, tmp_path):
    weights = bytes(range(256)) * 200  # 51 KB: several 4 KB chunks arrive before the cut
    hub.add("some-org/flaky", {"config.json": b"{}", "model.safetensors": weights})
    hub.drop["model.safetensors"] = 1
    out = download_from_hub("some-org/flaky", convert_checkpoint=False, checkpoint_dir=tmp_path)
    assert (out / "model.safetensors").read_bytes() == weights
    ranges = [r for _, r in hub.gets("model.safetensors")]
    assert ranges[0] is None and ranges[1] is not None and ranges[1] != "bytes=0-"


def test_interrupted_download_resumes_on_the_next_run(hub, tmp_path):
    weights = bytes(range(256)) * 200
    hub.add("some-org/flaky", {"config.json": b"{}", "model.safetensors": weights})
    hub.drop["model.safetensors"] = 1
    hub.fail.add("model.safetensors")  # the automatic retry fails too: the run ends with the file half done
    with pytest.raises(LitGPTError, match="500"):
        download_from_hub("some-org/flaky", convert_checkpoint=False, checkpoint_dir=tmp_path)
    out = tmp_path / "some-org" / "flaky"
    assert not (out / "model.safetensors").exists()
    partial = list((out / ".cache").rglob("model.safetensors.*.incomplete"))
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert 0 < kept < len(weights)

    hub.fail.clear()
    hub.log.clear()
    download_from_hub("some-org/flaky", convert_checkpoint=False, checkpoint_dir=tmp_path)
    assert (out / "model.safetensors").read_bytes() == weights
    assert [r for _, r in hub.gets("model.safetensors")] == [f"bytes={kept}-"]
    assert not partial[0].exists()
    # a third run finds everything in place and fetches nothing
    hub.log.clear()
    download_from_hub("some-org/flaky", convert_checkpoint=False, checkpoint_dir=tmp_path)
    assert not hub.gets()


def test_gated_repo_without_token(hub, tmp_path):
    hub.add("meta-llama/Llama-2-7b-hf", {**_tokenizer_files(), "model.safetensors": b"W" * 100}, gated=True)
    with pytest.raises(LitGPTError) as e:
        download_from_hub("meta-llama/Llama-2-7b-hf", access_token=None, checkpoint_dir=tmp_path)
    message = str(e.value)
    assert "gated" in message and "--access_token" in message and "HF_TOKEN" in message and "licence" in message
    assert "\n" not in message
    assert not hub.gets() and not any(tmp_path.rglob("*.json"))

    with pytest.raises(LitGPTError, match="accept its licence"):  # a token whose account has not accepted it
        download_from_hub(
            "meta-llama/Llama-2-7b-hf", access_token="hf_other", tokenizer_only=True, checkpoint_dir=tmp_path
        )

    out = download_from_hub(
        "meta-llama/Llama-2-7b-hf", access_token=GOOD_TOKEN, tokenizer_only=True, checkpoint_dir=tmp_path
    )
    assert _files(out) == set(_tokenizer_files())


def test_unknown_repo_names_close_registered_ones(hub, tmp_path, capsys):
    with pytest.raises(LitGPTError) as e:
        download_from_hub("TinyLlama/TinyLama-1.1B-Chat-v1.0", checkpoint_dir=tmp_path)
    assert "not found" in str(e.value) and "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in str(e.value)
    with pytest.raises(SystemExit) as exit_:  # the CLI prints one line and fails
        main(["download", "--repo_id", "microsoft/phi-22", "--checkpoint_dir", str(tmp_path)])
    assert "microsoft/phi-2" in str(exit_.value.code) and "\n" not in str(exit_.value.code)
    assert not any(tmp_path.iterdir())


def test_no_network(monkeypatch, tmp_path):
    from huggingface_hub import constants

    with socket.socket() as s:  # a port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(LitGPTError) as e:
        download_from_hub("microsoft/phi-2", checkpoint_dir=tmp_path)
    message = str(e.value)
    assert "Cannot reach the Hugging Face Hub" in message and "GGUF" in message and "local" in message
    assert "litgpt convert_to_litgpt file.gguf" in message

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1 reads the same
    with pytest.raises(LitGPTError, match="Cannot reach the Hugging Face Hub"):
        download_from_hub("microsoft/phi-2", checkpoint_dir=tmp_path)
    # a misspelled repo id gets the close registered ones (offline, the Hub cannot say it does not exist)
    with pytest.raises(LitGPTError, match=r"Did you mean: microsoft/phi-2\b"):
        download_from_hub("microsoft/phi-22", checkpoint_dir=tmp_path)


def test_a_name_without_an_org_is_no_repo_id(monkeypatch, tmp_path):
    """`litgpt download notarepo` blamed the network (offline) or the Hub; a repo id has the form org/name."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as exit_:
        main(["download", "notarepo", "--checkpoint_dir", str(tmp_path)])
    assert str(exit_.value.code) == (
        "litgpt download: error: 'notarepo' is not a repo id: a repo id has the form org/name, such as microsoft/phi-2. "
        "Run `litgpt download list` to see the supported ones."
    )
    with pytest.raises(LitGPTError, match=r"form org/name, such as microsoft/phi-2\. Did you mean: microsoft/phi-2, "):
        download_from_hub("phi-22", checkpoint_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_missing_folder_the_hub_does_not_know_says_both(hub, tmp_path, monkeypatch):
    from litgpt.loading import resolve_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(LitGPTError) as e:
        resolve_checkpoint("fx/nope")
    assert str(e.value) == (
        f"'fx/nope' is not a folder here ({tmp_path / 'fx' / 'nope'}) nor in checkpoints/fx/nope, and the Hugging "
        "Face Hub has no repository fx/nope (a private one needs --access_token). Check the path, or the repo id"
    )


def test_not_enough_disk_space_is_caught_before_downloading(hub, tmp_path, monkeypatch):
    hub.add("some-org/big", {**_tokenizer_files(), "model.safetensors": b"W" * 50_000})
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(LitGPTError) as e:
        download_from_hub("some-org/big", checkpoint_dir=tmp_path)
    message = str(e.value)
    assert "Not enough disk space" in message and "--checkpoint_dir" in message
    assert not hub.gets() and not any(tmp_path.iterdir())
    # with room for the download but not for the converted copy as well
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 60_000, 60_000))
    with pytest.raises(LitGPTError, match="lit_model.pth"):
        download_from_hub("some-org/big", checkpoint_dir=tmp_path)
    assert not hub.gets()


def test_repo_without_weights_or_config(hub, tmp_path):
    hub.add("someone/gguf-only", {"model.Q4_K_M.gguf": b"GGUF", "README.md": b"#"})
    with pytest.raises(LitGPTError, match="convert_to_litgpt"):
        download_from_hub("someone/gguf-only", checkpoint_dir=tmp_path)
    hub.add("someone/no-config", {"model.safetensors": b"W" * 10})
    with pytest.raises(LitGPTError, match="--model_name"):
        download_from_hub("someone/no-config", checkpoint_dir=tmp_path)
    assert not hub.gets()


@pytest.mark.skipif(not importlib.util.find_spec("litgpt.hf_config"), reason="needs litgpt.hf_config")
def test_unsupported_architecture_is_refused_before_the_weights(hub, tmp_path):
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 64}
    hub.add("someone/bert-like", {"config.json": json.dumps(config).encode(), "model.safetensors": b"W" * 100})
    with pytest.raises(LitGPTError, match="--model_name"):
        download_from_hub("someone/bert-like", checkpoint_dir=tmp_path)
    assert not hub.gets(".safetensors")
    # without conversion the files are only fetched
    out = download_from_hub("someone/bert-like", convert_checkpoint=False, checkpoint_dir=tmp_path)
    assert _files(out) == {"config.json", "model.safetensors"}


def test_list_prints_sorted_repo_ids(capsys):
    for argv in (["download"], ["download", "list"]):
        main(argv)
        lines = capsys.readouterr().out.splitlines()
        assert lines == sorted(lines)
        assert TINYLLAMA in lines and "TinyLlama/TinyLlama-1.1B-Chat-v1.0" in lines and "microsoft/phi-2" in lines
    proc = subprocess.run([sys.executable, "-m", "litgpt", "download"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert [line for line in proc.stdout.splitlines() if "TinyLlama" in line] == [
        "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        TINYLLAMA,
    ]


def _tiny_llama_repo(tmp_path: Path) -> dict[str, bytes]:
    """A random 2-layer Llama saved by transformers, with a small BPE tokenizer.json."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    src = tmp_path / "tiny-src"
    LlamaForCausalLM(config).save_pretrained(src, safe_serialization=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>", "<s>", "</s>"])
    tokenizer.train_from_iterator(["what food do llamas eat", "llamas eat grass and hay"] * 20, trainer=trainer)
    tokenizer.save(str(src / "tokenizer.json"))
    (src / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}


@pytest.mark.skipif(
    not importlib.util.find_spec("litgpt.convert_hf"), reason="conversion lands with the Foundation conversion work"
)
def test_download_and_convert_a_model_outside_the_registry(hub, tmp_path):
    import torch

    from litgpt.config import Config

    files = _tiny_llama_repo(tmp_path)
    assert "model.safetensors" in files and "config.json" in files
    hub.add("test-org/tiny-random-llama", files)
    out = download_from_hub("test-org/tiny-random-llama", dtype="float32", checkpoint_dir=tmp_path / "checkpoints")
    assert out == tmp_path / "checkpoints" / "test-org" / "tiny-random-llama"
    assert (out / "lit_model.pth").is_file() and (out / "model_config.yaml").is_file()
    state = torch.load(out / "lit_model.pth", map_location="cpu", weights_only=True)
    assert "transformer.h.1.attn.qkv.weight" in state and state["transformer.wte.weight"].dtype == torch.float32
    config = Config.from_checkpoint(out)
    assert (config.n_layer, config.n_embd, config.n_query_groups) == (2, 64, 2)


def test_no_test_reaches_the_internet():
    """The session guard of tests/conftest.py refuses, before any packet is sent, a connection off this machine."""
    import socket

    with pytest.raises(OSError, match="tests must not use the network"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)
    with pytest.raises(OSError, match="tests must not use the network"):
        socket.socket().connect(("huggingface.co", 443))
