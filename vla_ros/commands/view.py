"""`vla-ros view`: watch a running graph, or a bag, in rerun (web viewer on localhost, or the native viewer)."""

from __future__ import annotations

import argparse
import sys
import time

from vla_ros.commands.argument_types import non_negative_float


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "view",
        help="watch the graph (or a bag) live in rerun: camera, arm, chunks, vetoes, plots",
        description="Show what the robot sees and intends in rerun: camera frames, the instruction and plan, the arm "
        "and the current chunk's end-effector path in 3-D, joint and command plots, vetoes on the timeline and each "
        "node's latency from /diagnostics. Without --bag it subscribes to the running graph (same ROS_DOMAIN_ID); "
        "it only listens, so the graph is unaffected whether the viewer runs, fails or stops. The web viewer is "
        "served on localhost (open the printed address); with a display, the native viewer opens instead.",
    )
    parser.add_argument("--bag", default=None, metavar="BAG",
                        help="show a recorded or replayed bag (directory, .mcap or .db3) instead of the live graph")
    parser.add_argument("--viewer", choices=("auto", "web", "native"), default="auto",
                        help="web: serve rerun's web viewer on localhost; native: rerun's own window (needs a "
                        "display); auto (default): native with a display, else web")
    parser.add_argument("--save", default=None, metavar="FILE.rrd",
                        help="write the recording to this file instead of showing it (open later with `rerun FILE`)")
    parser.add_argument("--web-port", type=int, default=9090, help="port of the web viewer's page (default 9090)")
    parser.add_argument("--grpc-port", type=int, default=9876, help="port the data is served on (default 9876)")
    parser.add_argument("--open-browser", action="store_true", help="open the web viewer in the default browser")
    parser.add_argument("--max-image-rate", type=non_negative_float, default=10.0,
                        help="camera frames per second shown at most (default 10; 0 = all)")
    parser.add_argument("--memory-limit", default="1GiB",
                        help="data kept for viewers before the oldest is dropped (default 1GiB)")
    parser.set_defaults(func=_view)


def _settings(args: argparse.Namespace):
    from vla_ros.core.settings import SettingsError, build_settings  # noqa: PLC0415
    from vla_ros.viewer.server import ViewerSettings  # noqa: PLC0415

    values = {"viewer": "file" if args.save else args.viewer, "web_port": args.web_port, "grpc_port": args.grpc_port,
              "open_browser": args.open_browser, "memory_limit": args.memory_limit, "save_path": args.save or "",
              "max_image_rate": args.max_image_rate}
    try:
        return build_settings(ViewerSettings, values)
    except SettingsError as exc:
        raise SystemExit(f"vla-ros view: {exc}")


def _view(args: argparse.Namespace) -> int:
    from vla_ros.viewer.server import ViewerError, check_viewer  # noqa: PLC0415

    settings = _settings(args)
    try:
        check_viewer(settings)
    except ViewerError as exc:
        print(f"vla-ros view: {exc}", file=sys.stderr)
        return 2
    if args.bag is not None:
        return _view_bag(args.bag, settings)
    from vla_ros.nodes.viewer import main as viewer_main  # noqa: PLC0415

    parameters = []
    for name in ("viewer", "web_port", "grpc_port", "open_browser", "memory_limit", "save_path", "max_image_rate"):
        value = getattr(settings, name)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if text:
            parameters += ["-p", f"{name}:={text}"]
    return viewer_main(["vla-ros-view", "--ros-args", *parameters])


def _view_bag(bag: str, settings) -> int:
    from vla_ros.bags.errors import BagError  # noqa: PLC0415
    from vla_ros.bags.reading import BagReader  # noqa: PLC0415
    from vla_ros.robot.urdf import load_robot  # noqa: PLC0415
    from vla_ros.viewer.bag import log_bag, viewable_topics  # noqa: PLC0415
    from vla_ros.viewer.feed import ViewerFeed  # noqa: PLC0415
    from vla_ros.viewer.recording import ViewerRecording, blueprint, new_stream  # noqa: PLC0415
    from vla_ros.viewer.server import ViewerError, start_viewer  # noqa: PLC0415

    try:
        with BagReader(bag) as reader:  # every problem with the bag before a viewer starts
            viewable_topics(reader)
    except BagError as exc:
        print(f"vla-ros view: {exc}", file=sys.stderr)
        return 2
    stream = new_stream()
    try:
        endpoint = start_viewer(stream, settings, blueprint())
    except ViewerError as exc:
        print(f"vla-ros view: {exc}", file=sys.stderr)
        return 2
    feed = ViewerFeed(ViewerRecording(stream, load_robot(), joint_period_s=settings.joint_period),
                      settings.max_image_rate)
    try:
        counts = log_bag(bag, feed, on_warning=lambda text: print(f"vla-ros view: {text}", file=sys.stderr))
    except BagError as exc:
        print(f"vla-ros view: {exc}", file=sys.stderr)
        return 2
    stream.flush()
    if endpoint.mode == "file":
        stream.disconnect()  # closes the file with its footer
    shown = ", ".join(f"{topic} {count}" for topic, count in counts.items())
    print(f"vla-ros view: {bag}: {sum(counts.values())} messages ({shown}); {endpoint.describe()}")
    if endpoint.mode != "web":
        return 0
    print("vla-ros view: serving until Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
