"""Headless Chromium driven over the DevTools protocol: open a page, take screenshots until one looks ready.

Chromium's own --screenshot flag fires before a WebGL page has drawn, so the page is opened over the DevTools
websocket and a screenshot is taken every second until `ready(image)` holds. Used by the viewer's browser test
and by benchmarks/bench_viewer.py (its cost with a browser watching, and the README's screenshot).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
from sessions import kill_session

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--hide-scrollbars", "--mute-audio",
         # SwiftShader can take seconds per frame on two busy cores; the GPU watchdog would kill it and the page
         "--disable-gpu-watchdog",
         # shared memory through files in /tmp, not /dev/shm (which the suite's DDS participants fill with segments)
         "--disable-dev-shm-usage")


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class HeadlessChromium:
    """A headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 1000):
        self._start(width, height)

    def _start(self, width: int, height: int) -> None:
        executable = chromium_path()
        if executable is None:
            raise FileNotFoundError("chromium is not installed (make setup installs it)")
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="vla_ros_chromium_")
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        self._socket = None
        self._sockets = contextlib.ExitStack()
        self._id = 0
        self.console: list[str] = []  # the page's console messages and uncaught errors, for a failing test to show

    def _page_socket(self):
        if self._socket is None:
            from websockets.sync.client import connect

            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as answer:
                targets = json.loads(answer.read())
            page = next(t for t in targets if t.get("type") == "page")
            self._socket = self._sockets.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None,
                                                               open_timeout=10))
        return self._socket

    def call(self, method: str, **params) -> dict:
        """One DevTools command; returns its result (events in between are skipped)."""
        socket = self._page_socket()
        self._id += 1
        socket.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(socket.recv(timeout=60))
            self._note_event(reply)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _note_event(self, reply: dict) -> None:
        method, params = reply.get("method"), reply.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") != "debug":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {' | '.join(text.splitlines()[:2])[:300]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") != "verbose":
            entry = params.get("entry", {})
            self.console.append(f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".rstrip())
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")

    def open(self, url: str) -> None:
        self.url = url
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=url)

    def reopen(self) -> None:
        """After the page went away (it can, under SwiftShader on busy cores): a fresh browser and load. A new tab or
        a new DevTools connection to the old one answers every screenshot with "Not attached to an active page"."""
        console = self.console
        self.close()
        self._start(self.width, self.height)
        self.console = console
        self.open(self.url)

    def screenshot(self) -> np.ndarray:
        """The page as RGB uint8 [H, W, 3]."""
        import imageio.v3 as iio

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(iio.imread(io.BytesIO(data), extension=".png"))[..., :3]

    def wait_for(self, ready: Callable[[np.ndarray], bool], timeout_s: float) -> tuple[np.ndarray, float]:
        """Screenshots every second until `ready` holds: (the last screenshot, seconds waited)."""
        started, image, failing_since = time.monotonic(), None, None
        while True:
            try:
                image = self.screenshot()
                failing_since = None
            except Exception:  # noqa: BLE001 - a page not attached yet, or gone: wait, then open it again
                # Right after a navigation the page answers "Not attached to an active page" for a fraction of a
                # second; only a page that keeps failing is reloaded in a fresh browser.
                now = time.monotonic()
                if now - started > timeout_s:
                    raise
                failing_since = failing_since or now
                time.sleep(0.5)
                if now - failing_since > 20:
                    self.reopen()
                    failing_since = None
                continue
            if ready(image) or time.monotonic() - started > timeout_s:
                return image, time.monotonic() - started
            time.sleep(1.0)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a socket to a crashed page may fail to close
            self._sockets.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        kill_session(self.process.pid, grace_s=5)  # its renderer, GPU and zygote processes may still write there
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "HeadlessChromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_png(image: np.ndarray, path: Path) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, image)
