"""openpi's websocket policy protocol, as plain functions: the msgpack-numpy codec, requests, replies and checks.

The wire format is openpi's (`openpi_client.websocket_client_policy` and `openpi.serving.websocket_policy_server`):

- the client connects (optionally with the header `Authorization: Api-Key <key>`) and the server first sends a
  metadata map;
- then each binary message from the client is one observation map (`observation/image` uint8 [H, W, 3],
  `observation/state`, `prompt`), and the server answers it with one binary message
  `{"actions": float32 [H, D], "server_timing": {...}}`;
- a text message from the server is an error (openpi sends a traceback there; this server one sentence).

Messages are msgpack; a numpy array travels as the map `{b"__ndarray__": True, b"data": bytes, b"dtype": str,
b"shape": [...]}` and a numpy scalar as `{b"__npgeneric__": True, b"data": value, b"dtype": str}`. Decoding here
accepts booleans, integers and floats only (no object, structured or void dtypes: nothing is ever unpickled)
and checks each array's byte count against its shape.

vla_ros's extras travel under `vla_ros/…` keys, which other servers and clients ignore: the observation stamp
(echoed, so a reply is matched to its observation), sampling temperature, the plan flag and the frame's time in
the task; in the reply the action tokens, the tokenizer identity and the plan text. No rclpy, torch or Ray here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgpack
import numpy as np

from vla_ros.core.action_chunks import ACTION_NAMES, ACTION_SPACES, EE_DELTA, JOINT_POSITION
from vla_ros.core.instruction import DEFAULT_MAX_CHARS, normalize_instruction
from vla_ros.robot.wx250s import JOINT_LIMITS

PROTOCOL_VERSION = 1
IMAGE, STATE, PROMPT = "observation/image", "observation/state", "prompt"
IMAGE_JPEG = "vla_ros/image_jpeg"
STAMP, TEMPERATURE, PLAN, FRAME_TIME = "vla_ros/stamp_ns", "vla_ros/temperature", "vla_ros/plan", "vla_ros/frame_time_s"
ACTIONS, SERVER_TIMING = "actions", "server_timing"
TOKENS, TOKENIZER, PLAN_TEXT, ACTION_SPACE = "vla_ros/tokens", "vla_ros/tokenizer", "vla_ros/plan_text", \
    "vla_ros/action_space"
ERROR_PREFIX = "error: "
DEFAULT_MAX_REQUEST_BYTES = 4 << 20  # a 224×224 image is 150 kB; 1024×1024 is 3 MB
MAX_IMAGE_SIDE = 2048
MAX_HORIZON = 1024
_NUMERIC_KINDS = "biuf"

# Why a reply was refused (client) — diagnostics count them as refused_<reason>.
REFUSAL_REASONS = ("unreachable", "auth", "timeout", "closed", "server_error", "malformed", "wrong_shape",
                   "non_finite", "wrong_action_space", "stale_stamp")
# Plausibility of one chunk step (not safety: the gate checks every command). A delta step larger than this, or a
# joint target this far outside the joint limits, means the server's actions are of another kind.
MAX_DELTA_TRANSLATION_M, MAX_DELTA_ROTATION_RAD, JOINT_LIMIT_SLACK_RAD = 0.1, 0.5, 0.1


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text is one sentence naming what is wrong."""


class Refused(Exception):
    """A reply (or a connection) the client does not use: `reason` is one of REFUSAL_REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------------- codec
def _encode(obj):
    if isinstance(obj, (np.ndarray, np.generic)) and obj.dtype.kind not in _NUMERIC_KINDS:
        raise ProtocolError(f"numpy dtype {obj.dtype} cannot be sent; only booleans, integers and floats")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _numeric_dtype(text) -> np.dtype:
    if not isinstance(text, str) or len(text) > 8:
        raise ProtocolError(f"array dtype {text!r} is not a numpy type string such as '<f4'")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise ProtocolError(f"array dtype {text!r} is not a numpy type string such as '<f4'") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"array dtype {text!r} is not accepted; only booleans, integers and floats")
    return dtype


def _decode(obj: dict):
    if b"__ndarray__" in obj:
        dtype = _numeric_dtype(obj.get(b"dtype"))
        shape, data = obj.get(b"shape"), obj.get(b"data")
        if (not isinstance(shape, (list, tuple)) or len(shape) > 8
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise ProtocolError(f"array shape {shape!r} is not a list of at most 8 non-negative integers")
        if not isinstance(data, bytes) or len(data) != math.prod(shape) * dtype.itemsize:
            size = len(data) if isinstance(data, bytes) else type(data).__name__
            raise ProtocolError(f"array of shape {list(shape)} and dtype {dtype.str} needs "
                                f"{math.prod(shape) * dtype.itemsize} bytes of data, got {size}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable, and not tied to the message
    if b"__npgeneric__" in obj:
        dtype = _numeric_dtype(obj.get(b"dtype"))
        value = obj.get(b"data")
        if not isinstance(value, (bool, int, float)):
            raise ProtocolError(f"numpy scalar of dtype {dtype.str} carries {type(value).__name__}, not a number")
        return dtype.type(value)
    return obj


def pack(obj) -> bytes:
    """msgpack with openpi's numpy extension."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpack(data: bytes, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
    """Decode one message; ProtocolError names what is wrong (size, msgpack, an array)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected a binary msgpack message, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        # unpackb bounds every string, binary, array and map by the message's own length.
        return msgpack.unpackb(bytes(data), object_hook=_decode, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            RecursionError) as exc:
        raise ProtocolError(f"message is not valid msgpack ({type(exc).__name__})") from None


def error_text(message: str) -> str:
    """The one text frame a refused request gets."""
    return ERROR_PREFIX + message


# ------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Observation:
    """One request as the server's policy host takes it."""

    image: np.ndarray | None  # uint8 [H, W, 3]
    prompt: str  # normalized as /vla/task is
    state: np.ndarray | None = None  # float32 [6]: the arm joints (a 7th entry, the gripper, is not used)
    stamp_ns: int | None = None
    temperature: float | None = None
    plan: bool = False
    frame_time_s: float = 0.0


def observation_request(image: np.ndarray | None, prompt: str, state: np.ndarray | None = None, *,
                        stamp_ns: int | None = None, temperature: float | None = None, plan: bool = False,
                        frame_time_s: float = 0.0, jpeg: bytes | None = None) -> dict:
    """The map a client sends (openpi's keys plus vla_ros's extras)."""
    request: dict = {PROMPT: prompt, PLAN: bool(plan), FRAME_TIME: float(frame_time_s)}
    if jpeg is not None:
        request[IMAGE_JPEG] = jpeg
    elif image is not None:
        request[IMAGE] = np.ascontiguousarray(image, dtype=np.uint8)
    if state is not None:
        request[STATE] = np.asarray(state, dtype=np.float32)
    if stamp_ns is not None:
        request[STAMP] = int(stamp_ns)
    if temperature is not None:
        request[TEMPERATURE] = float(temperature)
    return request


def _decode_jpeg(data) -> np.ndarray:
    import cv2  # noqa: PLC0415 - only servers that receive JPEG need OpenCV

    if not isinstance(data, bytes):
        raise ProtocolError(f"{IMAGE_JPEG} must be the JPEG file's bytes, got {type(data).__name__}")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ProtocolError(f"{IMAGE_JPEG} is not a readable JPEG image")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def parse_observation(message, *, needs_image: bool = True) -> Observation:
    """A decoded request map → Observation; ProtocolError names the first key that is wrong."""
    if not isinstance(message, dict):
        raise ProtocolError(f"a request is a map of observation keys, got {type(message).__name__}")
    prompt = message.get(PROMPT)
    if not isinstance(prompt, str):
        raise ProtocolError(f"'{PROMPT}' must be the instruction text, got {type(prompt).__name__}")
    if len(prompt) > DEFAULT_MAX_CHARS:
        raise ProtocolError(f"'{PROMPT}' is {len(prompt)} characters long; at most {DEFAULT_MAX_CHARS} are accepted")
    image = None
    if IMAGE_JPEG in message:
        image = _decode_jpeg(message[IMAGE_JPEG])
    elif IMAGE in message:
        image = message[IMAGE]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shown = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ProtocolError(f"'{IMAGE}' must be a uint8 array [H, W, 3], got {shown}")
    if image is not None and not (0 < image.shape[0] <= MAX_IMAGE_SIDE and 0 < image.shape[1] <= MAX_IMAGE_SIDE):
        raise ProtocolError(f"image of {image.shape[1]}×{image.shape[0]} pixels; each side must be 1 … {MAX_IMAGE_SIDE}")
    if image is None and needs_image:
        raise ProtocolError(f"the request has no '{IMAGE}' (uint8 [H, W, 3]) and no '{IMAGE_JPEG}'")
    state = message.get(STATE)
    if state is not None:
        if (not isinstance(state, np.ndarray) or state.dtype.kind not in "iuf" or state.ndim != 1
                or state.shape[0] not in (6, 7) or not np.all(np.isfinite(state))):
            shown = f"{state.dtype} {list(state.shape)}" if isinstance(state, np.ndarray) else type(state).__name__
            raise ProtocolError(f"'{STATE}' must be 6 or 7 finite numbers (arm joints in rad, then the gripper "
                                f"opening), got {shown}")
        state = state[:6].astype(np.float32)
    stamp = message.get(STAMP)
    if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int)):
        raise ProtocolError(f"'{STAMP}' must be an integer (nanoseconds), got {type(stamp).__name__}")
    temperature = message.get(TEMPERATURE)
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0.0 <= temperature <= 10.0):
        raise ProtocolError(f"'{TEMPERATURE}' must be a number in [0, 10], got {temperature!r}")
    plan = message.get(PLAN, False)
    if not isinstance(plan, bool):
        raise ProtocolError(f"'{PLAN}' must be true or false, got {plan!r}")
    frame_time = message.get(FRAME_TIME, 0.0)
    if isinstance(frame_time, bool) or not isinstance(frame_time, (int, float)) or not math.isfinite(frame_time):
        raise ProtocolError(f"'{FRAME_TIME}' must be a finite number of seconds, got {frame_time!r}")
    return Observation(image, normalize_instruction(prompt), state, stamp,
                       None if temperature is None else float(temperature), plan, float(frame_time))


# ------------------------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class PolicyReply:
    """What the client keeps of a checked reply."""

    actions: np.ndarray | None  # float [H, 7]
    tokens: np.ndarray | None = None  # int [T] (a vla_ros server)
    tokenizer: str = ""
    plan: str = ""
    server_ms: float | None = None
    timing: dict = field(default_factory=dict)


def reply_message(actions: np.ndarray, *, stamp_ns: int | None, tokens: np.ndarray | None = None,
                  tokenizer: str = "", plan: str = "", action_space: str = EE_DELTA, timing: dict | None = None) -> dict:
    """The map a vla_ros server answers with."""
    reply = {ACTIONS: np.asarray(actions, dtype=np.float32), SERVER_TIMING: dict(timing or {}),
             ACTION_SPACE: action_space, PLAN_TEXT: plan}
    if tokens is not None:
        reply[TOKENS] = np.asarray(tokens, dtype=np.int32)
        reply[TOKENIZER] = tokenizer
    if stamp_ns is not None:
        reply[STAMP] = int(stamp_ns)
    return reply


def _plausible(actions: np.ndarray, action_space: str) -> str | None:
    """Why these actions cannot be of `action_space` (their magnitudes), or None."""
    if action_space == EE_DELTA:
        translation = float(np.max(np.abs(actions[:, :3])))
        rotation = float(np.max(np.abs(actions[:, 3:6])))
        if translation > MAX_DELTA_TRANSLATION_M or rotation > MAX_DELTA_ROTATION_RAD:
            return (f"steps of up to {translation:.3f} m and {rotation:.3f} rad are not end-effector deltas (at most "
                    f"{MAX_DELTA_TRANSLATION_M} m and {MAX_DELTA_ROTATION_RAD} rad per step); are they joint positions?")
        return None
    low, high = JOINT_LIMITS[:, 0] - JOINT_LIMIT_SLACK_RAD, JOINT_LIMITS[:, 1] + JOINT_LIMIT_SLACK_RAD
    outside = np.where((actions[:, :6] < low) | (actions[:, :6] > high))
    if len(outside[0]):
        step, joint = int(outside[0][0]), int(outside[1][0])
        return (f"step {step} puts joint {joint} at {actions[step, joint]:.3f} rad, outside its limits "
                f"[{JOINT_LIMITS[joint, 0]:.2f}, {JOINT_LIMITS[joint, 1]:.2f}]; are these not joint positions?")
    return None


def check_reply(message, *, action_space: str, sent_stamp_ns: int | None, want_tokens: bool = False) -> PolicyReply:
    """A decoded reply → PolicyReply, or Refused with the reason and one sentence."""
    if action_space not in ACTION_SPACES:
        raise ValueError(f"action_space {action_space!r} is not one of {', '.join(ACTION_SPACES)}")
    if isinstance(message, np.ndarray):  # vLLM-Omni's openpi endpoint answers with the bare action array
        message = {ACTIONS: message}
    if not isinstance(message, dict):
        raise Refused("malformed", f"the reply is a {type(message).__name__}, not a map with '{ACTIONS}'")
    if message.get("type") == "error":  # vLLM-Omni's error form: a map, not a text frame
        raise Refused("server_error", f"the server answered with an error: {str(message.get('message'))[:200]}")
    echoed = message.get(STAMP)
    if echoed is not None and sent_stamp_ns is not None and echoed != sent_stamp_ns:
        raise Refused("stale_stamp", f"the reply is for the observation stamped {echoed} ns, not the one sent "
                                     f"({sent_stamp_ns} ns)")
    declared = message.get(ACTION_SPACE)
    if declared is not None and declared != action_space:
        raise Refused("wrong_action_space", f"the server's actions are {declared!r}, this robot expects "
                                            f"{action_space!r} (setting action_space)")
    timing = message.get(SERVER_TIMING) if isinstance(message.get(SERVER_TIMING), dict) else {}
    server_ms = timing.get("infer_ms")
    server_ms = float(server_ms) if isinstance(server_ms, (int, float)) and not isinstance(server_ms, bool) else None
    plan = message.get(PLAN_TEXT) if isinstance(message.get(PLAN_TEXT), str) else ""
    if want_tokens:
        tokens, tokenizer = message.get(TOKENS), message.get(TOKENIZER)
        if not isinstance(tokens, np.ndarray) or tokens.ndim != 1 or tokens.dtype.kind not in "iu" or not tokens.size:
            raise Refused("malformed", f"the reply has no '{TOKENS}' (int [T]); only a vla_ros server sends tokens")
        if not isinstance(tokenizer, str) or not tokenizer:
            raise Refused("malformed", f"the reply's tokens come without '{TOKENIZER}'")
        return PolicyReply(None, tokens.astype(np.int64), tokenizer, plan, server_ms, timing)
    actions = message.get(ACTIONS)
    if not isinstance(actions, np.ndarray) or actions.dtype.kind not in "iuf":
        shown = type(actions).__name__ if not isinstance(actions, np.ndarray) else str(actions.dtype)
        raise Refused("malformed", f"the reply's '{ACTIONS}' is {shown}, not a float array [H, {len(ACTION_NAMES)}]")
    what = "6 joint targets and the gripper" if action_space == JOINT_POSITION else "Bridge's 7-D deltas"
    if actions.ndim != 2 or actions.shape[1] != len(ACTION_NAMES) or not 1 <= actions.shape[0] <= MAX_HORIZON:
        raise Refused("wrong_shape", f"the reply's actions have shape {list(actions.shape)}; {action_space} needs "
                                     f"[H, {len(ACTION_NAMES)}] ({what}) with 1 ≤ H ≤ {MAX_HORIZON}")
    actions = actions.astype(np.float64)
    if not np.all(np.isfinite(actions)):
        raise Refused("non_finite", "the reply's actions hold NaN or infinite values")
    implausible = _plausible(actions, action_space)
    if implausible:
        raise Refused("wrong_action_space", f"the reply does not look like {action_space}: {implausible}")
    return PolicyReply(actions, None, "", plan, server_ms, timing)
