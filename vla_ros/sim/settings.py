"""widowx_sim's settings (no MuJoCo import: the node's parameter table is generated from them)."""

from __future__ import annotations

from dataclasses import dataclass

from vla_ros.core.settings import Settings, one_of, positive, setting
from vla_ros.core.topics import camera_list_problem

CAMERAS = ("over_shoulder", "front", "wrist")
FAMILY_CHOICES = ("", "pick", "place", "stack", "push")
SCENES = ("default", "camera_shift", "appearance")  # set-up shifts, vla_ros.sim.scenes (docs/sim.md)


@dataclass(frozen=True)
class SimSettings(Settings):
    seed: int = setting(0, "Layout seed used by the next /widowx_sim/reset (then incremented).", read_only=False)
    family: str = setting("", "Task family of the suggested task at reset ('' = any of pick, place, stack, push).",
                          read_only=False, check=one_of(*FAMILY_CHOICES))
    camera: str = setting("over_shoulder", "Workcell camera: over_shoulder, front or wrist.", check=one_of(*CAMERAS))
    scene: str = setting("default", "Set-up shift of the workcell: default, camera_shift (over_shoulder moved 8 cm "
                         "and turned 7 degrees) or appearance (table colour, lighting, block shades).",
                         check=one_of(*SCENES))
    extra_cameras: str = setting("", "Also render these workcell cameras, comma-separated (e.g. 'wrist'), each on "
                                 "/camera/<name>/image_raw with its camera_info, stamped like the primary frame "
                                 "(for a policy that reads them: camera_ingest's extra_cameras).",
                                 check=lambda text: camera_list_problem(text, CAMERAS))
    image_width: int = setting(128, "Camera image width in pixels.", check=positive)
    image_height: int = setting(128, "Camera image height in pixels.", check=positive)
    camera_rate: float = setting(10.0, "Camera frames per second.", check=positive)
    joint_state_rate: float = setting(50.0, "/joint_states messages per second.", check=positive)
    physics_period: float = setting(0.01, "Simulated seconds advanced per loop iteration.", check=positive)
    publish_clock: bool = setting(False, "Publish /clock with the simulated time (use use_sim_time elsewhere).")
    expert_hints: bool = setting(False, "Publish the scripted expert's next action on /widowx_sim/expert_action after "
                                 "each arm or gripper command (privileged state: for a scripted joystick in tests "
                                 "and benchmarks).")
    publish_tf: bool = setting(True, "Publish /robot_description (the wx250s URDF), /tf from the joints and /tf_static "
                               "(fixed links and cameras) for RViz and Foxglove; /tf needs tf2_msgs (a distribution).")
    thread_priority: int = setting(45, "SCHED_FIFO priority of the physics thread (1-99; 0 = normal scheduling), "
                                   "below the executor's control thread.",
                                   check=lambda v: None if 0 <= v <= 99 else "must lie in 0..99")
