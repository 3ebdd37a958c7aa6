"""Docs that run: every fenced ```python block of README.md and docs/*.md is executed (each in a fresh
namespace, in a temporary working directory, with a time limit), and the `neudep …` commands of their
```bash blocks run: `--help` of every subcommand they name, and the commands whose data this test makes
(`neudep sql`, `check`, `summary`) against a small store of its own. A page that drifts from the code fails
here, naming the file and line."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SHELLS = {"bash", "sh", "shell", "console", "zsh"}
RUN = {"sql", "check", "summary"}  # commands whose data this test makes; the others get --help
TIME_LIMIT = 120  # seconds per python block


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, line of the opening fence, text) of each fenced block of a Markdown file."""
    out, lines, k = [], path.read_text(encoding="utf-8").splitlines(), 0
    while k < len(lines):
        m = FENCE.match(lines[k])
        if not m:
            k += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body, j = [], k + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append((lang, k + 1, "\n".join(body) + "\n"))
        k = j + 1
    return out


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


PYTHON = [pytest.param(p, line, text, id=_where(p, line))
          for p in PAGES for lang, line, text in fenced_blocks(p) if lang in ("python", "py", "python3")]


def neudep_commands(path: Path) -> list[tuple[int, list[str]]]:
    """(line, argv after `neudep`) of each `neudep …` command of the shell blocks of a page (also
    `.venv/bin/neudep` and `python -m neudep_assets.cli`; env assignments before it and pipes after it
    are left out)."""
    out = []
    for lang, line, text in fenced_blocks(path):
        if lang not in SHELLS:
            continue
        joined, start = [], None  # (first line, the command with its continuation lines joined)
        for k, raw in enumerate(text.splitlines()):
            start = line + 1 + k if start is None else start
            if raw.rstrip().endswith("\\"):
                joined.append((start, raw.rstrip()[:-1]))
                continue
            joined.append((start, raw))
            start = None
        commands: dict[int, str] = {}
        for first, part in joined:
            commands[first] = commands.get(first, "") + " " + part
        for at, cmd in commands.items():
            cmd = cmd.strip().removeprefix("$ ")
            try:
                tokens = shlex.split(cmd, comments=True)
            except ValueError as exc:
                raise AssertionError(f"{_where(path, at)}: not a shell line ({exc}): {cmd}") from None
            segment: list[str] = []
            for tok in tokens + [";"]:
                if tok not in ("&&", "||", ";", "|"):
                    segment.append(tok)
                    continue
                for i, t in enumerate(segment):
                    if Path(t).name == "neudep" or (t == "-m" and segment[i + 1:i + 2] == ["neudep_assets.cli"]):
                        out.append((at, segment[i + (2 if t == "-m" else 1):]))
                        break
                segment = []
    return out


COMMANDS = [(p, line, argv) for p in PAGES for line, argv in neudep_commands(p)]
SUBCOMMANDS = sorted({argv[0] for _, _, argv in COMMANDS if argv and not argv[0].startswith("-")})


class _TimeLimit(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(signum, frame):
        raise _TimeLimit(f"over {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A temporary working directory (with the repo's sql/ and tests/ beside, for relative paths) and a
    data root of its own."""
    import matplotlib

    matplotlib.use("Agg")
    for name in ("sql", "tests", "neudep.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEUDEP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NEUDEP_CONFIG", str(ROOT / "neudep.yaml"))
    monkeypatch.delenv("NEUDEP_STORE", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("path, line, text", PYTHON)
def test_python_block_runs(sandbox, path, line, text, capsys):
    code = compile(text, f"{_where(path, line)}", "exec")
    with time_limit(TIME_LIMIT):
        exec(code, {"__name__": "__docs__"})  # noqa: S102 - the repository's own documentation


def test_the_docs_have_python_blocks_and_commands():
    """The collectors find what the pages hold (a parser that found nothing would pass everything)."""
    assert any(x.values[0].name == "api.md" for x in PYTHON)
    assert any(argv[:1] == ["sql"] for _, _, argv in COMMANDS)
    assert fenced_blocks(ROOT / "docs" / "api.md")[0][0] == "python"


def test_collectors_on_a_page_of_their_own(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("text\n```python\nx = 1\n```\n- item\n\n  ```bash\n  make demo && .venv/bin/neudep sql \\\n"
                    "      --file q.sql --param target='%a b'  # comment\n  NEUDEP_DATA=x neudep check | head\n"
                    "  ```\n```text\nneudep demo\n```\n")
    assert [(lang, line) for lang, line, _ in fenced_blocks(page)] == [("python", 2), ("bash", 7), ("text", 12)]
    assert neudep_commands(page) == [(8, ["sql", "--file", "q.sql", "--param", "target=%a b"]), (10, ["check"])]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    """A small store: within analyses of `cnn` and `vit` and the pair cnn → vit (the default config's names)."""
    from neudep_assets import between_dependencies, find_dependencies

    root = tmp_path_factory.mktemp("docs-store")
    rng = np.random.default_rng(0)
    f = rng.normal(size=(1200, 10)).astype(np.float32)
    f[:, 9] = 0.7 * f[:, 1] - 0.3 * f[:, 2]
    g = (f @ rng.normal(size=(10, 10)) * 0.3 + rng.normal(size=f.shape)).astype(np.float32)
    labels = f.argmax(1)
    names = [f"small letter {c}" for c in "abcdefghij"]
    kw = dict(eval_labels=labels[1000:], class_names=names, device="cpu")
    find_dependencies(f[:1000], eval_logits=f[1000:], **kw).save(root, model="cnn", dataset_id="glyphs")
    find_dependencies(g[:1000], eval_logits=g[1000:], **kw).save(root, model="vit", dataset_id="glyphs")
    between_dependencies(f[:1000], g[:1000], source_eval=f[1000:], target_eval=g[1000:], **kw).save(
        root, model="vit", source_model="cnn", dataset_id="glyphs")
    return root


def _main(argv: list[str]) -> tuple[int, str]:
    from neudep_assets.cli import main

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                out.write(str(exc.code))
    return code, out.getvalue()


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_the_docs_name_exists(sub):
    where = [_where(p, line) for p, line, argv in COMMANDS if argv[:1] == [sub]]
    code, out = _main([sub, "--help"])
    assert code == 0, f"`neudep {sub}` ({', '.join(where)}) is not a neudep command: {out}"


@pytest.mark.parametrize("path, line, argv", [pytest.param(p, line, argv, id=f"{_where(p, line)}:{argv[0]}")
                                             for p, line, argv in COMMANDS if argv[:1] and argv[0] in RUN])
def test_command_runs_on_a_store(sandbox, store_root, monkeypatch, path, line, argv):
    monkeypatch.setenv("NEUDEP_DATA", str(store_root))
    code, out = _main(argv)
    assert code == 0, f"{_where(path, line)}: neudep {shlex.join(argv)} failed: {out}"
    if argv[0] == "sql":
        assert out.strip(), f"{_where(path, line)}: no output"


def test_the_commands_run_on_the_test_store(sandbox, store_root, monkeypatch):
    """The store the commands run on answers: names, models and a between pair are in it."""
    monkeypatch.setenv("NEUDEP_DATA", str(store_root))
    code, out = _main(["sql", "SELECT kind, model, source_model, count(*) AS n FROM dependency_lineage "
                       "WHERE target_name = $t GROUP BY ALL ORDER BY ALL", "--param", "t=small letter j"])
    assert code == 0 and "between" in out and "cnn" in out and "vit" in out, out
    assert os.path.isfile(store_root / "neudep.duckdb")
