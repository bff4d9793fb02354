"""The sliding-window chunk executor (the design's "execute 3 of 8 steps, then replan"), without ROS.

Time is in seconds on the clock the observation stamps use. A chunk's step k is meant for the interval
[stamp + k·dt, stamp + (k+1)·dt). The executor

- adopts the newest chunk for the current task, aligned to the present: the step whose interval holds
  the present runs now, the steps before it are skipped (a frame taken mid-period belongs to the next
  tick: a policy trained on frames taken at control ticks acts from it as if at that tick);
- executes `execute_steps` steps of it, one action step per `dt`, split evenly over the control ticks
  that fall in it when the control rate is higher than the chunk rate;
- then adopts the next chunk, which the policy has produced meanwhile; if none has arrived it holds
  (returns no action) and never extrapolates past the executed window;
- with `blend`, instead averages, for the present instant, every stored chunk's step covering it
  within its first `execute_steps` steps, with exponential weights (temporal ensembling, ACT);
- flushes every chunk when the task changes or stops.

A chunk of absolute joint targets (`joint_position`, vla_ros.core.action_chunks) is windowed the same way,
but its steps are targets, not increments: a step is never scaled; instead `Step.share` says which share of the
way from the last commanded target to the step's target this tick covers (1 at the chunk rate, 1/4, 1/3, 1/2,
1 over four ticks at 4x the rate), so the arm arrives at each target at the step's end either way.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_ros.core.action_chunks import JOINT_POSITION, ActionChunk
from vla_ros.core.settings import CONTROL_RATE_HZ, Settings, non_negative, one_of, positive, setting

GRIPPER = 6


@dataclass(frozen=True)
class ExecutorSettings(Settings):
    """The chunk_executor's settings: the sliding window, the control rate and the control loop's holds."""

    control_rate: float = setting(CONTROL_RATE_HZ, "Control loop rate in Hz (BridgeData: 5).", check=positive)
    execute_steps: int = setting(3, "Steps of each chunk executed before the next chunk is adopted.", check=positive)
    blend: bool = setting(False, "Temporal ensembling of overlapping chunks instead of plain switching.")
    blend_decay: float = setting(0.5, "Ensembling weight exp(-decay*i), i = 0 for the oldest chunk; negative "
                                 "favours newer chunks.")
    observe_after_window: bool = setting(
        False, "After each window adopt only a chunk whose frame was taken once the window's last step had run (as "
        "the policy was trained); the arm holds about one period per window. False: the next chunk comes from a "
        "frame taken during the window (the design's latency hiding).")
    observe_tolerance: float = setting(0.05, "With observe_after_window: how much earlier than the window's end a "
                                       "frame may be taken, s.", check=non_negative)
    chunk_anchor: str = setting(
        "measured", "Where the policy's deltas of each adopted chunk are applied from: measured (the joints measured "
        "at the adopting tick, as BridgeData's controller applies each delta to the measured pose) or target (the "
        "last commanded target: one continuous integration, which runs ahead of an arm that follows each command "
        "over its reach time).", check=one_of("measured", "target"))
    max_chunks: int = setting(16, "Chunks kept for temporal ensembling.", check=positive)
    joint_state_timeout: float = setting(0.5, "Hold when the newest /joint_states is older than this, s.",
                                         check=positive)
    reanchor_after: float = setting(1.0, "After holding this long (s), restart integration from the measured joints.",
                                    check=non_negative)
    thread_priority: int = setting(50, "SCHED_FIFO priority of the control thread (1-99, like ros2_control's "
                                   "controller manager); 0 or no permission: normal scheduling.", check=non_negative,
                                   node_only=True)
    control_mode: str = setting("policy", "Chunk source in control at start-up: policy (/vla/action_chunk) or teleop "
                                "(/vla/teleop/action_chunk); switched with /vla/teleop/engage.",
                                check=one_of("policy", "teleop"), node_only=True)

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate


@dataclass(frozen=True)
class Step:
    """What to do at one control tick: an action (scaled to the tick) or a hold with its reason."""

    action: np.ndarray | None
    reason: str = ""
    chunk_stamp_s: float | None = None
    # Set when a chunk replaced an executed one at this tick: how long before it was needed it arrived
    # (negative: late, the robot waited).
    arrival_margin_s: float | None = None
    # Set when the task's first chunk was adopted at this tick: how long the executor waited for it since
    # the task began (the policy's first inference; nothing can arrive early for a new task).
    first_chunk_wait_s: float | None = None
    # With an arrival margin: the adopted chunk's observation age when it arrived, and how long no chunk of
    # the task had arrived before it (where a late chunk lost its time; None for a task's first chunk).
    arrival_age_s: float | None = None
    arrival_gap_s: float | None = None
    # True when `action` is absolute joint targets [6] + gripper opening (a joint_position chunk); `share` is the
    # share of the way from the last commanded target to them that this tick covers.
    joint_targets: bool = False
    share: float = 1.0

    @property
    def hold(self) -> bool:
        return self.action is None


@dataclass
class _Stored:
    chunk: ActionChunk
    stamp_s: float
    received_s: float
    gap_s: float | None = None  # since the previous chunk of the task arrived


@dataclass
class _Window:
    """The chunk being executed: next step index and the fraction of it already applied."""

    stored: _Stored
    step: int
    last: int  # exclusive end of the executed window
    progress: float = 0.0


class ChunkExecutor:
    def __init__(self, config: ExecutorSettings):
        self.config = config
        self.task_hash: int | None = None
        self._chunks: deque[_Stored] = deque(maxlen=config.max_chunks)
        self._window: _Window | None = None
        self._needed_since: float | None = None  # when the executor first found no chunk to adopt
        self._started = False  # whether a chunk of the current task has been adopted
        self._last_received_s: float | None = None  # arrival of the task's latest accepted chunk
        self._window_end_s: float | None = None  # when the last executed window's last step ended
        self.flushed = 0

    # ---------------------------------------------------------------------------------------- inputs
    def set_task(self, task_hash: int | None) -> None:
        """The current task (None = idle). A change flushes every queued chunk at once."""
        if task_hash != self.task_hash:
            self.flushed += len(self._chunks) + (self._window is not None)
            self._chunks.clear()
            self._window = None
            self._needed_since = None
            self._started = False
            self._last_received_s = None
            self._window_end_s = None
            self.task_hash = task_hash

    def add_chunk(self, chunk: ActionChunk, received_s: float) -> str | None:
        """Queue a chunk; returns why it was refused, or None."""
        if self.task_hash is None:
            return "no current task"
        if chunk.task_hash != self.task_hash:
            return f"chunk is for task {chunk.task_hash:08x}, not the current task {self.task_hash:08x}"
        if not np.all(np.isfinite(chunk.actions)):
            return "chunk has non-finite values"
        if chunk.dt_s <= 0:
            return f"chunk step dt {chunk.dt_s} s is not positive"
        stamp_s = chunk.stamp_ns * 1e-9
        newest = self._chunks[-1].stamp_s if self._chunks else -math.inf
        if stamp_s <= newest:
            return "chunk is not newer than the last one received"
        gap = None if self._last_received_s is None else received_s - self._last_received_s
        self._last_received_s = received_s
        self._chunks.append(_Stored(chunk, stamp_s, received_s, gap))
        return None

    # ---------------------------------------------------------------------------------------- ticks
    def wants_chunk(self) -> bool:
        """Whether the next tick adopts a chunk (an in-process driver infers exactly then, on simulated time)."""
        return self.config.blend or self._window is None or self._window.step >= self._window.last

    def tick(self, now_s: float) -> Step:
        """The action for the control tick at `now_s` (applied over the next control period)."""
        if self.task_hash is None:
            return Step(None, "idle")
        if self.config.blend:
            return self._blended(now_s)
        return self._switched(now_s)

    def _aligned_step(self, stored: _Stored, now_s: float) -> int:
        # The step whose interval [stamp + k·dt, stamp + (k+1)·dt) holds `now_s`; the ones before are skipped.
        # (Skipping once a step's midpoint had passed dropped step 0 of nearly every chunk in the graph, whose
        # frames are 100-250 ms old at adoption: 21 % success through ROS against 54 % in-process; CHANGELOG.md,
        # policy v3.)
        return max(0, math.floor((now_s - stored.stamp_s) / stored.chunk.dt_s + 1e-9))

    def _adopt(self, now_s: float) -> tuple[_Window | None, float | None, str]:
        # The window, the arrival margin (negative: the robot waited) and the hold reason when no window.
        # Newest first: an older chunk is never executed once a newer one exists.
        current = self._window.stored.stamp_s if self._window else -math.inf
        while self._chunks:
            stored = self._chunks.pop()
            self._chunks.clear()  # everything older than the newest is obsolete
            if stored.stamp_s <= current:
                break
            if (self.config.observe_after_window and self._window_end_s is not None
                    and stored.stamp_s < self._window_end_s - self.config.observe_tolerance):
                return None, None, "waiting for a chunk observed after the last window"
            first = self._aligned_step(stored, now_s)
            last = min(len(stored.chunk.actions), self.config.execute_steps)
            if first >= last:
                return None, None, "newest chunk is too old: its executable steps lie in the past"
            needed = self._needed_since if self._needed_since is not None else now_s
            margin = needed - stored.received_s
            self._chunks.append(stored)
            return _Window(stored, first, last), margin, ""
        if not self._started:
            return None, None, "no chunk received for the current task"
        return None, None, "starved: waiting for the next chunk"

    def _switched(self, now_s: float) -> Step:
        margin = first_wait = None
        if self._window is None or self._window.step >= self._window.last:
            window, margin, reason = self._adopt(now_s)
            if window is None:
                self._window = None
                if self._needed_since is None:
                    self._needed_since = now_s
                return Step(None, reason)
            self._window = window
            self._needed_since = None
            if not self._started:  # the task's first chunk: a wait, not an arrival margin
                self._started = True
                margin, first_wait = None, max(0.0, -margin)
        window = self._window
        chunk = window.stored.chunk
        # Fraction of one action step this tick covers: 1 at the chunk rate, 1/4 at 4x the rate.
        fraction = min(1.0, self.config.control_period_s / chunk.dt_s)
        action = chunk.actions[window.step].astype(np.float64).copy()
        absolute = chunk.action_space == JOINT_POSITION
        share = min(1.0, fraction / max(1e-9, 1.0 - window.progress)) if absolute else 1.0
        if not absolute:
            action[:GRIPPER] *= fraction
        window.progress += fraction
        if window.progress >= 1.0 - 1e-9:
            window.progress = 0.0
            window.step += 1
        if window.step >= window.last:
            # Window finished: the next chunk is needed by the next tick, whenever that tick actually runs (its
            # time, or that of the first tick that held, is the arrival margin's reference; a nominal "now +
            # period" made a chunk that came during the tick's own few-µs lateness count as late although no
            # tick waited). With observe_after_window it is needed one period later: the frame taken at the
            # window's end needs that long to become a chunk.
            self._window_end_s = now_s + self.config.control_period_s
            self._needed_since = (self._window_end_s + self.config.control_period_s
                                  if self.config.observe_after_window else None)
        age = gap = None
        if margin is not None:
            age, gap = window.stored.received_s - window.stored.stamp_s, window.stored.gap_s
        return Step(action, "", window.stored.stamp_s, margin, first_wait, age, gap, absolute, share)

    def _blended(self, now_s: float) -> Step:
        candidates = []
        for stored in self._chunks:
            index = math.floor((now_s - stored.stamp_s) / stored.chunk.dt_s + 1e-9)
            if 0 <= index < min(len(stored.chunk.actions), self.config.execute_steps):
                candidates.append((stored, index))
        if not candidates:
            return Step(None, "no chunk covers the present")
        newest, index = candidates[-1]
        space = newest.chunk.action_space  # deltas and joint targets do not average: the newest chunk's kind
        candidates = [(stored, i) for stored, i in candidates if stored.chunk.action_space == space]
        action = ensemble([stored.chunk.actions[i] for stored, i in candidates], self.config.blend_decay)
        if space == JOINT_POSITION:
            left = newest.stamp_s + (index + 1) * newest.chunk.dt_s - now_s  # until the step's end
            share = min(1.0, self.config.control_period_s / left) if left > 1e-9 else 1.0
            return Step(action, "", newest.stamp_s, None, joint_targets=True, share=share)
        action[:GRIPPER] *= min(1.0, self.config.control_period_s / newest.chunk.dt_s)
        return Step(action, "", newest.stamp_s, None)


def ensemble(actions, decay: float) -> np.ndarray:
    """Temporal ensembling of the steps several chunks give for one instant (oldest chunk first).

    Motion dimensions are the weighted mean; the gripper is the weighted vote, thresholded at 0.5.
    """
    stacked = np.asarray(actions, dtype=np.float64)
    action = blend_weights(len(stacked), decay) @ stacked
    action[GRIPPER] = 1.0 if action[GRIPPER] >= 0.5 else 0.0
    return action


def blend_weights(count: int, decay: float) -> np.ndarray:
    """Normalized temporal-ensembling weights, oldest chunk first."""
    weights = np.exp(-decay * np.arange(count))
    return weights / weights.sum()
