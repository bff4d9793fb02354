"""The backends a policy server can run (no heavy imports: `vla-ros serve --help` lists them)."""

from __future__ import annotations

from vla_ros.core.stages.policy import LOCAL_BACKENDS

SERVED_BACKENDS = (*LOCAL_BACKENDS, "episode")
