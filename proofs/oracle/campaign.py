"""An oracle campaign on a Dask cluster (``--scheduler ADDRESS``), and the
shared example database every run can use (``--database``).

A campaign is cut into chunks, each a self-contained task: a mode, a family,
a seed, a budget (sequences, seconds, steps, timeouts), the configuration
(``--config``/``--set``, over the hello's, as a local run) and the
implementation's command, which the worker runs (it must exist there). Chunk
``i`` of ``--chunks N`` searches with seed ``seed * N + i`` and a share of
``--max-examples`` (every chunk gets the whole ``--time``: they run side by
side) and, as a local campaign, goes on after a divergence (``--first``: it
stops there). Each task returns its report, its verdict and the trace of each
bug it found with its bucket (proofs/oracle/buckets.py), never a live object;
the client prints them as they arrive, keeps one trace per bucket across the
chunks (the shortest: chunks search apart, so two may find one bug), saves
them (the first at ``--trace-out``, the others beside it, numbered) and
exits as a local run does:
1 if any chunk diverged, 3 if any was undecided, 0 if every chunk ran and
passed. A task that fails is retried once; a worker that dies is the
scheduler's business (proofs/runner/cluster.py says how), and past its allowed
failures the chunk is reported as lost, which is a failure, never a pass.

``--database DIR`` (a directory, on shared storage for a cluster) or
``--database redis://HOST:PORT/N`` (hypothesis' Redis database; needs the
``redis`` package) is hypothesis' own example database: every failing sequence
any run or worker finds is saved there, and every later run replays the saved
ones first.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import traceback
from pathlib import Path
from typing import Any

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

from proofs.oracle.families import FAMILIES
from proofs.oracle.report import Case, case_of, describe, write_junit
from proofs.oracle.run import managers_of, search, trace_of


def example_database(text: str) -> ExampleDatabase:
    """The database ``--database`` names (ValueError says why it cannot be used)."""
    if text.startswith(("redis://", "rediss://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as error:
            raise ValueError("a Redis database needs the redis package "
                             "(pip install redis)") from error
        return RedisExampleDatabase(redis.Redis.from_url(text))
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{text} is not a directory")
    return DirectoryBasedExampleDatabase(text)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One task of a campaign."""

    command: str
    mode: str
    family: str
    index: int
    seed: int
    max_examples: int | None
    time_limit: float
    steps: int
    request_timeout: float
    shrink_seconds: float
    database: str | None
    config: dict[str, Any] | None = None
    first: bool = False

    @property
    def name(self) -> str:
        return f"{self.mode}.{self.family}.{self.index}"


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    chunk: Chunk
    #: the chunk's testcase, named for the chunk; status "lost" when its task was
    case: Case
    #: (bucket, trace) of each bug the chunk found (or of its one divergence
    #: that did not replay to a bucket: bucket None)
    traces: tuple[tuple[str | None, dict[str, Any]], ...] = ()

    @property
    def status(self) -> str:
        return self.case.status


def chunks(args: argparse.Namespace) -> list[Chunk]:
    """The campaign's tasks: each mode x family x chunk."""
    modes = ("spec", "strict") if args.mode == "both" else (args.mode,)
    families = args.family or [family.name for family in FAMILIES]
    share = None if args.max_examples is None else -(-args.max_examples // args.chunks)
    return [Chunk(args.impl, mode, family, index, args.seed * args.chunks + index, share,
                  args.time, args.steps, args.request_timeout, args.shrink_time,
                  args.database, getattr(args, "config_layer", None),
                  bool(getattr(args, "first", False)))
            for mode in modes for family in families for index in range(args.chunks)]


def run_chunk(chunk: Chunk) -> ChunkResult:
    """The body of one task, on a worker."""
    database = None if chunk.database is None else example_database(chunk.database)
    outcome = search(chunk.command, chunk.mode, max_examples=chunk.max_examples,
                     time_limit=chunk.time_limit, seed=chunk.seed, steps=chunk.steps,
                     timeout=chunk.request_timeout, shrink_seconds=chunk.shrink_seconds,
                     families=(chunk.family,), database=database, config=chunk.config,
                     keep_going=not chunk.first)
    managers = managers_of(outcome)
    case = case_of(outcome, describe(outcome, managers))._replace(name=chunk.name)
    traces: list[tuple[str | None, dict[str, Any]]] = [
        (str(f.bucket), trace_of(outcome, managers, f)) for f in outcome.findings]
    if outcome.divergence is not None and not outcome.findings:  # not reproducible
        traces.append((None, trace_of(outcome, managers)))
    return ChunkResult(chunk, case, tuple(traces))


def run_campaign(args: argparse.Namespace, save: Any) -> int:
    """Run the campaign on the cluster at ``args.scheduler``; the exit status.
    ``save(path, trace)`` saves a trace and says so (the CLI's)."""
    from distributed import as_completed

    from proofs.runner.cluster import connect
    client = connect(args.scheduler)
    tasks = chunks(args)
    results: list[ChunkResult] = []
    try:
        futures = {client.submit(run_chunk, chunk, retries=1, pure=False): chunk
                   for chunk in tasks}
        completed = as_completed(futures)  # type: ignore[no-untyped-call]
        for done, future in enumerate(completed, start=1):
            chunk = futures[future]
            try:
                result = future.result()
            except Exception:
                result = ChunkResult(chunk, Case(
                    chunk.name, 0.0, "lost", "lost", "lost", "the task was lost (its worker "
                    "died, or it failed twice):\n" + traceback.format_exc()))
            results.append(result)
            if not args.quiet:
                print(f"  [{done}/{len(tasks)}] {result.status:11} {chunk.name} "
                      f"{result.case.seconds:.1f} s", file=sys.stderr, flush=True)
    finally:
        client.close()
    return _conclude(args, sorted(results, key=lambda r: tasks.index(r.chunk)), save)


def distinct(results: list[ChunkResult]) -> list[tuple[str | None, ChunkResult,
                                                        dict[str, Any]]]:
    """(bucket, chunk, trace) of each bug once: the shortest trace of each bucket
    over the chunks (a divergence no replay put in a bucket counts alone)."""
    best: dict[str, tuple[str | None, ChunkResult, dict[str, Any]]] = {}
    for result in results:
        for n, (bucket, trace) in enumerate(result.traces):
            key = bucket if bucket is not None else f"{result.chunk.name}/{n}"
            if key not in best or len(trace["operations"]) < len(best[key][2]["operations"]):
                best[key] = (bucket, result, trace)
    return list(best.values())


def _conclude(args: argparse.Namespace, results: list[ChunkResult], save: Any) -> int:
    diverged = [r for r in results if r.status == "diverged"]
    for result in diverged:
        print(f"chunk {result.chunk.name} (seed {result.chunk.seed}):\n{result.case.report}\n",
              flush=True)
    bugs = distinct(results)
    if bugs:
        print(f"BUGS: {len(bugs)} distinct over the chunks (one trace each, the shortest)")
    for number, (bucket, result, trace) in enumerate(bugs):
        path = args.trace_out if number == 0 else \
            args.trace_out.with_name(f"{args.trace_out.stem}.{number}{args.trace_out.suffix}")
        print(f"  bug {number + 1}: {bucket or 'not reproducible by replay'} (chunk "
              f"{result.chunk.name}, {len(trace['operations'])} operations)"
              f"{save(path, trace)}", flush=True)
    counts = {status: sum(r.status == status for r in results)
              for status in ("passed", "diverged", "unknown", "ran nothing", "lost")}
    print(f"memspec oracle campaign: {len(results)} chunks: "
          + ", ".join(f"{n} {status}" for status, n in counts.items()), flush=True)
    if args.junit is not None:
        write_junit(args.junit, [r.case for r in results])
    if diverged or counts["lost"]:
        return 1
    if counts["unknown"]:
        return 3
    return 0 if counts["passed"] else 1  # a family the implementation lacks runs nothing
