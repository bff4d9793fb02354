"""A small openpi-protocol policy server for the fault tests: answers with a known motion, or with one fault.

    python test/remote_fault_server.py --port P [--mode MODE | --mode-file FILE] [--api-key-file F]

Modes: good (a small sideways motion, alternating direction per reply so the arm stays near home), slow (good,
but each reply 2 s late), wrong_shape ([8, 6]), nan, joint_space (declares joint_position), big_deltas (0.5 m
steps: not end-effector deltas), stale (echoes another observation's stamp), error (a text error per request).
With --mode-file the mode is read from that file for every request, so a test switches faults without breaking
the connection. It prints "listening" once the socket is open. Written with the project's protocol module and `websockets`, not
Ray: the faults are what matters here, and it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import numpy as np
from websockets.asyncio.server import serve

from vla_ros.serving import protocol
from vla_ros.serving.security import key_digest, key_matches, read_api_key

MODES = ("good", "slow", "wrong_shape", "nan", "joint_space", "big_deltas", "stale", "error")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="good")
    parser.add_argument("--mode-file", default="")
    parser.add_argument("--api-key-file", default="")
    args = parser.parse_args()
    digest = key_digest(read_api_key(args.api_key_file)) if args.api_key_file else None
    replies = 0

    def check_key(connection, request):
        if digest is not None and not key_matches(request.headers.get("Authorization"), digest):
            return connection.respond(401, "API key missing or wrong\n")
        return None

    async def session(websocket):
        nonlocal replies
        await websocket.send(protocol.pack({"vla_ros/protocol": protocol.PROTOCOL_VERSION,
                                            "vla_ros/image_size": 64, "vla_ros/identity": "00000000000000fa"}))
        async for message in websocket:
            request = protocol.parse_observation(protocol.unpack(message))
            replies += 1
            mode = args.mode
            if args.mode_file:
                with open(args.mode_file, encoding="utf-8") as f:
                    mode = f.read().strip() or args.mode
            actions = np.zeros((8, 7), np.float32)
            actions[:, 1] = 0.004 if replies % 2 else -0.004
            actions[:, 6] = 1.0
            stamp, space = request.stamp_ns, "ee_delta"
            if mode == "error":
                await websocket.send(protocol.error_text("the policy is not loaded"))
                continue
            if mode == "slow":
                await asyncio.sleep(2.0)
            elif mode == "wrong_shape":
                actions = actions[:, :6]
            elif mode == "nan":
                actions[2, 0] = np.nan
            elif mode == "joint_space":
                space = "joint_position"
            elif mode == "big_deltas":
                actions[:, 0] = 0.5
            elif mode == "stale":
                stamp = (stamp or 0) - 1_000_000_000
            await websocket.send(protocol.pack(protocol.reply_message(actions, stamp_ns=stamp, action_space=space,
                                                                      timing={"infer_ms": 0.1})))

    async def run():
        async with serve(session, "127.0.0.1", args.port, process_request=check_key, compression=None):
            print("listening", flush=True)
            await asyncio.Future()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
