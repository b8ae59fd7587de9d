"""W&B run folders (``wandb/offline-run-*``, ``wandb/run-*``) -> `RawRun` records, read offline.

The run's ``.wandb`` transaction log holds everything: config, history, summary and exit code (recent wandb
versions write no ``config.yaml`` or ``wandb-summary.json`` for offline runs). It is read with wandb's own
reader, the ``wandb-core`` binary shipped in the wandb package (``wandb leet inspect --json``), run with
observability off so that nothing is sent anywhere. Config and summary come from its ``--summary`` view
(wandb merges the updates itself), history from the records.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scaletune.errors import ScaletuneError
from scaletune.importers._core import (
    RawRun,
    SkippedRun,
    flatten,
    number,
    series_from_points,
)


def discover(paths) -> list[Path]:
    """The ``run-*.wandb`` logs under ``paths`` (a log file, a run folder, a ``wandb/`` folder or any folder above)."""
    found = []
    for given in map(Path, paths):
        if not given.exists():
            raise ScaletuneError(f"{given}: no such file or directory")
        if given.is_file():
            if given.suffix != ".wandb":
                raise ScaletuneError(f"{given}: not a W&B run log (run-*.wandb)")
            files = [given]
        else:
            files = sorted(f for f in given.rglob("run-*.wandb") if f.is_file())
        if not files:
            raise ScaletuneError(f"{given}: no W&B runs (wandb/offline-run-*/run-*.wandb) under it")
        found += files
    unique: dict[Path, Path] = {}
    for f in sorted(found, key=lambda f: f.parent.is_symlink()):  # wandb/latest-run links to a run folder
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _core() -> str:
    try:
        import wandb
        from wandb.util import get_core_path
    except ImportError:
        raise ScaletuneError("reading W&B runs needs wandb: pip install 'scaletune[importers]'") from None
    from packaging.version import Version

    if Version(wandb.__version__) < Version("0.31"):  # older wandb-core has no `leet inspect --json`
        raise ScaletuneError(f"reading W&B run logs offline needs wandb >= 0.31 (installed: {wandb.__version__}): pip install -U wandb")
    try:
        return get_core_path()
    except Exception as exc:  # noqa: BLE001 -- WandbCoreNotAvailableError: no binary for this platform
        raise ScaletuneError(f"wandb {wandb.__version__} has no wandb-core binary here ({exc})") from None


def _inspect(core: str, log: Path, summary: bool):
    args = [
        core,
        "leet",
        "inspect",
        "--no-observability",
        "--json",
        *(["--summary"] if summary else []),
        "--run-file",
        str(log.resolve()),
        str(log.resolve().parent.parent),
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ScaletuneError(f"{log}: wandb-core cannot read this run log ({last})")
    try:
        return json.loads(proc.stdout) if summary else [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ScaletuneError(f"{log}: unexpected output from wandb-core ({exc})") from None


def _read(core: str, log: Path, step_key: str | None) -> RawRun:
    info = _inspect(core, log, summary=True)
    records = _inspect(core, log, summary=False)
    points: dict[str, list] = {}
    for rec in records:
        if rec.get("type") != "history":
            continue
        item = flatten(rec["history"].get("item", {}))
        step = number(item.get(step_key)) if step_key else number(rec["history"].get("step", {}).get("num", item.get("_step")))
        if step is None:
            continue
        for key, value in item.items():
            v = number(value)
            if v is not None and key != step_key:
                points.setdefault(key, []).append((step, v))
    summary = {k: (number(v) if number(v) is not None else v) for k, v in flatten(info.get("summary") or {}).items()}
    config = flatten(info.get("config") or {})
    for key in ("name", "project"):
        if info.get(key):
            config.setdefault(key, info[key])
    run = RawRun(
        run_id=str(info.get("run_id") or log.stem.removeprefix("run-")),
        source=str(log.parent),
        config=config,
        summary=summary,
        series={k: series_from_points(p) for k, p in points.items()},
        state=info.get("state") or None,
    )
    runtime = number(summary.get("_runtime"))
    if runtime is not None:
        run.seconds, run.seconds_from = runtime, "summary:_runtime"
    return run


def read_runs(paths, mapping: dict[str, str]) -> tuple[list[RawRun], list[SkippedRun]]:
    """Every W&B run under ``paths`` as a `RawRun` (config, summary, history as series on ``_step`` or on the
    logged key that ``--map step=KEY`` names); a log wandb-core cannot read is skipped as unreadable."""
    logs = discover(paths)
    core = _core()

    def read(log: Path) -> RawRun | SkippedRun:
        try:
            return _read(core, log, mapping.get("step"))
        except ScaletuneError as exc:
            return SkippedRun(str(log.parent), "unreadable", str(exc))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:  # each read is a subprocess
        results = list(pool.map(read, logs))
    return [r for r in results if isinstance(r, RawRun)], [r for r in results if isinstance(r, SkippedRun)]
