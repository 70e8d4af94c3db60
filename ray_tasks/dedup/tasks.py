"""Map tasks over the input's row groups, on Ray or in this process, results in submission order.

``executor.map_batches`` maps over a table the driver holds; the dedup map tasks instead get
a few row numbers each and read their own rows (``source.py``), so the driver never holds
the content. Ray's own task API does the work; this adds only backpressure (at most
``2 x CPUs`` tasks in flight, so finished results do not pile up while more tasks queue)
and a callback per finished task (progress).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

def submit(fn: Callable, calls: Sequence[tuple], use_ray: bool, *, num_returns: int = 1,
           on_done: Callable[[int], None] | None = None) -> list[Any]:
    """``fn(*args)`` for each ``args`` of ``calls``: results in this process, object refs on Ray
    (a list of ``num_returns`` refs per call when it is above 1). ``on_done(i)`` runs when call
    ``i`` has finished (progress)."""
    on_done = on_done or (lambda _: None)
    if not use_ray:
        out = []
        for i, args in enumerate(calls):
            out.append(fn(*args))
            on_done(i)
        return out
    import ray

    remote = ray.remote(fn).options(num_returns=num_returns)
    max_in_flight = 2 * max(1, int(ray.cluster_resources().get("CPU", 2)))
    out, in_flight, index = [], [], {}

    def wait_one() -> None:
        nonlocal in_flight
        ready, in_flight = ray.wait(in_flight, num_returns=1)
        for ref in ready:
            on_done(index.pop(ref))

    for i, args in enumerate(calls):
        if len(in_flight) >= max_in_flight:
            wait_one()
        out.append(remote.remote(*args))
        in_flight.append(out[-1][0] if num_returns > 1 else out[-1])
        index[in_flight[-1]] = i
    while in_flight:
        wait_one()
    return out


def gather(results: list[Any], use_ray: bool) -> list[Any]:
    """The values of ``submit``'s results (fetched from Ray's object store on Ray)."""
    if not use_ray:
        return results
    import ray

    return ray.get(results)
