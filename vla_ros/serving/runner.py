"""Starting and stopping the Ray cluster and Serve application that `vla-ros serve` runs."""

from __future__ import annotations

import errno
import logging
import signal
import threading
from dataclasses import dataclass

from vla_ros.core.ports import bind_error
from vla_ros.serving.deployment import APP_NAME, ScalingOptions, ServerConfig, policy_application


@dataclass(frozen=True)
class Endpoint:
    host: str = "0.0.0.0"
    port: int = 8000
    tls_cert: str = ""
    tls_key: str = ""

    @property
    def scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"

    def url(self, host: str | None = None) -> str:
        shown = host or ("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host)
        return f"{self.scheme}://{shown}:{self.port}"


def port_taken(host: str, port: int) -> str | None:
    """Why robots could not be served on host:port on this machine, or None when it is free.

    Checked before Ray starts. The replicas' own listeners set SO_REUSEPORT so that several replicas of a host share
    the port, and the kernel would then also let them share it silently with another server already listening there
    (a second `vla-ros serve`, a gRPC server), splitting the connections between the two.
    """
    error = bind_error(host, port)
    if error is None:
        return None
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use by another program; stop it or choose another --port"
    if error.errno == errno.EACCES:
        return f"port {port} needs privileges this user does not have; choose a port above 1023"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine"
    return f"cannot listen on {host}:{port}: {error.strerror}"


class RunningServer:
    """Ray (joined or started here) with the policy application deployed; `stop()` undoes what was started."""

    def __init__(self, config: ServerConfig, scaling: ScalingOptions, endpoint: Endpoint, *, address: str = "",
                 temp_dir: str = ""):
        import ray  # noqa: PLC0415
        from ray import serve  # noqa: PLC0415

        self.started_cluster = not address
        init = {"address": address or "local", "include_dashboard": False, "logging_level": logging.WARNING,
                "namespace": "vla_ros"}
        if self.started_cluster and temp_dir:
            init["_temp_dir"] = temp_dir
        ray.init(**init)
        if scaling.gpus_per_replica < 0:  # "auto": a GPU per replica when the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            scaling = ScalingOptions(**{**scaling.__dict__, "gpus_per_replica": gpus})
        self.scaling = scaling
        http = {"host": endpoint.host, "port": endpoint.port}
        if endpoint.tls_cert:
            http.update(ssl_certfile=endpoint.tls_cert, ssl_keyfile=endpoint.tls_key)
        try:
            if config.front == "replica":  # the replicas listen themselves: no Serve proxy on the port
                serve.start(proxy_location="Disabled")
            else:
                serve.start(http_options=http)
            serve.run(policy_application(config, scaling), name=APP_NAME, route_prefix="/", blocking=False)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        import ray  # noqa: PLC0415
        from ray import serve  # noqa: PLC0415

        try:
            if self.started_cluster:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)  # a joined cluster keeps Serve and its other applications
        finally:
            ray.shutdown()


def wait_for_stop() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
