"""Docs that cannot go stale: the examples of README.md and docs/ marked ``<!-- check -->`` run, and the numbers the page
shows are compared with the numbers they print; ``mkdocs build --strict`` passes.

A checked block is the fenced block right after the marker:

- ``console`` / ``bash``: ``$ scaletune ...`` lines (a trailing backslash continues a command), each followed
  by the output the page shows. The command runs in-process (`scaletune.cli.main`) in a scratch folder that
  links the repository's ``tests`` and ``examples``; the exit code must be 0, or 2 when the page shows
  ``scaletune: error``.
- ``pycon``: ``>>>`` examples, run as doctests that share one namespace per page.

Numbers are compared, not text: every number the page shows must appear in the output, in the same order
(numbers may be skipped in between, so a page can elide rows with ``...``), equal to the precision the page
shows them with. ``<!-- check slow -->`` marks an example that takes more than a few seconds: it runs in the
slow tier (``-m slow``).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARK = re.compile(r"^<!--\s*check(\s+slow)?\s*-->\s*$")
FENCE = re.compile(r"^```\s*(\w+)")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    text: str
    slow: bool


def checked_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        mark = MARK.match(lines[i].strip())
        if mark:
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            fence = FENCE.match(lines[j]) if j < len(lines) else None
            assert fence, f"{page.name}:{i + 1}: <!-- check --> must be followed by a fenced code block"
            k = j + 1
            while not lines[k].startswith("```"):
                k += 1
            out.append(Block(page.relative_to(ROOT).as_posix(), j + 1, fence.group(1), "\n".join(lines[j + 1 : k]), bool(mark.group(1))))
            i = k
        i += 1
    return out


def _unit(token: str) -> float:
    """Half of the last shown digit's value: the precision the page shows ``token`` with."""
    mantissa, _, exponent = token.replace(",", "").lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** ((int(exponent) if exponent else 0) - decimals)


def numbers(text: str) -> list[tuple[str, float]]:
    return [(m.group(0), float(m.group(0).replace(",", ""))) for m in NUMBER.finditer(text)]


def match_numbers(shown: str, printed: str) -> str | None:
    """None when every number of ``shown`` appears in ``printed`` in order (to the shown precision), else why not."""
    got = numbers(printed)
    pos = 0
    for token, value in numbers(shown):
        tolerance = _unit(token) * (1 + 1e-9) + 1e-12 * abs(value)
        while pos < len(got) and not math.isclose(got[pos][1], value, rel_tol=0, abs_tol=tolerance):
            pos += 1
        if pos == len(got):
            line = next((ln for ln in shown.splitlines() if token in ln), "")
            return f"the page shows {token} ({line.strip()!r}) but the output has no such number after the previous match"
        pos += 1
    return None


def commands(text: str) -> list[tuple[str, str]]:
    """(command, the output shown after it) pairs of a console block."""
    pairs: list[tuple[str, list[str]]] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + " " + next(lines).strip()
            pairs.append((command, []))
        elif pairs:
            pairs[-1][1].append(line)
    return [(c, "\n".join(out)) for c, out in pairs]


def run_cli(command: str) -> tuple[int, str]:
    from scaletune.cli import main

    argv = shlex.split(command)
    assert argv[0] == "scaletune", f"only scaletune commands are checked, not {command!r}"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        code = main(argv[1:])
    return code, buffer.getvalue()


class NumberChecker(doctest.OutputChecker):
    """The doctest checker with ELLIPSIS and NORMALIZE_WHITESPACE, and numbers compared to the shown precision."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        flags = optionflags | doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        if super().check_output(want, got, flags):
            return True
        return bool(numbers(want)) and match_numbers(want, got) is None


def run_blocks(blocks: list[Block], workdir: Path) -> list[str]:
    failures: list[str] = []
    globs: dict = {"__name__": "__main__"}
    runner = doctest.DocTestRunner(checker=NumberChecker(), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for block in blocks:
        where = f"{block.page}:{block.line}"
        if block.lang in ("console", "bash"):
            for command, shown in commands(block.text):
                code, printed = run_cli(command)
                expected = 2 if "scaletune: error" in shown else 0
                if code != expected:
                    failures.append(f"{where}: `{command}` exited {code}, expected {expected}:\n{printed[-2000:]}")
                elif (why := match_numbers(shown, printed)) is not None:
                    failures.append(f"{where}: `{command}`: {why}\n--- printed ---\n{printed[-3000:]}")
        elif block.lang == "pycon":
            test = doctest.DocTestParser().get_doctest(block.text, globs, where, block.page, block.line)
            report = io.StringIO()
            result = runner.run(test, out=report.write, clear_globs=False)
            globs.update(test.globs)  # a DocTest runs in a copy: the next block continues this one's session
            if result.failed:
                failures.append(f"{where}:\n{report.getvalue()[-3000:]}")
        else:
            failures.append(f"{where}: cannot check a {block.lang!r} block (console, bash or pycon)")
    return failures


PAGES = sorted(p for p in [ROOT / "README.md", *DOCS.rglob("*.md")] if checked_blocks(p))
IDS = [p.relative_to(ROOT).as_posix() for p in PAGES]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in ("tests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "150")  # rich tables as the pages show them
    return tmp_path


def _check(page: Path, slow: bool, workdir: Path) -> None:
    blocks = [b for b in checked_blocks(page) if b.slow == slow]
    if not blocks:
        pytest.skip(f"no {'slow ' if slow else ''}checked examples on this page")
    failures = run_blocks(blocks, workdir)
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_examples(page, workdir):
    _check(page, False, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_page_examples_slow(page, workdir):
    _check(page, True, workdir)


def test_enough_examples_are_checked():
    blocks = [b for p in PAGES for b in checked_blocks(p)]
    assert len(blocks) >= 8 and len({b.page for b in blocks}) >= 4


def test_number_matching():
    assert match_numbers("loss 3.4221", "loss 3.3352") is not None  # the stale README example of issue 14
    assert match_numbers("loss 3.34\n...\nN* 4.03105e+10", "loss 3.3352 x 7 N* 4.031051e+10") is None
    assert match_numbers("19,456 tokens", "19456 tokens") is None
    assert match_numbers("2.0 then 1.0", "1.0 then 2.0") is not None  # order matters


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not Path(sys.executable).with_name("mkdocs").exists(),
    reason="mkdocs is not installed (the docs extra)",
)
def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).with_name("mkdocs"))
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "reference" / "api" / "index.html").exists()
