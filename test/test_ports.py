"""Whether a server can listen on a port, and the free ports tools and tests take."""

from __future__ import annotations

import errno
import socket

from vla_ros.core.ports import QUIET_PORTS, bind_error, free_port
from vla_ros.serving.runner import port_taken


def listener(port: int, *, family=socket.AF_INET, host="127.0.0.1", reuse_port=False, reuse_address=False):
    sock = socket.socket(family, socket.SOCK_STREAM)
    if reuse_address:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen()
    return sock


def test_a_free_port_is_outside_the_kernels_own_range_and_can_be_listened_on():
    low, high = (int(v) for v in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    ports = {free_port() for _ in range(5)}
    for port in ports:
        assert QUIET_PORTS[0] <= port <= QUIET_PORTS[1] and not low <= port <= high
        listener(port, host="0.0.0.0").close()


def test_a_port_someone_listens_on_is_reported_even_one_they_would_share():
    port = free_port()
    assert bind_error("0.0.0.0", port) is None and port_taken("0.0.0.0", port) is None
    # A gRPC server's way of listening: every address, IPv6 with IPv4 mapped, SO_REUSEPORT. A replica's own listener
    # (SO_REUSEPORT too) would bind beside it without an error and the two would split the connections.
    with listener(port, family=socket.AF_INET6, host="::", reuse_port=True):
        assert bind_error("0.0.0.0", port).errno == errno.EADDRINUSE
        assert port_taken("0.0.0.0", port) == (f"port {port} on 0.0.0.0 is in use by another program; stop it or "
                                               "choose another --port")
    with listener(port):
        assert "is in use" in port_taken("0.0.0.0", port)
    assert port_taken("0.0.0.0", port) is None  # free again once closed


def test_a_closed_connection_does_not_hold_the_port():
    """A server restarted at once finds its port free (asyncio's and uvicorn's servers set SO_REUSEADDR)."""
    port = free_port()
    server = listener(port, reuse_address=True)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end waits in TIME_WAIT
    client.close()
    server.close()
    assert port_taken("127.0.0.1", port) is None


def test_an_address_not_on_this_machine_is_named():
    assert port_taken("192.0.2.123", free_port()) == "--host 192.0.2.123 is not an address of this machine"
