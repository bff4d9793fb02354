"""Where the view goes: rerun's web viewer served on localhost (the default without a display), its native viewer
(with a display), or an .rrd file. Every way it cannot start is one `ViewerError` sentence, raised before
anything is logged; the graph never depends on it (the viewer only subscribes).
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from vla_ros.core.ports import bind_error
from vla_ros.core.settings import Settings, one_of, setting

VIEWER_MODES = ("auto", "web", "native", "file")


class ViewerError(RuntimeError):
    """The viewer cannot start as asked; the message is one sentence naming the input and what would work."""


def _port(value) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a TCP port 1..65535, got {value}"


@dataclass(frozen=True)
class ViewerSettings(Settings):
    """The viewer's settings: `vla-ros view` options and the viewer node's parameters."""

    viewer: str = setting("auto", "Where to show: web (rerun's web viewer on localhost), native (rerun's own "
                          "window; needs a display), file (write save_path) or auto (native with a display, else "
                          "web).", check=one_of(*VIEWER_MODES))
    web_port: int = setting(9090, "Port of the web viewer's page (http://localhost:PORT).", check=_port)
    grpc_port: int = setting(9876, "Port the viewer's data is served on (rerun's gRPC server).", check=_port)
    open_browser: bool = setting(False, "Open the web viewer in the default browser.")
    memory_limit: str = setting("1GiB", "Data the server keeps for late viewers before dropping the oldest.")
    save_path: str = setting("", "The .rrd file written with viewer:=file.")
    max_image_rate: float = setting(10.0, "Camera frames per second logged at most (0 = every frame).",
                                    check=lambda v: None if v >= 0 else f"must be >= 0, got {v}")
    joint_period: float = setting(0.1, "Seconds between arm poses and joint plot points logged (joint states come "
                                  "at 50 Hz; a web viewer rendering in software falls behind at more).",
                                  check=lambda v: None if v >= 0 else f"must be >= 0, got {v}")


@dataclass(frozen=True)
class ViewerEndpoint:
    mode: str  # web | native | file
    where: str  # the page to open, the viewer's address, or the file

    def describe(self) -> str:
        if self.mode == "web":
            return f"open {self.where} in a browser"
        if self.mode == "native":
            return f"showing in rerun's viewer ({self.where})"
        return f"writing {self.where} (open it with `rerun {self.where}`)"


def display_available() -> bool:
    """Whether a native window can open: X11 or Wayland on Linux; macOS and Windows always have a screen."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def port_in_use(port: int) -> bool:
    """True when something already listens on `port` (any local address)."""
    error = bind_error("0.0.0.0", port)
    return error is not None and error.errno in (errno.EADDRINUSE, errno.EACCES)


def resolve_mode(settings: ViewerSettings) -> str:
    if settings.viewer == "auto":
        return "native" if display_available() else "web"
    return settings.viewer


def check_viewer(settings: ViewerSettings) -> str:
    """The mode to use, after checking the display, the ports or the file; raises ViewerError."""
    mode = resolve_mode(settings)
    if mode == "native" and not display_available():
        raise ViewerError("there is no display for the native viewer (DISPLAY and WAYLAND_DISPLAY are unset); use "
                          "the web viewer instead (--viewer web, then open the printed address)")
    if mode == "web":
        if settings.web_port == settings.grpc_port:
            raise ViewerError(f"the web port and the data port are both {settings.web_port}; give two different ports")
        for name, port in (("web", settings.web_port), ("data", settings.grpc_port)):
            if port_in_use(port):
                option = "--web-port" if name == "web" else "--grpc-port"
                raise ViewerError(f"the viewer's {name} port {port} is in use (another viewer?); choose a free one "
                                  f"with {option}")
    if mode == "native" and port_in_use(settings.grpc_port):
        raise ViewerError(f"the viewer's data port {settings.grpc_port} is in use (another viewer?); choose a free one "
                          "with --grpc-port")
    if mode == "file":
        if not settings.save_path:
            raise ViewerError("the file viewer needs a path to write (--save FILE.rrd)")
        parent = Path(settings.save_path).expanduser().resolve().parent
        if not parent.is_dir():
            raise ViewerError(f"cannot write {settings.save_path}: the folder {parent} does not exist")
    return mode


def start_viewer(stream, settings: ViewerSettings, blueprint=None) -> ViewerEndpoint:
    """Attach `stream` (a rerun RecordingStream) to the viewer `settings` ask for; raises ViewerError."""
    import rerun as rr  # noqa: PLC0415

    mode = check_viewer(settings)
    if mode == "file":
        path = str(Path(settings.save_path).expanduser())
        stream.save(path, default_blueprint=blueprint)
        return ViewerEndpoint("file", path)
    if mode == "native":
        try:
            stream.spawn(port=settings.grpc_port, memory_limit=settings.memory_limit, default_blueprint=blueprint)
        except Exception as exc:  # noqa: BLE001 - rerun raises several kinds for one cause: the viewer did not start
            raise ViewerError(f"rerun's native viewer did not start ({exc}); use the web viewer (--viewer web)") from None
        return ViewerEndpoint("native", f"rerun+http://127.0.0.1:{settings.grpc_port}/proxy")
    try:
        grpc_url = stream.serve_grpc(grpc_port=settings.grpc_port, default_blueprint=blueprint,
                                     server_memory_limit=settings.memory_limit)
        rr.serve_web_viewer(web_port=settings.web_port, open_browser=settings.open_browser, connect_to=grpc_url)
    except Exception as exc:  # noqa: BLE001 - a port taken between the check and here, say
        raise ViewerError(f"rerun's web viewer did not start on ports {settings.web_port}/{settings.grpc_port} "
                          f"({exc}); choose other ports with --web-port and --grpc-port") from None
    return ViewerEndpoint("web", web_page(settings.web_port, grpc_url))


def web_page(web_port: int, grpc_url: str) -> str:
    """The web viewer's address with the data source in it (the page then connects by itself)."""
    return f"http://localhost:{web_port}/?url={quote(grpc_url, safe='')}"
