"""`vla-ros demo` (what `make demo` runs): start the graph, give it an instruction and a camera frame, show the result.

Today's graph is the input half (instruction_listener + camera_ingest); the closed-loop demo replaces this
once the policy, executor and simulated arm are in the graph.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from vla_ros.core import topics


def register(subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the main job: start the graph, send an instruction and a frame, print what came out",
        description="Start the `inputs` graph (instruction_listener, camera_ingest) as separate processes, send it "
        "an instruction and a camera frame over ROS 2, print the accepted task and the model-size image it "
        "produced, save that image, and stop the graph.",
    )
    demo.add_argument("--instruction", default="Pick up the red block", help="the instruction to send")
    demo.add_argument("--out", default="runs/demo", help="folder for the saved images (default runs/demo)")
    demo.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each step (default 30)")
    demo.set_defaults(func=_demo)


def _camera_frame() -> tuple[np.ndarray, str]:
    """A camera view of the simulated workcell when the simulator is installed, else a test pattern."""
    try:
        from vla_ros.sim.workcell import Workcell  # noqa: PLC0415

        cell = Workcell(image_size=480)
        cell.reset(seed=0)
        return cell.render(), "simulated workcell camera (480x480)"
    except Exception as exc:  # noqa: BLE001 - the demo still shows the pipeline without the simulator
        pattern = np.zeros((480, 640, 3), np.uint8)
        pattern[:, :, 0] = np.linspace(0, 255, 640, dtype=np.uint8)
        pattern[:, :, 1] = np.linspace(0, 255, 480, dtype=np.uint8)[:, None]
        return pattern, f"test pattern 640x480 (simulator unavailable: {exc})"


def _demo(args) -> int:
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
    from sensor_msgs.msg import Image  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from vla_ros.core.image_msgs import image_to_rgb8, rgb8_fields  # noqa: PLC0415
    from vla_ros.nodes.qos import COMMANDS, LATCHED, SENSOR, SENSOR_LATEST  # noqa: PLC0415

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("[demo] starting the graph: vla-ros launch inputs", flush=True)
    graph = subprocess.Popen(
        [sys.executable, "-m", "vla_ros.cli", "launch", "inputs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    threading.Thread(target=lambda: [print(f"  {line}", end="", flush=True) for line in graph.stdout],
                     daemon=True).start()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("vla_ros_demo", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    tasks, images, rejections = [], [], []
    node.create_subscription(String, topics.TASK, tasks.append, LATCHED)
    node.create_subscription(String, topics.INSTRUCTION_REJECTED, rejections.append, COMMANDS)
    node.create_subscription(Image, topics.MODEL_IMAGE, images.append, SENSOR_LATEST)
    instruction_pub = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    camera_pub = node.create_publisher(Image, topics.CAMERA_IMAGE, SENSOR)

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + args.timeout
        while not predicate():
            if graph.poll() is not None:
                raise RuntimeError(f"the graph exited (code {graph.returncode}) while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {args.timeout:.0f} s waiting for {what}")
            executor.spin_once(timeout_sec=0.05)

    try:
        wait(lambda: instruction_pub.get_subscription_count() and camera_pub.get_subscription_count() and tasks
             and node.count_publishers(topics.MODEL_IMAGE), "the nodes to come up")
        print(f"[demo] graph is up; current task: '{tasks[-1].data}' (idle)", flush=True)
        count = len(tasks)
        print(f"[demo] instruction  → {topics.INSTRUCTION}: {args.instruction!r}", flush=True)
        instruction_pub.publish(String(data=args.instruction))
        wait(lambda: len(tasks) > count or rejections, "the instruction listener's answer")
        if rejections:
            print(f"[demo] rejected: {rejections[-1].data}")
            return 1
        print(f"[demo] accepted task on {topics.TASK}: '{tasks[-1].data}'", flush=True)

        frame, source = _camera_frame()
        fields = rgb8_fields(frame)
        msg = Image(height=fields.height, width=fields.width, encoding="bgr8", step=fields.step,
                    data=np.ascontiguousarray(frame[..., ::-1]).tobytes())
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "demo_camera"
        print(f"[demo] camera frame → {topics.CAMERA_IMAGE}: {source}, sent as bgr8", flush=True)
        camera_pub.publish(msg)
        wait(lambda: images, "the preprocessed frame on /vla/image")
        model_image = image_to_rgb8(images[-1])
        latency_ms = (node.get_clock().now().nanoseconds - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6
        import cv2  # noqa: PLC0415

        cv2.imwrite(str(out / "camera_frame.png"), frame[..., ::-1])
        cv2.imwrite(str(out / "model_input.png"), model_image[..., ::-1])
        print(
            f"[demo] model input on {topics.MODEL_IMAGE}: {images[-1].width}x{images[-1].height} "
            f"{images[-1].encoding}, same stamp: "
            f"{(images[-1].header.stamp.sec, images[-1].header.stamp.nanosec) == (msg.header.stamp.sec, msg.header.stamp.nanosec)}"
            f", received {latency_ms:.0f} ms after the frame's stamp",
            flush=True,
        )
        print(f"[demo] saved {out / 'camera_frame.png'} and {out / 'model_input.png'}", flush=True)
        instruction_pub.publish(String(data="stop"))
        wait(lambda: tasks[-1].data == "", "the stop request")
        print("[demo] 'stop' → the task is idle again. Demo finished.", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"[demo] failed: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if graph.poll() is None:
            graph.send_signal(signal.SIGINT)
        try:
            graph.wait(timeout=20)
        except subprocess.TimeoutExpired:
            graph.kill()
