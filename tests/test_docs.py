"""Every Python block of docs/*.md runs, in order, with the models available offline; the docs never rot.

Blocks share one namespace per page (like a reader's session). A block guarded by ``if __name__ == "__main__":``
(multi-process examples) runs as a script of its own.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
PAGES = [p for p in sorted(DOCS.glob("*.md")) if BLOCK.search(p.read_text())]  # pages with code to run


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def test_docs_have_python_blocks():
    assert "python-api.md" in [p.name for p in PAGES]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs(page, offline_workdir, monkeypatch):
    workdir = offline_workdir
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "docs"}
    for i, code in enumerate(blocks(page)):
        if '__name__ == "__main__"' in code:
            script = workdir / f"{page.stem}_{i}.py"
            script.write_text(code)
            run = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, timeout=600)
            assert run.returncode == 0, f"{page.name} block {i} failed:\n{run.stderr[-3000:]}"
            continue
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # report which block broke
            raise AssertionError(f"{page.name} block {i} failed: {type(e).__name__}: {e}\n{code}") from e
