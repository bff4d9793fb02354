"""`vla-ros say`: publish one instruction and report what the instruction listener made of it."""

from __future__ import annotations

import argparse
import sys
import time

from vla_ros.core import topics


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "say",
        help="publish one instruction on /vla/instruction",
        description="Publish one instruction on /vla/instruction, wait until a subscriber has matched, and print "
        "what the instruction listener made of it (the accepted task, or the reason it was rejected).",
    )
    parser.add_argument("text", help='the instruction, e.g. "pick up the red block" (or "stop")')
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a subscriber (default 10)")
    parser.add_argument(
        "--no-confirm", action="store_true", help="only publish; do not wait for the listener's answer"
    )
    parser.set_defaults(func=_say)


def _say(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("vla-ros say: --timeout must be a positive number of seconds", file=sys.stderr)
        return 2
    return say(args.text, args.timeout, confirm=not args.no_confirm)


def say(text: str, timeout_s: float, confirm: bool) -> int:
    import rclpy  # noqa: PLC0415 - keep `vla-ros --help` fast
    from rclpy.duration import Duration  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from vla_ros.nodes.qos import COMMANDS, LATCHED  # noqa: PLC0415

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("vla_ros_say", context=context, start_parameter_services=False)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    replies: list[tuple[str, str]] = []
    try:
        publisher = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        if confirm:
            node.create_subscription(String, topics.TASK, lambda m: replies.append(("task", m.data)), LATCHED)
            node.create_subscription(
                String, topics.INSTRUCTION_REJECTED, lambda m: replies.append(("rejected", m.data)), COMMANDS
            )
        deadline = time.monotonic() + timeout_s
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print(
                    f"vla-ros say: no subscriber on {topics.INSTRUCTION} after {timeout_s:.0f} s; is the graph running "
                    f"(vla-ros launch …) in this ROS_DOMAIN_ID?",
                    file=sys.stderr,
                )
                return 1
            executor.spin_once(timeout_sec=0.05)
        if confirm:
            # The latched task arrives first; whatever comes after our message is the listener's answer.
            settle = time.monotonic() + min(2.0, timeout_s)
            while not replies and time.monotonic() < settle:
                executor.spin_once(timeout_sec=0.05)
            replies.clear()
        publisher.publish(String(data=text))
        if not publisher.wait_for_all_acked(Duration(seconds=max(0.1, deadline - time.monotonic()))):
            print("vla-ros say: the instruction was sent but not acknowledged by every subscriber", file=sys.stderr)
            return 1
        if not confirm:
            print(f"sent: {text!r}")
            return 0
        while not replies and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        if not replies:
            print(f"sent: {text!r} (no answer from instruction_listener within {timeout_s:.0f} s)")
            return 0
        kind, value = replies[0]
        if kind == "rejected":
            print(f"rejected: {value}", file=sys.stderr)
            return 3
        print(f"accepted: task '{value}'" if value else "accepted: stop (the task is now idle)")
        return 0
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
