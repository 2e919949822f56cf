"""Running obligations: in worker processes started with the ``spawn`` method (z3
is not fork-safe). ``Obligation.run`` is a closure and cannot be sent to a
worker, so each worker rebuilds the registry by discovery once and runs
obligations by id. A worker runs one obligation at a time; one that overruns
its time limit is killed and replaced, and the obligation is reported UNKNOWN,
so a hang cannot hang the check. An exception inside ``run`` is an ERROR
verdict with the traceback; a worker that dies is an ERROR too."""


from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from proofs.obligation import PROFILES, Kind, Obligation, Verdict
from proofs.runner import cache as proof_cache
from proofs.runner.discovery import DEFAULT_PACKAGE, collect
from proofs.runner.shard import costs
from proofs.runner.shard import recorded as durations

DEFAULT_TIMEOUT = 600.0

# Time a fresh worker may take to import the package and rebuild the registry.
WORKER_STARTUP_TIMEOUT = 120.0

Result = tuple[Obligation, Verdict, float]
Progress = Callable[[int, int, Obligation, Verdict, float], None]


def run_one(obligation: Obligation, profile: str) -> tuple[Verdict, float]:
    """Run one obligation here, turning an exception into an ERROR verdict; the
    verdict says what the proof cache (if one is open) answered."""
    start = time.perf_counter()
    with proof_cache.running(obligation.id) as usage:
        try:
            key = proof_cache.key_of(obligation, profile)
            verdict = proof_cache.reuse(key) or obligation.run(profile)
            if not isinstance(verdict, Verdict):
                verdict = Verdict(Kind.ERROR, "run() did not return a Verdict",
                                  detail=f"run({profile!r}) returned {verdict!r}")
            elif not usage.verdict:
                proof_cache.keep(key, verdict, obligation.id)
        except (Exception, SystemExit):
            verdict = Verdict(Kind.ERROR, "exception in run()", detail=traceback.format_exc())
    if usage.hits:
        verdict = dataclasses.replace(verdict, cache=usage.describe())
    return verdict, time.perf_counter() - start


def _worker_main(conn: Connection, package: str, cache_dir: str | None) -> None:
    """A worker process: rebuild the registry once, then run obligations by id."""
    sys.stdout = sys.stderr  # stdout belongs to the parent's report
    proof_cache.open_cache(cache_dir)
    try:
        registry = {o.id: o for o in collect(package)}
    except BaseException:
        conn.send(("failed", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        obligation_id, profile = task
        obligation = registry.get(obligation_id)
        if obligation is None:
            result = (Verdict(Kind.ERROR, "not found by the worker's discovery"), 0.0)
        else:
            result = run_one(obligation, profile)
        try:
            conn.send(("done", result))
        except Exception:  # a verdict that does not pickle
            conn.send(("done", (Verdict(Kind.ERROR, "verdict could not be sent back",
                                        detail=traceback.format_exc()), result[1])))


class _Worker:
    """One worker process, the parent's end of its pipe, and what it is running."""

    def __init__(self, package: str, cache_dir: str | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=(child_conn, package, cache_dir), daemon=True,
            name="proofs.check worker")
        self.process.start()
        child_conn.close()
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None  # index of the obligation being run
        self.task_started = 0.0

    def deadline(self, timeout: float) -> float:
        if not self.ready:
            return self.started + WORKER_STARTUP_TIMEOUT
        return self.task_started + timeout if self.task is not None else float("inf")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(2.0)
        self.kill()


class WorkerStartupError(RuntimeError):
    """A worker could not rebuild the registry."""


def _died(obligation_id: str, code: int | None) -> Verdict:
    return Verdict(Kind.ERROR, f"worker process died (exit code {code})",
                   detail=f"the worker running {obligation_id} exited with code {code} "
                          "(killed by a signal if negative)")


def _timed_out(timeout: float) -> Verdict:
    return Verdict(Kind.UNKNOWN, f"timeout after {timeout:g}s",
                   detail=f"no verdict within --timeout {timeout:g}s; the worker was killed")


#: Workers kept between :func:`run_isolated` calls, by (package, cache directory).
_IDLE: dict[tuple[str, str | None], list[_Worker]] = collections.defaultdict(list)
_IDLE_LOCK = threading.Lock()


def run_isolated(obligation_id: str, profile: str, *, package: str = DEFAULT_PACKAGE,
                 timeout: float = DEFAULT_TIMEOUT,
                 cache_dir: str | None = None) -> tuple[Verdict, float]:
    """Run one obligation by id in a worker process, as the pool does (a hang is
    UNKNOWN after timeout, a death an ERROR), and keep the worker for the next
    call of this process: the body of a distributed task (proofs/runner/cluster.py),
    which would otherwise pay a worker's start-up for every obligation. Safe to
    call from several threads at once (each takes its own worker)."""
    if multiprocessing.current_process().daemon:
        return Verdict(Kind.ERROR, "this worker may not start processes",
                       detail="a daemonic process cannot start the process an obligation "
                              "runs in: start Dask workers with "
                              "DASK_DISTRIBUTED__WORKER__DAEMON=False"), 0.0
    with _IDLE_LOCK:
        idle = _IDLE[(package, cache_dir)]
        worker = idle.pop() if idle else _Worker(package, cache_dir)
    start = time.monotonic()
    try:
        if not worker.ready:
            if not worker.conn.poll(WORKER_STARTUP_TIMEOUT):
                raise WorkerStartupError(f"no registry in {WORKER_STARTUP_TIMEOUT}s")
            tag, payload = worker.conn.recv()
            if tag != "ready":
                raise WorkerStartupError(str(payload))
            worker.ready = True
    except (WorkerStartupError, EOFError, OSError) as error:
        worker.kill()
        return Verdict(Kind.ERROR, "worker failed to start",
                       detail=f"{type(error).__name__}: {error}"), time.monotonic() - start
    start = time.monotonic()
    try:
        worker.conn.send((obligation_id, profile))
        if wait([worker.conn, worker.process.sentinel], timeout=timeout):
            _, (verdict, seconds) = worker.conn.recv()
            with _IDLE_LOCK:
                _IDLE[(package, cache_dir)].append(worker)
            return verdict, seconds
    except (EOFError, OSError):  # it died
        worker.process.join(5.0)
        worker.kill()
        return _died(obligation_id, worker.process.exitcode), time.monotonic() - start
    worker.kill()
    return _timed_out(timeout), timeout


def longest_first(obligations: Sequence[Obligation], profile: str) -> list[int]:
    """The indices of obligations, longest recorded duration first (the classic
    longest-processing-time order: no core ends the run alone with a long one)."""
    cost = costs(obligations, durations(profile))
    return sorted(range(len(obligations)), key=lambda i: (-cost[obligations[i].id], i))


def next_task(obligations: Sequence[Obligation], pending: Sequence[int],
              running: Sequence[Obligation]) -> int:
    """The position in pending of the next obligation to start: the first that
    shares no sub-proof with a running one (else the first): with the cache, it
    will find the running one's answers when its turn comes."""
    busy = frozenset().union(*(o.shares for o in running))
    return next((position for position, index in enumerate(pending)
                 if not obligations[index].shares & busy), 0)


def _run_pool(obligations: Sequence[Obligation], profile: str, jobs: int, timeout: float,
              package: str, progress: Progress | None, cache_dir: str | None) -> list[Result]:
    results: list[Result | None] = [None] * len(obligations)
    pending = longest_first(obligations, profile)  # indices; the report keeps the order given
    workers: list[_Worker] = []
    done = 0

    def finish(index: int, verdict: Verdict, seconds: float) -> None:
        nonlocal done
        results[index] = (obligations[index], verdict, seconds)
        done += 1
        if progress is not None:
            progress(done, len(obligations), obligations[index], verdict, seconds)

    def replace(worker: _Worker) -> None:
        worker.kill()
        workers.remove(worker)
        if pending:
            workers.append(_Worker(package, cache_dir))

    try:
        workers.extend(_Worker(package, cache_dir) for _ in range(min(jobs, len(obligations))))
        while done < len(obligations):
            for worker in workers:
                if worker.ready and worker.task is None and pending:
                    running = [obligations[w.task] for w in workers if w.task is not None]
                    worker.task = pending.pop(next_task(obligations, pending, running))
                    worker.task_started = time.monotonic()
                    worker.conn.send((obligations[worker.task].id, profile))
            now = time.monotonic()
            next_deadline = min(w.deadline(timeout) for w in workers)
            waitables: list[Connection | int] = [w.conn for w in workers]
            waitables += [w.process.sentinel for w in workers]
            wait(waitables, timeout=None if next_deadline == float("inf")
                 else max(0.0, next_deadline - now))
            for worker in list(workers):
                message = None
                try:
                    if worker.conn.poll():
                        message = worker.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    tag, payload = message
                    if tag == "ready":
                        worker.ready = True
                    elif tag == "failed":
                        raise WorkerStartupError(str(payload))
                    else:
                        assert worker.task is not None
                        verdict, seconds = payload
                        index, worker.task = worker.task, None
                        finish(index, verdict, seconds)
                elif not worker.process.is_alive():
                    code = worker.process.exitcode
                    if not worker.ready:
                        raise WorkerStartupError(f"worker exited with code {code} before "
                                                 "it rebuilt the registry")
                    if worker.task is None:  # died idle: nothing lost
                        replace(worker)
                        continue
                    seconds = time.monotonic() - worker.task_started
                    finish(worker.task, _died(obligations[worker.task].id, code), seconds)
                    replace(worker)
                elif time.monotonic() >= worker.deadline(timeout):
                    if worker.task is None:
                        raise WorkerStartupError(
                            f"worker did not rebuild the registry in {WORKER_STARTUP_TIMEOUT}s")
                    finish(worker.task, _timed_out(timeout), timeout)
                    replace(worker)
    except WorkerStartupError as error:
        for index in range(len(obligations)):
            if results[index] is None:
                finish(index, Verdict(Kind.ERROR, "worker failed to start",
                                      detail=str(error)), 0.0)
    finally:
        for worker in workers:
            worker.stop()
    return [r for r in results if r is not None]


def run_obligations(obligations_or_ids: Iterable[Obligation | str], profile: str = "full",
                    jobs: int = 1, *, timeout: float | None = None,
                    package: str = DEFAULT_PACKAGE,
                    progress: Progress | None = None,
                    in_process: bool | None = None,
                    cache_dir: str | None = None) -> list[Result]:
    """Run obligations (objects, or ids found by discovery in ``package``).

    Returns ``(obligation, verdict, seconds)`` in the order given.
    ``in_process`` defaults to ``jobs <= 1 and timeout is None``: then they run
    here, one after another (what tests want; nothing enforces a time limit).
    Otherwise they run in ``jobs`` spawned worker processes that find them by
    id in ``package``, and ``timeout`` (seconds per obligation, default
    :data:`DEFAULT_TIMEOUT`) is enforced by killing the worker. ``cache_dir`` is
    the proof cache's directory (proofs/runner/cache.py; None: no cache).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    items = list(obligations_or_ids)
    if in_process is None:
        in_process = jobs <= 1 and timeout is None
    registry: dict[str, Obligation] = {}
    if any(isinstance(item, str) for item in items) or not in_process:
        registry = {o.id: o for o in collect(package)}
    obligations: list[Obligation] = []
    for item in items:
        if isinstance(item, str):
            if item not in registry:
                raise KeyError(f"no obligation {item!r} in package {package!r}")
            obligations.append(registry[item])
        else:
            if not in_process and item.id not in registry:
                raise KeyError(f"obligation {item.id!r} is not discoverable in package "
                               f"{package!r}, so a worker process cannot run it; "
                               "run it in-process (jobs=1, timeout=None)")
            obligations.append(item)
    if in_process:
        with proof_cache.opened(cache_dir):
            return _run_here(obligations, profile, progress)
    return _run_pool(obligations, profile, max(1, jobs),
                     DEFAULT_TIMEOUT if timeout is None else timeout, package, progress,
                     cache_dir)


def _run_here(obligations: Sequence[Obligation], profile: str,
              progress: Progress | None) -> list[Result]:
    results: list[Result] = []
    for index, obligation in enumerate(obligations):
        verdict, seconds = run_one(obligation, profile)
        results.append((obligation, verdict, seconds))
        if progress is not None:
            progress(index + 1, len(obligations), obligation, verdict, seconds)
    return results


