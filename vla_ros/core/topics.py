"""Topic and service names of the vla_ros contract (ARCHITECTURE.md), in one place."""

CAMERA_IMAGE = "/camera/image_raw"
CAMERA_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
MODEL_IMAGE = "/vla/image"
INSTRUCTION = "/vla/instruction"
INSTRUCTION_REJECTED = "/vla/instruction/rejected"
TASK = "/vla/task"
ACTION_TOKENS = "/vla/action_tokens"
PLAN = "/vla/plan"
ACTION_CHUNK = "/vla/action_chunk"
JOINT_STATES = "/joint_states"
ARM_COMMAND = "/vla/arm_command"
GRIPPER_COMMAND = "/vla/gripper_command"
ARM_CONTROLLER = "/wx250s/arm_controller/joint_trajectory"
GRIPPER_CONTROLLER = "/wx250s/gripper_controller/joint_trajectory"
ESTOP = "/vla/estop"
SAFETY_VETO = "/vla/safety/veto"
DIAGNOSTICS = "/diagnostics"
# Teleoperation and demonstrations (docs/demonstrations.md).
JOY = "/joy"
TELEOP_CHUNK = "/vla/teleop/action_chunk"  # the teleop node's chunks: the same layout as /vla/action_chunk
CONTROL_MODE = "/vla/control_mode"  # latched: which chunk source the executor takes, "policy" or "teleop"
EXECUTED_ACTION = "/vla/executed_action"  # the 7-D action the control loop executed at each commanded tick
DEMOS_MARK = "/vla/demos/mark"  # episode marks in a demonstration bag: "start", "success", "failure"
DEMOS_STATUS = "/vla/demos/status"
SIM_EXPERT_ACTION = "/widowx_sim/expert_action"  # the simulator's privileged scripted-expert action (tests)

SAFETY_RESET_SERVICE = "/vla/safety/reset"
SIM_RESET_SERVICE = "/widowx_sim/reset"
TELEOP_ENGAGE_SERVICE = "/vla/teleop/engage"  # std_srvs/SetBool: true = teleop in control, false = the policy
DEMOS_START_SERVICE = "/vla/demos/start"  # std_srvs/Trigger
DEMOS_STOP_SERVICE = "/vla/demos/stop"  # std_srvs/SetBool: data = the episode succeeded
DEMOS_DISCARD_SERVICE = "/vla/demos/discard"  # std_srvs/Trigger: drop the last (or the running) episode


def camera_image(camera: str) -> str:
    """The image topic of a camera besides the primary one (e.g. the wrist camera: /camera/wrist/image_raw)."""
    return f"/camera/{camera}/image_raw"


def camera_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of camera names (a node parameter) → the names, in order ('' → none)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def camera_list_problem(text: str, known: tuple[str, ...] | None = None) -> str | None:
    """Why a comma-separated camera list cannot be used (a name twice, a name that is not a topic name or not
    one of `known`), else None: the check of the nodes' `extra_cameras` parameters."""
    names = camera_names(text)
    if len(set(names)) != len(names):
        return f"names a camera twice: {text!r}"
    bad = [name for name in names if not name.replace("_", "").isalnum()]
    if bad:
        return f"camera names are letters, digits and '_', got {bad[0]!r}"
    unknown = [name for name in names if known is not None and name not in known]
    return f"names no workcell camera: {unknown[0]!r} (cameras: {', '.join(known)})" if unknown else None
