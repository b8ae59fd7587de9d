"""The Slurm backend: worker jobs submitted through submitit that claim trials from a shared storage.

The sweep process (the *driver*) plans the rungs into the storage, as for the other backends, and keeps
``jobs`` worker jobs alive while queued trials remain. Each job runs the worker loop of `_worker` until no
trial is queued and every rung is planned (or until it has waited ``IDLE_SECONDS`` for the driver to plan
the next rung), then exits. Jobs are recorded in the study's user attributes (``scaletune:slurm:JOBID``),
and a job's worker token ends in ``slurmJOBID``, so `slurm_jobs` can say which job ran which trial.

When a job ends under a trial (scancel, pre-emption, time limit), its SIGTERM / time-limit signal marks
the trial interrupted and re-queues its slot at once; when it is killed without a signal (node failure),
the driver does the same as soon as squeue no longer lists the job, and a resumed driver when the trial's
heartbeat is older than ``storage.grace``. A driver killed outright leaves the jobs working; run the sweep
again and it adopts the jobs still queued or running instead of submitting new ones.

The storage must be reachable from every node: PostgreSQL, or a journal file on a shared file system.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaletune.errors import ScaletuneError
from scaletune.study.config import StudyConfig, _check_keys, _number
from scaletune.study.plan import rung_study_name

SLURM_KEYS = ("partition", "time", "gpus_per_node", "cpus_per_task", "mem", "account", "qos", "constraint", "setup", "jobs", "folder")
JOB_PREFIX = "scaletune:slurm:"  # user attribute of the study NAME, one per submitted job: {folder, submitted}
STOP_KEY = "scaletune:stop"  # user attribute of the study NAME: True while a budget cap stops the jobs
IDLE_SECONDS = 120.0  # a job with nothing to claim waits this long for the next rung, then exits
CHECK_SECONDS = 5.0  # the driver asks squeue at most this often


@dataclass(frozen=True)
class SlurmSpec:
    """The ``[slurm]`` table: resources of one worker job, how many jobs, where submitit keeps its files.

    ``time`` is the job's time limit in minutes; ``mem_mb`` its memory in MB (None: the partition's default);
    ``cpus_per_task`` / ``gpus_per_node`` None mean what one trial needs (``[resources]``: ``threads`` CPUs
    and no GPU by default); ``setup`` lines run in the batch script before the worker starts
    (``module load ...``, ``source .venv/bin/activate``). ``folder`` holds submitit's pickles and the jobs'
    logs and must be on a file system the nodes share.
    """

    folder: str
    jobs: int = 1
    partition: str | None = None
    time: int = 60
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_mb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = field(default=())

    def parameters(self, config: StudyConfig) -> dict[str, Any]:
        """submitit.SlurmExecutor parameters of one worker job of ``config``."""
        need = config.workload.resources  # one trial's CPUs and GPUs: a job runs one trial at a time
        params: dict[str, Any] = {
            "job_name": job_name(config.name),
            "time": self.time,
            "nodes": 1,
            "ntasks_per_node": 1,
            "cpus_per_task": self.cpus_per_task or need.cpus,
            "setup": list(self.setup),
        }
        gpus = self.gpus_per_node if self.gpus_per_node is not None else need.gpus or None
        if gpus is not None:
            params["gpus_per_node"] = gpus
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if self.mem_mb is not None:  # as --mem=NM: submitit's own mem writes "GB", which sbatch refuses
            params["additional_parameters"] = {"mem": f"{self.mem_mb}M"}
        return params


def _minutes(value: Any) -> int:
    """A time limit in minutes: a number of minutes, or "[D-]HH:MM:SS" (rounded up to whole minutes)."""
    if isinstance(value, str):
        m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", value.strip())
        if not m:
            raise ScaletuneError(f'slurm.time: expected minutes or "HH:MM:SS", got {value!r}')
        days, hours, mins, secs = (int(g or 0) for g in m.groups())
        total = ((days * 24 + hours) * 60 + mins) * 60 + secs
        if total <= 0:
            raise ScaletuneError(f"slurm.time: must be positive, got {value!r}")
        return math.ceil(total / 60)
    return _number(value, "slurm.time", positive=True, integer=True)


def _megabytes(value: Any) -> int:
    """Memory in MB (rounded up): a number of GB, or a Slurm size string such as "16G", "500M", "1T"."""
    if isinstance(value, str):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", value.strip().upper())
        if not m or float(m.group(1)) <= 0:
            raise ScaletuneError(f'slurm.mem: expected a size such as "16G" or a number of GB, got {value!r}')
        return math.ceil(float(m.group(1)) * {"K": 2.0**-10, "M": 1.0, "G": 1024.0, "T": 2.0**20, "": 1.0}[m.group(2)])
    return math.ceil(_number(value, "slurm.mem", positive=True) * 1024)


def parse_slurm(value: Any, base_dir: Path, name: str) -> SlurmSpec:
    """Validate a ``[slurm]`` table (unknown keys name the closest known one); relative folders are
    relative to the study file. A missing table gives the defaults."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ScaletuneError(f"slurm: expected a table, got {value!r}")
    _check_keys(value, SLURM_KEYS, "slurm")
    out: dict[str, Any] = {}
    for key in ("partition", "account", "qos", "constraint"):
        if key in value:
            if not isinstance(value[key], str) or not value[key].strip():
                raise ScaletuneError(f"slurm.{key}: expected a non-empty string, got {value[key]!r}")
            out[key] = value[key]
    for key in ("jobs", "cpus_per_task"):
        if key in value:
            out[key] = _number(value[key], f"slurm.{key}", positive=True, integer=True)
    if "gpus_per_node" in value:
        out["gpus_per_node"] = _number(value["gpus_per_node"], "slurm.gpus_per_node", integer=True)
        if out["gpus_per_node"] < 0:
            raise ScaletuneError(f"slurm.gpus_per_node: must be >= 0, got {value['gpus_per_node']!r}")
    if "time" in value:
        out["time"] = _minutes(value["time"])
    if "mem" in value:
        out["mem_mb"] = _megabytes(value["mem"])
    setup = value.get("setup", [])
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise ScaletuneError(f"slurm.setup: expected a list of shell lines, got {setup!r}")
    folder = value.get("folder", f"{name}-slurm")
    if not isinstance(folder, str) or not folder:
        raise ScaletuneError(f"slurm.folder: expected a folder path, got {folder!r}")
    path = Path(folder).expanduser()
    return SlurmSpec(folder=str((path if path.is_absolute() else base_dir / path).resolve()), setup=tuple(setup), **out)


def job_name(study: str) -> str:
    """The Slurm job name of a study's workers (squeue lists them by it)."""
    return "scaletune-" + re.sub(r"[^A-Za-z0-9_.-]", "_", study)


def _queue_state(storage: Any, config: StudyConfig) -> tuple[int, bool]:
    """(trials waiting in the planned rungs, whether every rung is planned)."""
    from optuna.trial import TrialState

    waiting, planned = 0, True
    for rung in config.rungs:
        try:
            study_id = storage.get_study_id_from_name(rung_study_name(config.name, rung.index))
        except KeyError:
            planned = False
            continue
        planned = planned and storage.get_study_user_attrs(study_id).get("planned") is not None
        waiting += len(storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)))
    return waiting, planned


class _JobEnding(BaseException):
    """Raised in a job by SIGTERM (scancel, pre-emption) or the time-limit signal: not a workload failure,
    so a BaseException that the worker's ``except Exception`` does not record as the trial's outcome."""


def job_main(config: StudyConfig, parallel: bool = False) -> int:
    """Entry point of a worker job (run by submitit on a node): claim and run trials until no work is left;
    returns the number of trials run, or -1 when a signal ended the job (its trial is then re-queued).
    ``parallel``: other jobs run beside it (see `scaletune.study._worker.Worker`)."""
    import optuna

    from scaletune.study._worker import Worker, make_token
    from scaletune.study.results import WORKER
    from scaletune.study.runner import _fail_running

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(config.threads)

    def end(signum: int, _frame: Any) -> None:
        raise _JobEnding(signal.Signals(signum).name)

    # Replace submitit's handlers: it ignores SIGTERM and requeues on USR2 only for checkpointable functions.
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, end)
    worker = Worker(config, make_token(f"slurm{os.environ.get('SLURM_JOB_ID', 'unknown')}"), parallel)
    storage = worker.storage
    root = storage.get_study_id_from_name(config.name)
    idle_since: float | None = None

    def should_stop() -> bool:
        nonlocal idle_since
        if storage.get_study_user_attrs(root).get(STOP_KEY):
            return True
        waiting, planned = _queue_state(storage, config)
        if waiting:
            idle_since = None
            return False
        if planned:
            return True
        idle_since = idle_since or time.monotonic()
        return time.monotonic() - idle_since > IDLE_SECONDS

    try:
        return worker.loop(should_stop, poll=1.0)
    except _JobEnding:  # give the trial back now rather than after the heartbeat grace
        for sig in (signal.SIGTERM, signal.SIGUSR2):  # Slurm may signal again: finish giving back first
            signal.signal(sig, signal.SIG_IGN)
        for rung in config.rungs:
            try:
                study = optuna.load_study(study_name=rung_study_name(config.name, rung.index), storage=storage)
            except KeyError:
                continue
            _fail_running(study, storage, lambda t: t.system_attrs.get(WORKER) == worker.token, None)
        return -1


def _one_line(text: str) -> str:
    """sbatch's error lines (or a traceback's last line) as one line."""
    lines = [re.sub(r"^\w+: error: ", "", x.strip()) for x in text.strip().splitlines() if x.strip()]
    errors = [x for x in text.strip().splitlines() if ": error: " in x]
    return "; ".join(dict.fromkeys(lines)) if errors else (lines[-1] if lines else "no message")


def _squeue(name: str, all_states: bool = False) -> dict[str, str] | None:
    """{job id: state} of the jobs named ``name`` that squeue lists (with ``all_states``, also those that
    ended within Slurm's MinJobAge); None when squeue cannot answer (then nothing is concluded)."""
    cmd = ["squeue", "-h", "--name", name, "-o", "%i|%T"] + (["-t", "all"] if all_states else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)


def _sacct(ids: list[str]) -> dict[str, str]:
    """{job id: state} from Slurm's accounting, where the cluster has it (best effort: {} otherwise)."""
    if not ids or shutil.which("sacct") is None:
        return {}
    try:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(ids)], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode:
        return {}
    return {a: b.split()[0] for a, _, b in (line.partition("|") for line in out.stdout.splitlines()) if b}


def _result(folder: str, job_id: str) -> tuple[str, str] | None:
    """submitit's outcome file of a job: ("success", trials run) or ("error", traceback); None if absent
    (the job was killed, or never got to run Python)."""
    path = Path(folder) / f"{job_id}_0_result.pkl"
    try:
        with path.open("rb") as fh:
            kind, value = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError):
        return None
    return str(kind), str(value)


class SlurmPool:
    """Worker jobs on Slurm, with the interface of the runner's local and Ray pools (spawn, dead, busy,
    stop_claiming, shutdown, suffixes). ``storage`` is the driver's open Optuna storage."""

    requeue_dead = True  # a job that died under a trial was cancelled or pre-empted: re-queue, do not fail

    def __init__(self, config: StudyConfig, n: int | None, storage: Any) -> None:
        try:
            import submitit
        except ImportError:
            raise ScaletuneError("backend 'slurm' needs submitit: pip install 'scaletune[slurm]'") from None
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise ScaletuneError(
                "backend 'slurm': sbatch / squeue not found on PATH (run the sweep where Slurm's commands are installed, e.g. a login node)"
            )
        self.config, self.spec, self.storage = config, config.slurm, storage
        self.n = n or self.spec.jobs
        self.name = job_name(config.name)
        try:
            Path(self.spec.folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScaletuneError(f"slurm.folder: cannot create {self.spec.folder} ({exc.strerror})") from None
        self.executor = submitit.SlurmExecutor(folder=self.spec.folder)
        try:
            self.executor.update_parameters(**self.spec.parameters(config))
        except ValueError as exc:
            raise ScaletuneError(f"slurm: {_one_line(str(exc))}") from None
        self.root = storage.get_study_id_from_name(config.name)
        self.jobs: dict[str, dict] = {}  # alive jobs this driver watches: id -> record
        self.suffixes: set[str] = set()
        self.stopping = False
        self.checked = time.monotonic()
        attrs = storage.get_study_user_attrs(self.root)
        if attrs.get(STOP_KEY):  # a budget cap stopped the last sweep call; this one continues the plan
            storage.set_study_user_attr(self.root, STOP_KEY, False)
        recorded = {k[len(JOB_PREFIX) :]: v for k, v in attrs.items() if k.startswith(JOB_PREFIX) and "ended" not in v}
        if recorded:  # a driver killed earlier: adopt its jobs that are still queued or running
            live = _squeue(self.name)
            if live is None:
                raise ScaletuneError("backend 'slurm': squeue does not answer")
            for job_id, record in recorded.items():
                if job_id in live:
                    self._track(job_id, record)
                else:
                    self._ended(job_id, record)
        self._top_up(fatal=True)

    def _track(self, job_id: str, record: dict) -> None:
        self.jobs[job_id] = record
        self.suffixes.add(f"slurm{job_id}")

    def spawn(self) -> None:
        """Submit one worker job."""
        from submitit.core.utils import FailedJobError

        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr: one line is ours
                job = self.executor.submit(job_main, self.config, self.n > 1)
        except (FailedJobError, OSError) as exc:
            raise ScaletuneError(f"slurm: sbatch failed: {_one_line(str(exc))}") from None
        record = {"folder": self.spec.folder, "submitted": time.time()}
        self.storage.set_study_user_attr(self.root, JOB_PREFIX + str(job.job_id), record)
        self._track(str(job.job_id), record)

    def _top_up(self, fatal: bool = False, coming: int = 0) -> None:
        """Keep min(jobs, queued trials) jobs alive, counting ``coming`` jobs about to be submitted. A failed
        submission is fatal only when no job is left to work (a transient sbatch error must not stop a
        running sweep)."""
        if self.stopping:
            return
        waiting, _ = _queue_state(self.storage, self.config)
        for _ in range(min(self.n, waiting) - len(self.jobs) - coming):
            try:
                self.spawn()
            except ScaletuneError:
                if fatal or not self.jobs:
                    raise
                return

    def _ended(self, job_id: str, record: dict) -> str | None:
        """Record that a job has left the queue; returns why, when it did not end normally."""
        outcome = _result(record["folder"], job_id)
        self.storage.set_study_user_attr(self.root, JOB_PREFIX + job_id, {**record, "ended": outcome[0] if outcome else "killed"})
        if outcome and outcome[0] == "success":
            return None
        log = Path(record["folder"]) / f"{job_id}_0_log.err"
        if outcome:
            return f"Slurm job {job_id} failed: {_one_line(outcome[1])} (log {log})"
        state = (_squeue(self.name, all_states=True) or {}).get(job_id, "state unknown")
        try:
            tail = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()][-1:]
        except OSError:
            tail = []
        return f"Slurm job {job_id} ended ({state}) before its worker finished; {log}: {tail[0] if tail else 'empty'}"

    def dead(self) -> list[tuple[str, str]]:
        """(suffix, reason) of the jobs that left the queue abnormally since the last call; submits new
        jobs while trials are queued."""
        if time.monotonic() - self.checked < CHECK_SECONDS:
            return []
        self.checked = time.monotonic()
        live = _squeue(self.name)
        if live is None:  # the controller is busy or restarting: conclude nothing
            return []
        out = []
        for job_id in [j for j in self.jobs if j not in live]:
            reason = self._ended(job_id, self.jobs.pop(job_id))
            if reason:
                out.append((f"slurm{job_id}", reason))
        # The runner submits a replacement for each abnormal end (spawn); top up the rest.
        self._top_up(coming=len(out))
        return out

    def busy(self) -> bool:
        return bool(self.jobs)

    def stop_claiming(self) -> None:
        self.stopping = True
        self.storage.set_study_user_attr(self.root, STOP_KEY, True)

    def shutdown(self, wait: float) -> None:
        """At the end of the plan the jobs exit by themselves; ``wait == 0`` (interrupted: Ctrl-C or an
        error) cancels them, and the runner re-queues their trials."""
        if wait == 0 and self.jobs:
            subprocess.run(["scancel", *self.jobs], capture_output=True, timeout=60, check=False)


@dataclass
class SlurmJobStatus:
    """One worker job of a study: Slurm's state (squeue, else sacct; else submitit's outcome: COMPLETED,
    FAILED or ENDED), trials it finished, and the run ids (NAME/rK/sS) of the trials it runs now."""

    job_id: str
    state: str
    submitted: float
    done: int
    running: list[str]
    log: str


def slurm_jobs(stored: Any) -> list[SlurmJobStatus]:
    """The Slurm jobs recorded for a stored study (`results.StoredStudy`), oldest first."""
    from scaletune.study.results import WORKER, is_done

    attrs = stored.storage.get_study_user_attrs(stored.storage.get_study_id_from_name(stored.name))
    records = {k[len(JOB_PREFIX) :]: v for k, v in attrs.items() if k.startswith(JOB_PREFIX)}
    if not records:
        return []
    done: dict[str, int] = {}
    running: dict[str, list[str]] = {}
    for k in range(len(stored.rungs)):
        for t in stored.rung_trials(k)[0]:
            suffix = str(t.system_attrs.get(WORKER, "")).rpartition(":")[2]
            if not suffix.startswith("slurm"):
                continue
            job_id = suffix[len("slurm") :]
            if is_done(t):
                done[job_id] = done.get(job_id, 0) + 1
            elif t.state.name == "RUNNING":
                running.setdefault(job_id, []).append(f"{stored.name}/r{k}/s{t.user_attrs.get('slot')}")
    states = (_squeue(job_name(stored.name), all_states=True) if shutil.which("squeue") else None) or {}
    states.update({k: v for k, v in _sacct([j for j in records if j not in states]).items() if k not in states})
    out = []
    for job_id, record in sorted(records.items(), key=lambda kv: kv[1].get("submitted", 0.0)):
        state = states.get(job_id)
        if state is None:
            outcome = _result(record["folder"], job_id)
            state = {"success": "COMPLETED", "error": "FAILED"}.get(outcome[0] if outcome else "", "ENDED")
        out.append(
            SlurmJobStatus(
                job_id,
                state,
                float(record.get("submitted", 0.0)),
                done.get(job_id, 0),
                running.get(job_id, []),
                str(Path(record["folder"]) / f"{job_id}_0_log.err"),
            )
        )
    return out
