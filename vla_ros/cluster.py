"""Episodes on a Ray cluster: `vla-ros eval --ray` and `vla-ros data generate --ray` fan out here.

One actor per CPU the cluster offers (each holds its own workcell and, for evaluation, its own policy), episodes
handed out as Ray tasks, results returned in episode order: each episode depends on its seed only, so the output
is the one a local run gives. Every node needs vla_ros installed and the same files (policy, data) at the same
paths. Ray's own transport between its processes uses pickle: a cluster is a set of machines that trust each
other; robots reach the policy server only through `vla-ros serve`'s websocket, never through Ray.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from typing import Iterator, Sequence


@contextmanager
def ray_cluster(address: str):
    """Ray, joined at `address` ('auto', 'host:port', 'ray://…') or started here ('local'); shut down after."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        yield ray
        return
    options = {"address": address, "include_dashboard": False, "logging_level": logging.WARNING}
    if address != "local":  # workers on other machines get the rendering backend this process uses
        options["runtime_env"] = {"env_vars": {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}}
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionError(f"cannot use the Ray cluster at {address!r}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def ordered_results(actor_class, init_args: Sequence, calls: Sequence[tuple], *, method: str,
                    cpus_per_actor: float = 1.0) -> Iterator:
    """`actor.method(*call)` for every call, in the calls' order, over one `actor_class(*init_args)` per CPU."""
    import ray  # noqa: PLC0415
    from ray.util import ActorPool  # noqa: PLC0415

    if not calls:
        return
    cpus = ray.cluster_resources().get("CPU", 1.0)
    count = max(1, min(len(calls), math.floor(cpus / cpus_per_actor)))
    remote_class = ray.remote(num_cpus=cpus_per_actor)(actor_class)
    actors = [remote_class.remote(*init_args) for _ in range(count)]
    try:
        yield from ActorPool(actors).map(lambda actor, call: getattr(actor, method).remote(*call), list(calls))
    finally:
        for actor in actors:
            ray.kill(actor)
