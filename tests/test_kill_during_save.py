"""A finetuning run SIGKILLed while it writes a checkpoint leaves every earlier checkpoint whole and loadable, and
``--resume auto`` continues from the last complete one.

Each run is a separate process executing ``litgpt.__main__.main(["finetune", ...])`` (what ``python -m litgpt
finetune ...`` runs). Importing torch and lightning takes most of a run's time on a small CPU, so one helper process
(the "zygote" below) imports them once and forks a fresh child per run. In a child asked to die, the writers are
patched so that the child kills itself with SIGKILL at one exact point of one checkpoint: no cleanup code, ``finally``
block or atexit handler runs, as with ``kill -9``, a crash or the OOM killer.

Kill points (all inside the checkpoint after ``step-000002``, except ``final``):

- ``weights``: half of the weights file's bytes are on disk;
- ``between``: the weights file is complete, the training state and ``hyperparameters.yaml`` are not written yet;
- ``state``: the training state (optimizer, scheduler, progress) is cut to half its length;
- ``rename``: every file is written, the folder is not renamed into place yet;
- ``final``: half of the weights file of ``final/`` is on disk (the last ``step-*`` is then the one to resume).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import fast_args, make_checkpoint, make_json_data

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = {"lora": "lit_model.pth.lora", "full": "lit_model.pth"}
STEPS = 4  # checkpoints: step-000002, step-000004, final

ZYGOTE = r'''
import io, json, os, signal, sys, traceback
from pathlib import Path

import torch

torch.set_num_threads(1)
import lightning
import litgpt.__main__, litgpt.finetune, litgpt.lora, litgpt.training  # imported once, shared by every child

channel = os.fdopen(os.dup(1), "w", buffering=1)


def die(marker, what):
    Path(marker).write_text(what)
    os.kill(os.getpid(), signal.SIGKILL)


def install(kill):
    """Make this process SIGKILL itself at one point of writing the checkpoint folder kill["target"] (matched in
    whatever folder the file is written to: the checkpoint itself or a temporary folder named after it)."""
    point, target, weights, marker = kill["point"], kill["target"], kill["weights"], kill["marker"]

    def in_checkpoint(path):
        return target in path.parent.name
    if point in ("weights", "final"):  # torch.save of the weights file (its atomic temporary name) stops halfway
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            path = Path(f) if isinstance(f, (str, os.PathLike)) else None
            if path is not None and in_checkpoint(path) and path.name.startswith((weights, f".{weights}")):
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                with open(path, "wb") as out:
                    out.write(data[: len(data) // 2])
                die(marker, f"{point}: wrote {len(data) // 2} of {len(data)} bytes of {path}")
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif point in ("between", "rename"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            src, dst = Path(src), Path(dst)
            if point == "rename" and dst.name == target:  # the folder is whole but not in place yet
                die(marker, f"rename: killed before moving {src} to {dst}")
            real_replace(src, dst, *args, **kwargs)
            if point == "between" and in_checkpoint(dst) and dst.name == weights:
                die(marker, f"between: killed once {dst} was complete")

        os.replace = replace
    elif point == "state":  # the training state file is left at half its length
        real_fabric_save = lightning.Fabric.save

        def fabric_save(self, path, state, *args, **kwargs):
            result = real_fabric_save(self, path, state, *args, **kwargs)
            path = Path(path)
            if in_checkpoint(path) and path.is_file():
                size = path.stat().st_size
                os.truncate(path, size // 2)
                die(marker, f"state: {path} cut to {size // 2} of {size} bytes")
            return result

        lightning.Fabric.save = fabric_save
    else:
        raise ValueError(point)


def child(job):
    log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    code = 0
    try:
        if job.get("kill"):
            install(job["kill"])
        litgpt.__main__.main(job["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


channel.write("ready\n")
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(job)
    _, status = os.waitpid(pid, 0)
    signal_number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    channel.write(json.dumps({"signal": signal_number, "exit": exit_code}) + "\n")
'''


class Zygote:
    def __init__(self, folder: Path) -> None:
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        self.stderr = open(folder / "zygote.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )  # fmt: skip
        self.ready = False  # it imports while the test prepares its fixtures

    def wait_ready(self) -> None:
        if not self.ready:
            assert self._reply(timeout=300) == "ready", Path(self.stderr.name).read_text()[-3000:]
            self.ready = True

    def _reply(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer from the run within {timeout} s")
        return self.proc.stdout.readline().strip()

    def run(self, argv: list[str], log: Path, kill: dict | None = None) -> dict:
        self.wait_ready()
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), "kill": kill}) + "\n")
        self.proc.stdin.flush()
        answer = self._reply(timeout=120)
        assert answer, f"the helper process died: {self.stderr.name}"
        return json.loads(answer)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.terminate()  # idle: no need to wait for the interpreter's slow teardown
        self.proc.wait()
        self.stderr.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill-tiny")
    return make_checkpoint(root / "ckpt"), make_json_data(root / "data")


def argv_for(method: str, ckpt: Path, data: Path, out: Path, *extra: str) -> list[str]:
    args = fast_args(ckpt, data, out, steps=STEPS)
    quiet = ["--eval.interval", "1000", "--eval.final_validation", "false", "--eval.max_new_tokens", "0"]
    lora = ["--lora_r", "4", "--lora_mlp", "true"] if method == "lora" else []
    return ["finetune", method, *args, *quiet, *lora, *extra]


@pytest.fixture(scope="module")
def reference(zygote, tiny, tmp_path_factory):
    """The uninterrupted run of each method (computed on first use)."""
    runs = {}

    def get(method: str) -> Path:
        if method not in runs:
            out = tmp_path_factory.mktemp(f"reference-{method}") / "out"
            status = zygote.run(argv_for(method, *tiny, out), log=out.parent / "run.log")
            assert status == {"signal": None, "exit": 0}, (out.parent / "run.log").read_text()[-3000:]
            runs[method] = out
        return runs[method]

    return get


def visible(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "logs"}


def same_weights(a: Path, b: Path) -> None:
    wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-6, rtol=1e-6, msg=f"{a} and {b} differ at {key}")


CASES = [
    ("lora", "weights"),
    ("lora", "between"),
    ("lora", "state"),
    ("lora", "rename"),
    ("lora", "final"),
    ("full", "weights"),
    ("full", "between"),
]


@pytest.mark.parametrize("method, point", CASES, ids=[f"{m}-{p}" for m, p in CASES])
def test_kill_during_save_keeps_previous_checkpoint(method, point, zygote, tiny, reference, tmp_path):
    from litgpt.api import LLM
    from litgpt.training import find_resume_checkpoint

    ckpt, data = tiny
    weights = WEIGHTS[method]
    out = tmp_path / "out"
    dying, previous = ("final", "step-000004") if point == "final" else ("step-000004", "step-000002")
    marker = tmp_path / "killed.txt"
    kill = {"point": point, "target": dying, "weights": weights, "marker": str(marker)}
    status = zygote.run(argv_for(method, ckpt, data, out), log=tmp_path / "killed.log", kill=kill)

    # the run died by SIGKILL exactly where intended
    log = (tmp_path / "killed.log").read_text()
    assert status == {"signal": signal.SIGKILL, "exit": None}, (status, log[-3000:])
    assert marker.is_file() and marker.read_text().startswith(point), log[-3000:]

    # the half-written checkpoint is only a hidden temporary folder; nothing visible looks like a checkpoint
    ref = reference(method)
    expected_before = {"step-000002", "step-000004"} if point == "final" else {"step-000002"}
    assert visible(out) == expected_before
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert len(leftovers) == 1 and dying in leftovers[0], leftovers  # the temporary folder being written
    assert find_resume_checkpoint(out, weights) == out / previous

    # the previous checkpoint is complete and holds the weights it was saved with
    for name in expected_before:
        assert sorted(os.listdir(out / name)) == sorted(os.listdir(ref / name)), name
        same_weights(out / name / weights, ref / name / weights)
    x = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = LLM.load(out / previous).model(x)
        torch.testing.assert_close(logits, LLM.load(ref / previous).model(x), atol=1e-5, rtol=1e-5)

    # `--resume auto` ignores the leftover, continues from the previous checkpoint and finishes like the reference
    status = zygote.run(argv_for(method, ckpt, data, out, "--resume", "auto"), log=tmp_path / "resumed.log")
    log = (tmp_path / "resumed.log").read_text()
    assert status == {"signal": None, "exit": 0}, log[-3000:]
    assert f"Resuming from {out / previous} at step {int(previous[5:])}" in log
    assert visible(out) == {"step-000002", "step-000004", "final"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary folders are cleaned up"
    for name in ("step-000004", "final"):
        assert sorted(os.listdir(out / name)) == sorted(os.listdir(ref / name)), name
        same_weights(out / name / weights, ref / name / weights)
    if method == "lora":
        same_weights(out / "final" / "lit_model.pth", ref / "final" / "lit_model.pth")  # merged
