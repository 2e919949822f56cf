"""``--scheduler ADDRESS``: the obligations as tasks of a Dask distributed cluster.

We schedule nothing ourselves. Start a cluster as Dask's own documentation does
(https://distributed.dask.org/en/stable/quickstart.html): ``dask scheduler`` on
one machine, ``dask worker tcp://HOST:8786`` on each of the others (each with
this repository installed, and ``DASK_DISTRIBUTED__WORKER__DAEMON=False`` in
its environment: a worker's tasks start processes, which Dask's default
daemonic workers may not), then ``python -m proofs.check --scheduler
tcp://HOST:8786``. docs/check.md shows a two-machine set-up.

Each task is self-contained: an obligation id and the profile (with the
package, the time limit and the worker's cache directory). A worker runs it as
the local pool does, in a spawned process of its own that it keeps for the
next task (:func:`proofs.runner.pool.run_isolated`): a hang is UNKNOWN after
``--timeout``, a crash of that process an ERROR. Verdicts stream back as tasks
finish, into the same progress lines, report and exit status as a local run.

A Dask worker that dies while running a task (the machine lost, the process
killed) is Dask's to handle: the scheduler gives the task to another worker,
up to its ``distributed.scheduler.allowed-failures`` deaths (start the
scheduler with ``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=1`` for one
retry); past that the obligation is an ERROR that names the death, so no
obligation is ever silently lost. An exception in the task itself (it cannot
import the package, say) is retried once on another worker, then an ERROR.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

from proofs.obligation import Kind, Obligation, Verdict
from proofs.runner.pool import Progress, Result, run_isolated

#: Seconds to reach the scheduler before giving up (Dask retries within them).
CONNECT_TIMEOUT = 10.0
#: What to install when ``distributed`` is missing.
INSTALL_HINT = "pip install 'memspec[cluster]' (Dask's distributed package)"


class ClusterUnavailableError(RuntimeError):
    """No Dask, or no scheduler at the address."""


def connect(address: str, timeout: float | None = None) -> Any:
    """A ``distributed.Client`` of the scheduler at address."""
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        from distributed import Client
    except ImportError as error:
        raise ClusterUnavailableError(f"--scheduler needs {INSTALL_HINT}") from error
    try:
        return Client(address, timeout=timeout)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterUnavailableError(f"no Dask scheduler at {address}: {error}") from error


def task(obligation_id: str, profile: str, package: str, timeout: float,
         cache_dir: str | None) -> tuple[Verdict, float]:
    """The body of one task, run on a worker."""
    return run_isolated(obligation_id, profile, package=package, timeout=timeout,
                        cache_dir=cache_dir)


def run_on_cluster(obligations: Sequence[Obligation], profile: str, address: str, *,
                   timeout: float, package: str, cache_dir: str | None,
                   progress: Progress | None = None) -> list[Result]:
    """Run obligations as tasks of the cluster at address; results in the order
    given, as :func:`proofs.runner.pool.run_obligations` returns them."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    client = connect(address)
    run = uuid.uuid4().hex[:8]  # task keys unique to this run
    results: list[Result | None] = [None] * len(obligations)
    try:
        futures = {
            client.submit(task, o.id, profile, package, timeout, cache_dir,
                          key=f"memspec-{run}-{o.id}", retries=1, pure=False): index
            for index, o in enumerate(obligations)}
        started = time.monotonic()
        completed = as_completed(futures)  # type: ignore[no-untyped-call]
        for done, future in enumerate(completed, start=1):
            index = futures[future]
            try:
                verdict, seconds = future.result()
            except KilledWorker as error:
                verdict, seconds = Verdict(
                    Kind.ERROR, "the Dask workers running it died",
                    detail=f"{error}: the scheduler gave the task to another worker until "
                           "its allowed-failures were spent"), time.monotonic() - started
            except Exception:
                verdict, seconds = Verdict(
                    Kind.ERROR, "the Dask task failed (tried twice)",
                    detail=traceback.format_exc()), time.monotonic() - started
            results[index] = (obligations[index], verdict, seconds)
            if progress is not None:
                progress(done, len(obligations), obligations[index], verdict, seconds)
    finally:
        client.close()
    return [result for result in results if result is not None]
