"""TCP ports on this machine: whether a server can listen on one, and a free one for tools and tests."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Below Linux's default ephemeral range (32768–60999), where the kernel picks the ports of outgoing connections and
# of servers that bind port 0 (Ray's and gRPC's among them), and above Ray's worker ports (10002–19999).
QUIET_PORTS = (20000, 32767)


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on host:port now, or None.

    A plain bind with SO_REUSEADDR, as asyncio's and uvicorn's servers do (closed connections in TIME_WAIT do not
    count), and without SO_REUSEPORT: a listener that would share the port through SO_REUSEPORT is reported too.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "0.0.0.0", rng: random.Random | None = None) -> int:
    """A port nothing listens on, outside the range the kernel hands out by itself.

    A port from bind(port 0) is free only until the kernel gives it to the next outgoing connection or port-0
    server (a Ray cluster starting takes dozens); one from `QUIET_PORTS` stays free until someone asks for it.
    """
    rng = rng or random.SystemRandom()
    low, high = _ephemeral_range()
    candidates = [p for p in range(*QUIET_PORTS) if not low <= p <= high]
    for port in rng.sample(candidates, min(200, len(candidates))):
        if bind_error(host, port) is None:
            return port
    raise OSError(f"no free port in {QUIET_PORTS[0]}–{QUIET_PORTS[1]}")
