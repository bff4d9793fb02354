"""Where the policy thinks the named blocks are: its grounding head read out for a live frame (grounding_probe).

The grounding head (`VLAPolicy.grounded_places`) regresses the table x, y of the instruction's target and
reference from the hidden state before the first action token. Shown as a marker and in the viewer, it says how
the policy read the instruction: a target drawn on the wrong block explains a wrong pick before the arm moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.core.stages.policy import model_frame
from vla_ros.core.settings import Settings, non_negative, positive, setting


@dataclass(frozen=True)
class GroundingSettings(Settings):
    """grounding_probe's settings."""

    model_path: str = setting("models/policy/vla", "Policy directory (trained with the grounding head); relative "
                              "paths are looked up in the package.")
    rate: float = setting(2.0, "Groundings per second at most.", check=positive)
    max_image_age: float = setting(0.5, "Skip frames older than this, s (0 = no limit).", check=non_negative)
    threads: int = setting(1, "CPU threads for the forward pass.", check=positive, node_only=True)


def names_reference(task: str) -> bool | None:
    """Whether the task names a reference object (place, stack); None when no template reads it."""
    from vla_ros.sim.tasks import parse_instruction  # noqa: PLC0415

    try:
        return bool(parse_instruction(task).reference)
    except ValueError:
        return None


class GroundingProbe:
    """Loads a policy with the torch runner and reads its grounding head for one frame at a time."""

    def __init__(self, settings: GroundingSettings):
        from vla_ros.core.resources import resolve_resource  # noqa: PLC0415
        from vla_ros.policy.runners import PolicyRunner  # noqa: PLC0415

        self.runner = PolicyRunner(resolve_resource(settings.model_path), "builtin-torch", threads=settings.threads)
        if self.runner.policy.grounding_head is None:
            from vla_ros.policy.modeling_vla import PolicyLoadError  # noqa: PLC0415

            raise PolicyLoadError(f"{settings.model_path} was trained without the grounding head; "
                                  "grounding_probe needs a policy that has one (config grounding_head: true)")
        self.image_size = self.runner.config.image_size

    def ground(self, rgb: np.ndarray, task: str, joints: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(target x, y) and (reference x, y) or None, in metres in base_link, for an RGB frame and a task."""
        rgb = model_frame(rgb, self.image_size, tuple(self.runner.config.extra_cameras))  # as vla_policy reads it
        places = self.runner.grounded_places(rgb[None], [task], None if joints is None else joints[None])[0]
        return places[:2].astype(float), (places[2:4].astype(float) if names_reference(task) else None)
