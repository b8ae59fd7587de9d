"""Any program as the workload: a command template run once per trial, its metrics read while it runs.

    [workload]
    command = "torchrun --nproc_per_node={gpus} train.py --lr={lr} --width={width} --tokens={D} --seed={seed}"
    metrics = "jsonl"     # lines the script appends to $SCALETUNE_METRICS (scaletune.reporting); or
                          # { regex = 'step (?P<step>\\d+) .* loss (?P<loss>\\S+)' } over its stdout
    timeout = 7200        # seconds per trial

Per trial: the template's ``{names}`` are replaced by the trial's values (shell-quoted); the same values are
exported as ``SCALETUNE_<NAME>`` and written to a JSON file named by ``$SCALETUNE_CONFIG``; the command runs
through ``/bin/sh`` in the study file's folder, in a process group of its own, with stdout and stderr kept
in the trial's folder (``$SCALETUNE_TRIAL_DIR``). Reported losses feed the pruner as they arrive. Pruned,
timed out or diverged (NaN / inf loss): the whole group gets SIGTERM, then SIGKILL after ``kill_grace``.
If the worker process dies, a supervisor kills the group (see `_supervise`).
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import shlex
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from scaletune.errors import ScaletuneError
from scaletune.workloads._base import Report, Resources, Workload

SUPERVISOR = Path(__file__).with_name("_supervise.py")
EXTRA_NAMES = ("gpus", "python")  # template names that are not trial values: GPUs per trial, this Python
MAX_CURVE = 2000  # stored points per trial (evenly thinned beyond that)
POLL = 0.1  # seconds between reads of the metrics while the command runs


RESERVED = ("status", "error", "curve", "stderr_tail")  # result keys the sweep sets, not the script


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """Integer-valued floats as ints (a ladder's width = 64 is read as 64.0; scripts want "64")."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    return json.dumps(value) if isinstance(value, bool) else str(value)


class _Tail:
    """New complete lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.rest = path, 0, b""

    def lines(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except FileNotFoundError:
            data = b""
        self.pos += len(data)
        *complete, self.rest = (self.rest + data).split(b"\n")
        if final and self.rest:  # the last line of a finished process may lack its newline
            complete, self.rest = complete + [self.rest], b""
        return [line.decode("utf-8", "replace") for line in complete]


class CommandWorkload(Workload):
    """A command template run once per trial; see the module docstring.

    ``metrics``: ``"jsonl"`` or a compiled regex with named groups ``step`` and ``loss`` (others, e.g.
    ``tokens`` and ``lr``, become curve columns). ``timeout``: seconds per trial (None: no limit).
    ``kill_grace``: seconds between SIGTERM and SIGKILL. ``workdir``: the folder holding one folder per
    trial. ``cwd``: where the command runs (the study file's folder).
    """

    def __init__(
        self,
        template: str,
        metrics: str | re.Pattern = "jsonl",
        timeout: float | None = None,
        kill_grace: float = 10.0,
        workdir: str | Path = "runs",
        cwd: str | Path = ".",
        resources: Resources | None = None,
    ) -> None:
        self.template, self.metrics, self.timeout, self.kill_grace = template, metrics, timeout, kill_grace
        self.workdir, self.cwd, self.resources = Path(workdir), Path(cwd), resources or Resources()
        self.fields: list[str] = []
        try:
            for _, name, _, _ in string.Formatter().parse(template):
                if name is not None:
                    self.fields.append(name)
        except ValueError as exc:
            raise ScaletuneError(
                f"workload.command: cannot parse template {template!r} ({exc}; write a literal brace as {{{{ or }}}})"
            ) from None
        if not template.strip():
            raise ScaletuneError("workload.command: empty command")

    @property
    def name(self) -> str:
        return "command"

    # -- the trial's values: template, environment, JSON ------------------------------------------------

    def values(self, config: Mapping[str, Any]) -> dict:
        """The trial's named values: its config plus ``gpus`` (GPUs per trial)."""
        return {**config, "gpus": self.resources.gpus}

    def render(self, config: Mapping[str, Any]) -> str:
        """The command line of a trial: each ``{name}`` replaced by its value, shell-quoted."""
        values = {**self.values(config), "python": sys.executable}
        out = []
        for literal, name, spec, conversion in string.Formatter().parse(self.template):
            out.append(literal)
            if name is None:
                continue
            if name not in values:
                known = ", ".join(sorted(values, key=str.lower))
                raise ScaletuneError(f"unknown variable {{{name}}} in the command template (known: {known})")
            if conversion:
                raise ScaletuneError(f"{{{name}!{conversion}}} in the command template: conversions are not supported")
            value = _plain(values[name])
            try:
                text = format(value, spec) if spec else _text(value)
            except (ValueError, TypeError) as exc:
                raise ScaletuneError(f"{{{name}:{spec}}} in the command template cannot format {value!r} ({exc})") from None
            out.append(shlex.quote(text))
        return "".join(out)

    def environment(self, config: Mapping[str, Any], trial_dir: Path) -> dict[str, str]:
        """The trial's environment: this process's, SCALETUNE_<NAME> for every value, and the trial's files."""
        env = dict(os.environ)
        for key, value in self.values(config).items():
            env["SCALETUNE_" + re.sub(r"\W", "_", str(key)).upper()] = _text(value)
        env.update(
            SCALETUNE_CONFIG=str(trial_dir / "config.json"),
            SCALETUNE_METRICS=str(trial_dir / "metrics.jsonl"),
            SCALETUNE_TRIAL_DIR=str(trial_dir),
        )
        return env

    def validate(self, configs: Iterable[Mapping[str, Any]]) -> None:
        """Every template name is a trial value; the program (the first word) exists."""
        program = None
        for config in configs:
            words = shlex.split(self.render(config))
            words = [w for w in words if not re.fullmatch(r"[A-Za-z_]\w*=.*", w)] or [""]  # VAR=value prefixes
            program = program or words[0]
        if program is None:
            return
        found = (self.cwd / program).is_file() if "/" in program else shutil.which(program) is not None
        if not found:
            where = f"not a file in {self.cwd}" if "/" in program else "not on PATH"
            raise ScaletuneError(f"program {program!r} of the command not found ({where})")

    # -- running a trial --------------------------------------------------------------------------------

    def _parse(self, line: str) -> dict | None:
        """One metrics line -> {step, loss, ...} or {"final": {...}}; None for a line that is no metric
        (blank, or stdout that the regex does not match). Raises ValueError for a malformed metric."""
        if isinstance(self.metrics, re.Pattern):
            match = self.metrics.search(line)
            if match is None:
                return None
            point = {k: float(v) for k, v in match.groupdict().items() if v is not None}
            if "step" not in point or "loss" not in point:
                raise ValueError("no step or loss")
            point["step"] = int(point["step"])
            return point
        if not line.strip():
            return None
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if "final" in record:
            final = record["final"]
            if not isinstance(final, dict) or not _number(final.get("loss", 0.0)):
                raise ValueError("final must be an object with a numeric loss")
            return {"final": {k: v for k, v in final.items() if k not in RESERVED}}
        if not (_number(record.get("step")) and _number(record.get("loss"))):
            raise ValueError("step and loss must be numbers")
        return {**record, "step": int(record["step"]), "loss": float(record["loss"])}

    def run(self, config: dict, report: Report, label: str = "trial") -> dict:
        trial_dir = (self.workdir / label).resolve()
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "config.json").write_text(json.dumps({k: _plain(v) for k, v in self.values(config).items()}, indent=1, default=str))
        (trial_dir / "metrics.jsonl").write_text("")  # a retried trial starts from an empty file
        command = self.render(config)
        stdout, stderr = trial_dir / "stdout.log", trial_dir / "stderr.log"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(SUPERVISOR), str(os.getpid()), "/bin/sh", "-c", command],
                cwd=self.cwd,
                env=self.environment(config, trial_dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        tail = _Tail(stdout if isinstance(self.metrics, re.Pattern) else trial_dir / "metrics.jsonl")
        curve: list[dict] = []
        final: dict = {}
        bad = 0
        outcome = None  # pruned | diverged | timeout, when the sweep stops the command
        start = time.monotonic()
        try:
            while outcome is None:
                exited = _wait(proc, POLL)
                for line in tail.lines(final=exited):
                    try:
                        record = self._parse(line)
                    except (ValueError, TypeError):
                        bad += 1  # a malformed line is counted, never fatal
                        continue
                    if record is None:
                        continue
                    if "final" in record:
                        final.update(record["final"])
                        continue
                    extra = {k: v for k, v in record.items() if k not in ("step", "loss")}  # tokens, lr, ...
                    curve.append({"step": record["step"], "val_loss": record["loss"], **extra})
                    if not math.isfinite(record["loss"]):
                        outcome = "diverged"
                        break
                    stop = report(record["step"], record["loss"], **extra)
                    if stop and not exited:  # a finished run is not pruned by its last lines
                        outcome = "pruned"
                        break
                if exited:
                    break
                if self.timeout is not None and time.monotonic() - start > self.timeout:
                    outcome = "timeout"
        finally:  # also when report() raised: never leave the command running
            _stop_group(proc, self.kill_grace if outcome or proc.returncode is None else 0.0)
        return self._result(proc.returncode, outcome, curve, final, bad, trial_dir, stderr)

    def _result(self, code: int, outcome: str | None, curve: list[dict], final: dict, bad: int, trial_dir: Path, stderr: Path) -> dict:
        result: dict[str, Any] = {k: v for k, v in final.items() if isinstance(v, (int, float, str, bool))}
        result.update(workdir=str(trial_dir), bad_metric_lines=bad, curve=_thin(curve))
        last = curve[-1]["val_loss"] if curve else None
        loss = result.get("loss", last)
        if outcome is None:
            result["exit_code"] = code
        if outcome == "pruned":
            return {**result, "status": "pruned", "loss": last}
        if outcome == "diverged" or (code == 0 and isinstance(loss, float) and not math.isfinite(loss)):
            return {**result, "status": "diverged", "loss": math.nan}
        if outcome == "timeout":
            return {**result, "status": "failed", "error": f"timeout after {self.timeout:g} s"}
        if code != 0:
            tail = _last_lines(stderr, 20)
            last_line = tail.strip().splitlines()[-1] if tail.strip() else ""
            return {**result, "status": "failed", "error": f"exit code {code}: {last_line}".strip().rstrip(":"), "stderr_tail": tail}
        if loss is None:
            return {
                **result,
                "status": "failed",
                "error": "no loss reported"
                + (
                    " (no stdout line matched the metrics regex)"
                    if isinstance(self.metrics, re.Pattern)
                    else " (append JSON lines to $SCALETUNE_METRICS: scaletune.reporting)"
                ),
            }
        return {**result, "status": "ok", "loss": float(loss)}


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    """Wait up to ``seconds`` for the process to exit; True when it has. On Linux a pidfd wakes this at the
    exit itself (Popen.wait with a timeout polls, up to 50 ms late: that would add to every trial)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the process is already reaped
        fd = None
    if fd is None:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
    else:
        try:
            select.select([fd], [], [], seconds)
        finally:
            os.close(fd)
    return proc.poll() is not None


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """End the command's process group: SIGTERM and up to ``grace`` seconds for the command to exit, then
    SIGKILL for whatever is left in the group (children it left behind included)."""
    if grace > 0 and proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is empty already


def _last_lines(path: Path, n: int, max_bytes: int = 8192) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - max_bytes))
        return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-n:])


def _thin(curve: list[dict]) -> list[dict]:
    """At most MAX_CURVE points, evenly spaced, the last one kept (a script may report every step)."""
    if len(curve) <= MAX_CURVE:
        return curve
    keep = {round(i * (len(curve) - 1) / (MAX_CURVE - 1)) for i in range(MAX_CURVE)}
    return [p for i, p in enumerate(curve) if i in keep]
