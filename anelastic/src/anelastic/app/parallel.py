"""Many events in parallel with Dask: each event's kernels are computed by one task, and the
event kernels are summed as they arrive.

By default a ``LocalCluster`` is started with one single-threaded worker per event (at most one
per core; Dask's nanny sets ``OMP_NUM_THREADS=1`` in each worker, so the generated C of the
workers does not oversubscribe the cores). ``scheduler`` connects to an existing cluster
instead (``tcp://host:8786``), which is how a user takes the same run to a cluster.

A failing event does not discard the others: every other event still runs and is kept, and
the error raised at the end (:class:`EventsFailed`) names the failed events and carries the
completed results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

KernelSet = Mapping[str, np.ndarray]
"""Kernels of one event: name -> array [*grid shape]."""


@dataclass
class EventsResult:
    """Summed kernels over events, and each event's own result by event index."""

    total: dict[str, np.ndarray]
    per_event: dict[int, Any] = field(default_factory=dict)


class EventsFailed(RuntimeError):
    """Some events failed; ``partial`` holds what the successful ones computed."""

    def __init__(self, failures: dict[int, BaseException], partial: EventsResult) -> None:
        names = "; ".join(f"event {i}: {_describe(e)}" for i, e in failures.items())
        super().__init__(f"{len(failures)} event(s) failed ({names})")
        self.failures = failures
        self.partial = partial

    @property
    def users_mistake(self) -> bool:
        """Every failure is an input error (a bad file, a mismatched store), not a crash."""
        return all(isinstance(e, (ValueError, OSError)) for e in self.failures.values())


def run_events(
    task: Callable[[Any], tuple[KernelSet, Any]],
    events: Sequence[Any],
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    progress: bool = True,
) -> EventsResult:
    """Run ``task(event) -> (kernels, extra)`` for every event on Dask and sum the kernels.

    task: a picklable function (defined at module level) of one event description.
    scheduler: address of an existing Dask scheduler; None starts a LocalCluster with
    ``n_workers`` workers (default: min(number of events, number of cores)).
    processes: LocalCluster workers as processes (the default; threads share the GIL-free C
    code but not Devito's compiler cache safely) or threads (for quick tests).
    Returns the summed kernels and each event's ``extra`` by index.
    """
    if not events:
        raise ValueError("no events to run")
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        workers = n_workers or min(len(events), os.cpu_count() or 1)
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None
        )
    client = Client(scheduler or cluster)
    try:
        futures = {
            client.submit(_guarded, task, event, pure=False): i for i, event in enumerate(events)
        }
        return _gather(futures, as_completed(futures, with_results=False), progress)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _gather(futures: dict, completed, progress: bool) -> EventsResult:
    result = EventsResult(total={})
    failures: dict[int, BaseException] = {}
    bar = tqdm(total=len(futures), desc="events", unit="event", disable=not progress)
    for future in completed:
        index = futures[future]
        try:
            ok, value = future.result()
        except Exception as err:  # noqa: BLE001 - a lost worker: keep the other events' work
            ok, value = False, err
        if ok:
            kernels, extra = value
            _accumulate(result.total, kernels)
            result.per_event[index] = extra
        else:
            failures[index] = value
        bar.update(1)
    bar.close()
    if failures:
        raise EventsFailed(dict(sorted(failures.items())), result)
    return result


def _describe(error: BaseException) -> str:
    """An input error's message as it is; other errors with their type (a crash)."""
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _guarded(task, event) -> tuple[bool, Any]:
    """(True, task(event)) or (False, the exception): a task that returns its error instead of
    raising it, so Dask's workers do not log a traceback for what is a user's mistake; the
    error reaches the caller in :class:`EventsFailed`."""
    try:
        return True, task(event)
    except Exception as err:  # noqa: BLE001 - reported per event by _gather
        return False, err


def _accumulate(total: dict[str, np.ndarray], kernels: KernelSet) -> None:
    for name, kernel in kernels.items():
        if name in total:
            if total[name].shape != kernel.shape:
                raise ValueError(
                    f"kernel {name!r} has shape {kernel.shape}, expected "
                    f"{total[name].shape}: events must share one grid"
                )
            total[name] = total[name] + kernel
        else:
            total[name] = np.array(kernel, dtype=np.float64)
