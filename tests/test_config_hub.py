"""Every ``config_hub/finetune/<model>/<method>.yaml`` parses against its command and names a model we know.

Only ``--print_config`` runs: nothing is downloaded or trained, so QLoRA files are checked on CPU-only machines too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from litgpt.__main__ import main
from litgpt.config import Config

REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "config_hub" / "finetune"
FILES = sorted(HUB.glob("*/*.yaml"))
METHODS = ("lora", "qlora", "adapter", "adapter_v2", "full")
BNB_MODES = ("bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8")


def test_the_hub_covers_the_issue_models():
    wanted = [
        "falcon-7b", "gemma-2b", "gemma-7b", "gemma2-2b", "gemma2-9b", "llama-2-7b", "llama-3-8b", "llama-3.1-8b",
        "llama-3.2-1B", "llama-3.2-3B", "mistral-7b", "mistral-7b-v0.2", "phi-2", "phi-3", "stablelm-base-alpha-3b",
        "tiny-llama",
    ]  # fmt: skip
    for model in wanted:
        for method in ("lora", "qlora"):
            assert (HUB / model / f"{method}.yaml").is_file(), f"{model}/{method}.yaml"
    for model in ("tiny-llama", "phi-2", "llama-3.2-1B", "gemma-2b"):
        assert (HUB / model / "full.yaml").is_file(), f"{model}/full.yaml"


def model_name(checkpoint_dir: str) -> str:
    """``checkpoints/org/name`` (where ``litgpt download`` puts it) or ``org/name`` -> ``org/name``."""
    return checkpoint_dir.removeprefix("checkpoints/")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(HUB)) for p in FILES])
def test_config_file_parses_and_names_a_known_model(path: Path, capsys):
    method = path.stem
    assert method in METHODS, f"{path.name}: the file name must be the finetuning method, one of {METHODS}"
    text = path.read_text()
    raw = yaml.safe_load(text)

    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", method, "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None), exit_info.value.code
    config = yaml.safe_load(capsys.readouterr().out)

    # the file's own values survive parsing (a misspelt key would have failed above)
    assert config["checkpoint_dir"] == raw["checkpoint_dir"]
    assert config["train"]["max_seq_length"] == raw["train"]["max_seq_length"]

    # the base model is one the registry knows, and the sequence length fits it
    model_config = Config.from_name(model_name(str(config["checkpoint_dir"])))
    train = config["train"]
    assert train["max_seq_length"] is None or train["max_seq_length"] <= model_config.block_size

    # the batch arithmetic and learning-rate schedule are consistent
    assert train["global_batch_size"] % train["micro_batch_size"] == 0
    optimizer = config["optimizer"]
    if isinstance(optimizer, dict):
        lr = optimizer["init_args"]["lr"]
        assert 0 < lr < 0.01 and train["min_lr"] <= lr

    # QLoRA: a bitsandbytes 4/8-bit mode with a true (not mixed) half precision, as the training loop requires
    if method == "qlora":
        assert config["quantize"] in BNB_MODES
        assert config["precision"] in ("bf16-true", "16-true")
    elif method == "lora":
        assert config["quantize"] is None

    # a comment that says how to run the file names this very file and method
    relative = path.relative_to(REPO).as_posix()
    for command in re.findall(r"#.*?(litgpt finetune[ _]\S+ --config \S+)", text):
        assert command.replace("finetune_", "finetune ") == f"litgpt finetune {method} --config {relative}", command


def test_config_file_from_a_url(tmp_path: Path, capsys):
    """``--config https://.../lora.yaml`` as the tutorial writes it: fetched over HTTP (a local server here)."""
    import functools
    import http.server
    import threading

    source = HUB / "phi-2" / "lora.yaml"
    (tmp_path / "lora.yaml").write_text(source.read_text())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["finetune", "lora", "--config", f"{url}/lora.yaml", "--print_config"])
        assert exit_info.value.code in (0, None), exit_info.value.code
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["checkpoint_dir"] == yaml.safe_load(source.read_text())["checkpoint_dir"]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(SystemExit) as exit_info:  # the server is gone: one line, no traceback
        main(["finetune", "lora", "--config", f"{url}/lora.yaml", "--print_config"])
    assert "cannot read a --config URL" in str(exit_info.value.code)
