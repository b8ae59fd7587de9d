"""A worker: claims planned trials from the storage one at a time, runs the workload, records the outcome.

The same loop runs in a local worker process and in a Ray task. Claiming is the storage's atomic
WAITING -> RUNNING transition, so any number of workers on any number of machines never run a queued
trial twice. While a trial runs, a heartbeat thread stamps it; a trial whose heartbeat stops is stale.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from typing import Any, Callable

from scaletune.runtable import STATUSES
from scaletune.study.config import Dimension, Rung, StudyConfig
from scaletune.study.plan import rung_study_name
from scaletune.study.results import HEARTBEAT, WORKER, finite_or_none
from scaletune.study.storage import open_storage


def make_token(suffix: str) -> str:
    """Worker identity ``host:pid:suffix``: lets a sweep on the same host see at once that a worker is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{suffix}"


class _Heartbeat(threading.Thread):
    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            try:
                self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, time.time())
            except Exception:  # the trial finished meanwhile or the database blinked: the next beat retries
                pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _suggest(trial: Any, dim: Dimension, lo: float | None, hi: float | None) -> Any:
    if dim.kind == "choices":
        return trial.suggest_categorical(dim.name, list(dim.choices))
    assert lo is not None and hi is not None  # a numeric dimension always has its range
    if dim.kind == "int":
        return trial.suggest_int(dim.name, int(lo), int(hi), log=dim.log)
    return trial.suggest_float(dim.name, lo, hi, log=dim.kind == "log")


def _compact_curve(curve: Any) -> dict[str, list] | None:
    """A list of {step, tokens, lr, train_loss, val_loss} dicts -> columns (smaller to store)."""
    if not curve:
        return None
    keys = list(dict.fromkeys(k for point in curve for k in point))
    return {k: [finite_or_none(point.get(k)) for point in curve] for k in keys}


class Worker:
    """Claims and runs trials of one study; see the module docstring. ``parallel``: other workers run beside
    this one, so it reseeds its copies of the samplers (each would otherwise draw the same values)."""

    def __init__(self, config: StudyConfig, token: str, parallel: bool = False) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.config, self.token, self.parallel = config, token, parallel
        self.storage = open_storage(config.storage.url)
        self.workload = config.workload
        self.studies: dict[int, Any] = {}
        self.ranges: dict[int, dict] = {}
        self.queues: dict[int, list[int]] = {}  # rung -> ids of trials seen waiting, in plan order

    def _study(self, rung: Rung):
        import optuna

        if rung.index not in self.studies:
            sampler = self.config.make_sampler(rung)
            if self.parallel:  # every worker holds the same seeded copy: without this they draw alike
                sampler.reseed_rng()
            try:
                study = optuna.load_study(
                    study_name=rung_study_name(self.config.name, rung.index),
                    storage=self.storage,
                    sampler=sampler,
                    pruner=self.config.make_pruner(),
                )
            except KeyError:
                return None  # not planned yet (a scale-aware rung waits for the smaller ones)
            self.studies[rung.index] = study
        return self.studies[rung.index]

    def claim(self) -> tuple[Any, Rung, int] | None:
        """Atomically take the first queued trial of the smallest rung that has one."""
        from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
        from optuna.trial import TrialState

        for rung in self.config.rungs:
            study = self._study(rung)
            if study is None:
                continue
            # Loading the queue costs one read of every waiting trial, so it is cached and reloaded only
            # when used up; a stale entry is harmless because the claim itself is atomic.
            queue = self.queues.get(rung.index) or []
            if not queue:
                waiting = self.storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
                queue = [t._trial_id for t in sorted(waiting, key=lambda t: t.number)]
            while queue:
                trial_id = queue.pop(0)
                try:
                    if self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                        self.queues[rung.index] = queue
                        return study, rung, trial_id
                except (UpdateFinishedTrialError, StorageInternalError):
                    continue  # another worker took it, or the database was busy: try the next one
            self.queues[rung.index] = queue
        return None

    def run(self, study: Any, rung: Rung, trial_id: int) -> str:
        """Run one claimed trial to its recorded outcome; returns its status."""
        import optuna

        storage = self.storage
        storage.set_trial_system_attr(trial_id, WORKER, self.token)  # the claim's start time is the first beat
        beat = _Heartbeat(storage, trial_id, self.config.storage.heartbeat)
        beat.start()
        pruned = False
        result: dict = {}
        error = None
        try:
            trial = optuna.trial.Trial(study, trial_id)
            if rung.index not in self.ranges:
                self.ranges[rung.index] = study.user_attrs.get("ranges", {})
            ranges = self.ranges[rung.index]
            params = {d.name: _suggest(trial, d, *ranges.get(d.name, (None, None))) for d in self.config.space if d.kind != "fixed"}
            config = self.config.trial_config(rung, params, trial.user_attrs.get("seed", 0))

            def report(step: int, value: float, /, **metrics: Any) -> bool:
                """Record an intermediate validation loss; True when the pruner says stop. Other metrics of
                the step are the workload's to keep in its curve."""
                nonlocal pruned
                value = float(value)
                if math.isfinite(value):
                    trial.report(value, int(step))
                    # without a pruner, skip asking: each question is a storage read
                    pruned = pruned or (self.config.pruner != "none" and trial.should_prune())
                return pruned

            spec = self.workload.schedule_spec(config)
            if spec:  # the full schedule of this trial, for pruners that predict the rest of its curve
                trial.set_user_attr("schedule", spec)
            label = f"r{rung.index}-s{trial.user_attrs.get('slot', 'x')}-t{trial.number}"  # rung, slot, attempt
            start = time.perf_counter()
            try:
                out = self.workload.run(config, report, label)
                result = dict(out) if isinstance(out, dict) else {}
                if not isinstance(out, dict):
                    error = f"workload returned {type(out).__name__}, expected a dict"
            except Exception as exc:  # the workload's own failure is a recorded outcome, not a crash
                error = _one_line(exc)
            result.setdefault("seconds", time.perf_counter() - start)
            if self.workload.resources.gpus:  # the GPUs this worker was given (local: by the sweep; Ray: by Ray)
                result.setdefault("devices", os.environ.get("CUDA_VISIBLE_DEVICES"))
        finally:
            beat.halt.set()
        return self._record(study, trial_id, result, error, pruned)

    def _record(self, study: Any, trial_id: int, result: dict, error: str | None, pruned: bool) -> str:
        from optuna.trial import TrialState

        curve = _compact_curve(result.pop("curve", None))
        stderr_tail = result.pop("stderr_tail", None)  # a failed command's last lines of stderr
        error = error or result.pop("error", None)  # a workload may return a failure with its reason
        status = "failed" if error else str(result.pop("status", "pruned" if pruned else "ok"))
        if status not in STATUSES:
            status, error = "failed", f"workload returned unknown status {status!r} (expected {', '.join(STATUSES)})"
        loss = result.get("loss")
        finite = isinstance(loss, (int, float)) and math.isfinite(loss)
        if status == "ok" and not finite:
            status = "diverged"  # a NaN / inf final loss is a divergence whatever the workload says
        storage = self.storage
        number = storage.get_trial_number_from_id(trial_id)
        try:
            storage.set_trial_user_attr(
                trial_id,
                "result",
                {
                    k: finite_or_none(v)
                    for k, v in result.items()
                    if isinstance(v, (int, float, str, bool)) or v is None or hasattr(v, "item")
                },
            )
            if curve:
                storage.set_trial_user_attr(trial_id, "curve", curve)
            if error:
                storage.set_trial_user_attr(trial_id, "error", str(error))
            if stderr_tail:
                storage.set_trial_user_attr(trial_id, "stderr_tail", str(stderr_tail))
            if status in ("failed", "diverged"):  # last: it makes a FAIL outcome final (other states say it)
                storage.set_trial_user_attr(trial_id, "status", status)
            if status == "ok":
                study.tell(number, float(loss))  # type: ignore[arg-type]  # ok means a finite loss (checked above)
            else:
                study.tell(number, state=TrialState.PRUNED if status == "pruned" else TrialState.FAIL)
        except Exception as exc:  # marked stale by another sweep meanwhile: its re-queued copy will run
            logging.getLogger("scaletune").warning("trial %s of %s: result not recorded (%s)", number, study.study_name, _one_line(exc))
        return status

    def loop(self, should_stop: Callable[[], bool], poll: float = 0.2) -> int:
        """Claim and run trials until ``should_stop()``; returns the number of trials run."""
        n = 0
        while not should_stop():
            claimed = self.claim()
            if claimed is None:
                time.sleep(poll)
                continue
            self.run(*claimed)
            n += 1
        return n


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the sweep process dies (even by SIGKILL), so no
    orphan keeps running trials that the resumed sweep re-queues."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def local_worker_main(
    config: StudyConfig, suffix: str, stop: Any, parent_pid: int, devices: tuple[str, ...] | None = None, parallel: bool = False
) -> None:
    """Entry point of a local worker process (multiprocessing, spawn); ``devices``: the GPUs its trials
    get (CUDA_VISIBLE_DEVICES, set before anything can initialise CUDA), None to leave it as it is;
    ``parallel``: other workers run beside it (see `Worker`)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle: it stops the workers
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(config.threads)
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    if os.getppid() != parent_pid:
        return
    worker = Worker(config, make_token(suffix), parallel)
    worker.loop(lambda: stop.is_set() or os.getppid() != parent_pid)
