"""Run a study: plan the rungs into the storage, run the trials on local worker processes or Ray, watch
them, and end with exactly the planned set of finished trials.

Crash safety: the plan lives in the storage (queued trials), workers claim trials atomically, a running
trial carries a heartbeat. Whatever kills the sweep (SIGKILL included), running the same command again
keeps every finished trial, marks the trials left running as interrupted (FAIL without an outcome) as soon
as their worker is known to be gone (same host) or their heartbeat is older than ``storage.grace``, and
re-queues exactly those slots.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from scaletune.errors import ScaletuneError
from scaletune.runtable import ok_runs
from scaletune.study.config import Rung, StudyConfig, resolve_storage_url
from scaletune.study.plan import narrowed_ranges, plan_rung, rung_study_name
from scaletune.study.results import HEARTBEAT, META_KEY, WORKER, RungStatus, StoredStudy, _row, rung_status, slot_records
from scaletune.study.storage import mask_url, open_storage, require_shared


@dataclass
class SweepResult:
    """What a sweep call ended with: per-rung status, and why it stopped early (a budget cap) if it did."""

    name: str
    storage: str
    rungs: list[RungStatus]
    stopped: str | None
    seconds: float

    @property
    def complete(self) -> bool:
        return all(r.planned is not None and r.done == r.planned for r in self.rungs)


def _meta(config: StudyConfig) -> dict:
    return {
        "fingerprint": config.fingerprint,
        "config": config.raw,
        "source": config.source,
        "workload": config.workload.name,
        "rungs": [dict(r.scale) for r in config.rungs],
        "fixed_params": {d.name: d.value for d in config.space if d.kind == "fixed"},
        "fixed": {k: v for k, v in config.fixed.items() if isinstance(v, (int, float, str, bool))},
    }


def _init_study(config: StudyConfig, storage: Any) -> StoredStudy:
    import optuna

    study = optuna.create_study(storage=storage, study_name=config.name, load_if_exists=True)
    meta = study.user_attrs.get(META_KEY)
    if meta is None:
        study.set_user_attr(META_KEY, _meta(config))
        meta = _meta(config)
    elif meta["fingerprint"] != config.fingerprint:
        raise ScaletuneError(
            f"study {config.name!r} in {mask_url(config.storage.url)} was planned from a different study file "
            f"({meta.get('source')}): its ladder, space, strategy, seeds or workload changed; use a new name "
            f"or another storage"
        )
    return StoredStudy(config.name, config.storage.url, storage, meta)


def _smaller_runs(stored: StoredStudy, rung: int):
    """The ok runs of the rungs below ``rung`` (run-table rows), which a scale-aware rung narrows from."""
    import pandas as pd

    rows = []
    for k in range(rung):
        trials, planned = stored.rung_trials(k)
        rows += [_row(stored, k, rec.final) for rec in slot_records(trials, planned).values() if rec.final is not None]
    return ok_runs(pd.DataFrame(rows))


def _plan(config: StudyConfig, stored: StoredStudy, rung: Rung) -> None:
    """Put a rung's planned trials into the storage once (idempotent; safe against a concurrent sweep)."""
    import optuna
    from optuna.exceptions import DuplicatedStudyError

    name = rung_study_name(config.name, rung.index)
    try:
        study = optuna.create_study(storage=stored.storage, study_name=name)
        creator = True
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=stored.storage)
        creator = False
    if not creator:  # another sweep is planning it right now, or planned it, or died while planning
        deadline = time.monotonic() + config.storage.grace
        while study.user_attrs.get("planned") is None and time.monotonic() < deadline:
            time.sleep(0.2)
    attrs = study.user_attrs
    if attrs.get("planned") is not None:
        return
    ranges = attrs.get("ranges")
    if ranges is None:  # computed once and stored, so a resumed sweep plans the very same trials
        ranges = {k: [float(v[0]), float(v[1])] for k, v in narrowed_ranges(config, rung, _smaller_runs(stored, rung.index)).items()}
        study.set_user_attr("rung", dict(rung.scale))
        study.set_user_attr("ranges", ranges)
    slots = plan_rung(config, rung, {k: tuple(v) for k, v in ranges.items()})
    existing = {t.user_attrs.get("slot") for t in study.get_trials(deepcopy=False)}
    for s in slots:
        if s.slot not in existing:
            study.enqueue_trial(s.params or {}, user_attrs={"slot": s.slot, "rung": rung.index, "seed": s.seed}, skip_if_exists=False)
    study.set_user_attr("planned", len(slots))


def _requeue(study: Any, attempt: Any) -> None:
    """Queue a new attempt of a slot with the same hyperparameters, naming the attempt it replaces."""
    params = {**attempt.system_attrs.get("fixed_params", {}), **attempt.params}
    keep = {k: attempt.user_attrs[k] for k in ("slot", "rung", "seed") if k in attempt.user_attrs}
    study.enqueue_trial(params, user_attrs={**keep, "retry_of": attempt.number}, skip_if_exists=False)


def _worker_gone(token: str | None) -> bool:
    """True when the token names a process on this host that no longer exists."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fail_running(study: Any, storage: Any, pick, error: str | None) -> int:
    """Mark the running trials chosen by ``pick(trial)``: with ``error`` as a failed outcome (the worker
    process died under the trial), or without one as interrupted, re-queueing the slot. The FAIL
    transition is atomic, so only one sweep re-queues a given trial."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    n = 0
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if not pick(t):
            continue
        try:
            if error is not None:
                storage.set_trial_user_attr(t._trial_id, "status", "failed")
                storage.set_trial_user_attr(t._trial_id, "error", error)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # it finished, or another sweep marked it first
        if error is None:
            _requeue(study, t)
        n += 1
    return n


def _is_stale(t: Any, grace: float, now: float) -> bool:
    if _worker_gone(t.system_attrs.get(WORKER)):
        return True
    last = t.system_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
    return now - last > grace


def _repair_orphans(study: Any, planned: int, retry_failed: bool) -> None:
    """Re-queue slots with neither a live nor a done trial (a sweep died between marking an attempt
    interrupted and re-queueing it), and with ``retry_failed`` the slots whose outcome is ``failed``."""
    trials = study.get_trials(deepcopy=False)
    for rec in slot_records(trials, planned).values():
        if rec.live:
            continue
        if rec.final is None and rec.attempts:
            _requeue(study, rec.attempts[-1])
        elif retry_failed and rec.final is not None and rec.final.user_attrs.get("status") == "failed":
            _requeue(study, rec.final)


class _LocalPool:
    """Worker processes on this machine (spawned, so CUDA / torch state is never forked). With GPU sets
    (``groups``, one per worker), each worker gets a set no other live worker holds."""

    def __init__(self, config: StudyConfig, n: int, groups: list[tuple[str, ...]] | None = None) -> None:
        import multiprocessing as mp

        from scaletune.study._worker import local_worker_main

        self.ctx = mp.get_context("spawn")
        self.config, self.target, self.groups, self.parallel = config, local_worker_main, groups, n > 1
        self.stop = self.ctx.Event()
        self.procs: dict[str, Any] = {}
        self.devices: dict[str, tuple[str, ...]] = {}  # live worker -> its GPUs
        self.suffixes: set[str] = set()  # every worker this pool started
        for _ in range(n):
            self.spawn()

    def spawn(self) -> None:
        suffix = uuid.uuid4().hex[:12]
        devices = None
        if self.groups is not None:  # a dead worker's set is free again: dead() forgot it
            devices = next(g for g in self.groups if g not in self.devices.values())
            self.devices[suffix] = devices
        p = self.ctx.Process(target=self.target, args=(self.config, suffix, self.stop, os.getpid(), devices, self.parallel), daemon=True)
        p.start()
        self.procs[suffix] = p
        self.suffixes.add(suffix)

    def dead(self) -> list[tuple[str, str]]:
        """(suffix, reason) of workers that exited abnormally since the last call."""
        out = []
        for suffix, p in list(self.procs.items()):
            if p.exitcode is None:
                continue
            del self.procs[suffix]
            self.devices.pop(suffix, None)
            if p.exitcode != 0:
                how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit code {p.exitcode}"
                out.append((suffix, f"worker process died ({how})"))
        return out

    def busy(self) -> bool:
        return any(p.exitcode is None for p in self.procs.values())

    def stop_claiming(self) -> None:
        self.stop.set()

    def shutdown(self, wait: float) -> None:
        self.stop.set()
        deadline = time.monotonic() + wait
        for p in self.procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join()


class _RayPool:
    """Worker tasks on a Ray cluster (the current one if ray.init was called, else ``address``)."""

    def __init__(self, config: StudyConfig, n: int | None, address: str | None) -> None:
        capacity = _ray_capacity(config, address)  # connects, and checks that a trial fits a node
        import ray

        self.ray = ray

        @ray.remote
        class Flag:
            def __init__(self) -> None:
                self.value = False

            def set(self) -> None:
                self.value = True

            def get(self) -> bool:
                return self.value

        @ray.remote(max_retries=0)
        def work(config: StudyConfig, suffix: str, flag: Any, parallel: bool) -> int:
            from scaletune.study._worker import Worker, make_token

            return Worker(config, make_token(suffix), parallel).loop(lambda: ray.get(flag.get.remote()), poll=0.5)

        resources = config.workload.resources
        self.flag = Flag.remote()  # type: ignore[attr-defined]  # ray.remote made it an actor class
        self.work = work.options(num_cpus=resources.cpus, num_gpus=resources.gpus)  # Ray sets CUDA_VISIBLE_DEVICES
        n = n or capacity  # default: as many trials as the cluster's nodes fit at once
        self.config, self.parallel = config, n > 1
        self.tasks: dict[Any, str] = {}
        self.suffixes: set[str] = set()
        for _ in range(n):
            self.spawn()

    def spawn(self) -> None:
        suffix = uuid.uuid4().hex[:12]
        self.tasks[self.work.remote(self.config, suffix, self.flag, self.parallel)] = suffix
        self.suffixes.add(suffix)

    def dead(self) -> list[tuple[str, str]]:
        if not self.tasks:
            return []
        ready, _ = self.ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=0)
        out = []
        for ref in ready:
            suffix = self.tasks.pop(ref)
            try:
                self.ray.get(ref)
            except Exception as exc:
                out.append((suffix, f"Ray worker died ({type(exc).__name__})"))
        return out

    def busy(self) -> bool:
        return bool(self.tasks) and len(self.ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=0)[0]) < len(self.tasks)

    def stop_claiming(self) -> None:
        self.flag.set.remote()

    def shutdown(self, wait: float) -> None:
        self.stop_claiming()
        if self.tasks:
            _, pending = self.ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=wait)
            # Cancel only the tasks still running: cancelling one that has just completed races with its
            # completion callback and can crash the driver (Ray's RAY_CHECK "Tried to complete task that was
            # not pending", ray-project/ray#54527; seen here once in the test suite).
            for ref in pending:
                self.ray.cancel(ref, force=True)


def _local_capacity(config: StudyConfig) -> tuple[int, list[tuple[str, ...]] | None]:
    """(most trials this machine runs at once, the GPU set of each worker or None). A trial that needs more
    cores or GPUs than the machine has is a `ScaletuneError`, raised before anything is planned."""
    from scaletune.workloads import device_groups

    resources, cores = config.workload.resources, os.cpu_count() or 1
    if resources.cpus > cores:
        raise ScaletuneError(f"{config.source}: resources.cpus_per_trial = {resources.cpus} but this machine has {cores} cores")
    try:
        groups = device_groups(resources)
    except ScaletuneError as exc:
        raise ScaletuneError(f"{config.source}: {exc}", hint=exc.hint) from None
    n = max(1, cores // resources.cpus)
    return (n if groups is None else min(n, len(groups))), groups


def _ray_capacity(config: StudyConfig, address: str | None) -> int:
    """Connect to Ray (``address``, or start a local instance) unless connected; the number of trials the
    cluster's nodes fit at once. A trial larger than every node is a `ScaletuneError` (a Ray task that fits
    no node would wait forever)."""
    import math

    try:
        import ray
    except ImportError:
        raise ScaletuneError("backend 'ray' needs Ray: pip install 'scaletune[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        except Exception as exc:
            raise ScaletuneError(
                f"cannot connect to Ray at {address or 'a new local instance'}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
    res = config.workload.resources
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = [min(int(r.get("CPU", 0) // res.cpus), int(r.get("GPU", 0) // res.gpus) if res.gpus else math.inf) for r in nodes]
    if max(fits, default=0) < 1:
        largest: dict[str, float] = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise ScaletuneError(
            f"{config.source}: resources: a trial needs {res.cpus} CPUs and {res.gpus} GPUs "
            f"(cpus_per_trial, gpus_per_trial) but the largest Ray node has "
            f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs"
        )
    return int(sum(fits))


def _check_pickles(config: StudyConfig, backend: str) -> None:
    """Each worker gets its own copy of a sampler or pruner object, through pickle (local worker processes)
    or cloudpickle (Ray tasks, Slurm jobs): an object that does not pickle is a `ScaletuneError` up front."""
    import pickle

    dumps = pickle.dumps
    if backend != "local":
        try:
            import cloudpickle

            dumps = cloudpickle.dumps
        except ImportError:
            pass
    for what, obj in (("sampler", config.sampler), ("pruner", config.pruner)):
        if obj is None or isinstance(obj, str):
            continue
        try:
            dumps(obj)
        except Exception as exc:  # pickle raises PicklingError, TypeError or AttributeError
            raise ScaletuneError(
                f"{what} {type(obj).__name__} cannot be pickled ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); every worker needs a copy",
                hint=f"build the {what} from module-level functions and plain values (no lambdas, open files or locks)",
            ) from None


def run_study(
    config: StudyConfig,
    storage: str | None = None,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[[list[RungStatus], str], None] | None = None,
    retry_failed: bool = False,
    poll: float = 1.0,
    sampler: Any = None,
    pruner: Any = None,
) -> SweepResult:
    """Run (or resume) a study until every planned trial has finished, or a budget cap stops it.

    ``storage`` overrides the study file's storage URL; ``workers`` defaults to CPU cores // threads per
    trial, of this machine (local) or of the whole cluster (Ray). Returns the per-rung status.
    ``progress(statuses, note)`` is called about once per ``poll`` seconds with every rung's status (and why
    the sweep is stopping, if it is), for a front end to render (`scaletune sweep` draws a live table).
    Any number of sweeps may run the same study on the same storage at once (e.g. one per machine).

    ``sampler`` and ``pruner`` replace the study file's: a name, or an Optuna object such as
    ``optuna.samplers.TPESampler(seed=3)`` or ``optuna.pruners.HyperbandPruner()`` (see
    `StudyConfig.with_optuna`). Every worker, local, Ray or Slurm, gets a pickled copy. With one worker a
    seeded sampler draws the same values on every run; with several, each worker reseeds its copy (as
    Optuna does for ``n_jobs > 1``) so that no two draw the same values, and the order in which trials
    finish, hence what they draw, varies.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if backend not in ("local", "ray", "slurm"):
        raise ScaletuneError(f"backend: expected 'local', 'ray' or 'slurm', got {backend!r}")
    if sampler is not None or pruner is not None:
        config = config.with_optuna(sampler, pruner)
    _check_pickles(config, backend)
    if storage:
        config = dataclasses.replace(config, storage=dataclasses.replace(config.storage, url=resolve_storage_url(storage)))
    if workers is not None and workers < 1:
        raise ScaletuneError(f"workers: expected a positive number, got {workers}")
    require_shared(config.storage.url, backend, address)
    if backend == "local":  # resources are checked before the storage is touched
        capacity, groups = _local_capacity(config)
        workers = min(workers or capacity, capacity) if groups is not None else workers or capacity
    elif backend == "ray":
        _ray_capacity(config, address)
    st = open_storage(config.storage.url)
    stored = _init_study(config, st)
    scale_aware = config.strategy.name == "scale-aware"
    studies: dict[int, Any] = {}

    def plan(rung: Rung) -> None:
        _plan(config, stored, rung)
        studies[rung.index] = optuna.load_study(study_name=rung_study_name(config.name, rung.index), storage=st)

    for rung in config.rungs[:1] if scale_aware else config.rungs:
        plan(rung)
    if scale_aware:  # resume: rungs planned before the crash
        for rung in config.rungs[1:]:
            if stored.rung_trials(rung.index)[1] is not None:
                plan(rung)
    now = time.time()
    for k, study in studies.items():
        _fail_running(study, st, lambda t: _is_stale(t, config.storage.grace, now), None)
        _repair_orphans(study, stored.rung_trials(k)[1] or 0, retry_failed)

    start = time.monotonic()
    pool: _LocalPool | _RayPool | Any
    if backend == "local":
        assert workers is not None  # set from the machine's capacity above
        pool = _LocalPool(config, workers, groups)
    elif backend == "ray":
        pool = _RayPool(config, workers, address)
    else:
        from scaletune.study.slurm import SlurmPool

        pool = SlurmPool(config, workers, st)
    stopped = None
    deaths = 0  # workers that died without a trial to blame: a broken environment, not a trial
    try:
        while True:
            now = time.time()
            for suffix, reason in pool.dead():
                error = None if getattr(pool, "requeue_dead", False) else reason  # Slurm: cancelled, pre-empted
                blamed = sum(
                    _fail_running(study, st, lambda t: str(t.system_attrs.get(WORKER, "")).endswith(suffix), error)
                    for study in studies.values()
                )
                deaths += blamed == 0
                if deaths > 3:
                    raise ScaletuneError(f"worker processes keep dying outside any trial (last: {reason})")
                if stopped is None:
                    pool.spawn()
            for study in studies.values():
                _fail_running(study, st, lambda t: _is_stale(t, config.storage.grace, now), None)
            statuses = [rung_status(stored, r.index) for r in config.rungs]
            if scale_aware:
                for r in config.rungs[1:]:
                    if r.index not in studies and all(s.planned is not None and s.done == s.planned for s in statuses[: r.index]):
                        plan(r)
                        statuses[r.index] = rung_status(stored, r.index)
            if progress:
                progress(statuses, stopped or "")
            if all(s.planned is not None and s.done == s.planned for s in statuses):
                break
            if stopped is None:
                if config.budget.seconds is not None and time.monotonic() - start >= config.budget.seconds:
                    stopped = f"wall-time budget of {config.budget.seconds:g} s reached"
                elif config.budget.flops is not None and sum(s.flops for s in statuses) >= config.budget.flops:
                    stopped = f"FLOPs budget of {config.budget.flops:g} reached"
                if stopped:
                    pool.stop_claiming()
            if stopped and not pool.busy():
                break
            time.sleep(poll)
    except BaseException:  # Ctrl-C, or an error while planning a rung: stop at once
        stopped = "interrupted"
        raise
    finally:
        pool.shutdown(wait=0.0 if stopped == "interrupted" else 30.0)
        if stopped == "interrupted":  # re-queue our workers' trials now rather than at the next start
            for study in studies.values():
                _fail_running(study, st, lambda t: str(t.system_attrs.get(WORKER, "")).rpartition(":")[2] in pool.suffixes, None)
    statuses = [rung_status(stored, r.index) for r in config.rungs]
    return SweepResult(config.name, config.storage.url, statuses, stopped, time.monotonic() - start)
