"""Preference pairs for safety alignment: candidate chunks sampled from the policy, judged by look-ahead.

For observations along the policy's own episodes (layouts from seed 3 000 000, used by no evaluation), the
workcell's complete state is saved when the executor is about to adopt a chunk. Several candidate chunks
are drawn from the policy there (the policy's own choice, at its configured temperature, and samples at
`temperature`); each is rolled forward from the
same saved state for `horizon` ticks, through the control loop and the safety gate, the policy continuing
after the candidate as it runs (its own sampling temperature, the same random stream for every candidate of a
state), while a `SafetyWatch` counts unsafe events. The judge prefers the candidate
with fewer unsafe events; at equal safety the one that made more task progress (success first).

A preferences file (HDF5, format `vla-ros-prefs-1`) keeps per state what the policy saw (image, instruction,
joints), the saved simulator state (to roll a candidate again and show it), and every candidate's tokens and
outcome; `pairs/*` list (state, preferred candidate, other candidate, kind, source). `vla-ros prefs label`
writes the same format with a person's choices (source "human").
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vla_ros.sim.safety_events import EVENT_KINDS, EventThresholds
from vla_ros.sim.tasks import FAMILIES, PICK_HEIGHT, PUSH_DISTANCE, Task, WorldState

PREFS_FORMAT = "vla-ros-prefs-1"
SEED_BASE = 3_000_000  # layouts of preference data: no evaluation split draws from here
PAIR_KINDS = ("safety", "progress")
PAIR_SOURCES = ("judge", "human")
REACH_SCALE = 0.2  # m: the gripper this far from the block counts as no progress in reaching it


@dataclass(frozen=True)
class PrefsSpec:
    """How preference data is generated (recorded in the file)."""

    policy: str
    adapter: str | None = None
    episodes: int = 100
    candidates: int = 6
    # Ticks each candidate is rolled forward: its own window (3 ticks) and 2 of the policy after it, so that
    # what happens is the candidate's doing (a longer continuation mostly judges the policy's later chunks).
    horizon: int = 5
    every: int = 2  # judge every n-th chunk the policy is asked for
    temperature: float = 0.8  # sampling temperature of the candidates after the first (the policy's own choice)
    split: str = "train"  # instruction templates of the episodes
    scene: str = "default"
    seed: int = 0
    progress_margin: float = 0.05  # progress difference below which two equally safe candidates tie
    max_steps: int = 80
    first_episode: int = 0


@dataclass
class Outcome:
    """What one candidate led to within the look-ahead."""

    events: np.ndarray  # [len(EVENT_KINDS)] counts
    success: bool
    progress: float
    vetoes: int = 0
    slowdowns: int = 0

    @property
    def unsafe_events(self) -> int:
        return int(self.events.sum())


@dataclass
class StateRecord:
    """A judged decision point: what the policy saw, the simulator state, the candidates and their outcomes."""

    seed: int
    family: str
    tick: int
    instruction: str
    image: np.ndarray  # uint8 [S, S, 3]
    joint_pos: np.ndarray  # [6]
    physics: np.ndarray  # MuJoCo integration state
    controller: np.ndarray  # [6 q_target, 3 ee_target pos, 9 ee_target rot, gripper command, step]
    tokens: np.ndarray  # [K, T] candidate action ids (row 0: the policy's own choice)
    outcomes: list[Outcome] = field(default_factory=list)


def task_progress(task: Task, world: WorldState) -> float:
    """How far the task got, 0..1, from the world state alone (the judge's tie-breaker between safe candidates)."""
    block = world.objects[task.target]
    reach = 1.0 - min(1.0, float(np.linalg.norm(world.ee_pos - block.pos)) / REACH_SCALE)
    if task.family == "pick":
        lift = float(np.clip((block.pos[2] - block.half_extents[2]) / PICK_HEIGHT, 0.0, 1.0))
        return 0.4 * reach + 0.6 * lift
    if task.family == "push":
        moved = block.pos[1] - world.start_pos[task.target][1]
        sign = 1.0 if task.direction == "left" else -1.0
        return 0.3 * reach + 0.7 * float(np.clip(sign * moved / PUSH_DISTANCE, 0.0, 1.0))
    goal = world.objects[task.reference]
    start = world.start_pos[task.target]
    initial = max(1e-3, float(np.linalg.norm(start[:2] - goal.pos[:2])))
    closer = float(np.clip(1.0 - np.linalg.norm(block.pos[:2] - goal.pos[:2]) / initial, 0.0, 1.0))
    return 0.3 * reach + 0.7 * closer


def judge(a: Outcome, b: Outcome, margin: float) -> tuple[int, str]:
    """(+1 if a is preferred, -1 if b, 0 if neither; the pair's kind): safer first, then success, then progress."""
    if a.unsafe_events != b.unsafe_events:
        return (1 if a.unsafe_events < b.unsafe_events else -1), "safety"
    if a.success != b.success:
        return (1 if a.success else -1), "progress"
    if abs(a.progress - b.progress) > margin:
        return (1 if a.progress > b.progress else -1), "progress"
    return 0, ""


def judged_pairs(outcomes: list[Outcome], margin: float) -> list[tuple[int, int, str]]:
    """(preferred, other, kind) for every pair of candidates the judge can order, each unordered pair once."""
    pairs = []
    for i in range(len(outcomes)):
        for j in range(i + 1, len(outcomes)):
            verdict, kind = judge(outcomes[i], outcomes[j], margin)
            if verdict > 0:
                pairs.append((i, j, kind))
            elif verdict < 0:
                pairs.append((j, i, kind))
    return pairs


class _Recorder:
    """A chunk source that saves the workcell's state at every `every`-th request, then asks `source`."""

    def __init__(self, workcell, source, every: int):
        self.workcell, self.source, self.every = workcell, source, every
        self.requests = 0
        self.saved: list[tuple[object, object, str]] = []

    def chunk(self, observation, instruction):
        if self.requests % self.every == 0:
            self.saved.append((self.workcell.get_state(), observation, instruction))
        self.requests += 1
        return self.source.chunk(observation, instruction)


class _FirstThen:
    """The given actions for the first request, then `source`: a candidate chunk followed by the policy."""

    def __init__(self, actions: np.ndarray, source):
        self.actions, self.source, self.used = actions, source, False

    def chunk(self, observation, instruction):
        if not self.used:
            self.used = True
            return self.actions, ""
        return self.source.chunk(observation, instruction)


def controller_vector(state) -> np.ndarray:
    """The controller part of a `WorkcellState` as one float vector (see StateRecord.controller)."""
    return np.concatenate([state.q_target, state.ee_target.pos, state.ee_target.rot.reshape(9),
                           [state.gripper_command, state.step]]).astype(np.float64)


def restore_state(workcell, seed: int, family: str, physics: np.ndarray, controller: np.ndarray):
    """Put `workcell` in the state of a file's record (the layout and task re-drawn from the seed); the state."""
    from vla_ros.robot.kinematics import Pose
    from vla_ros.sim.workcell import WorkcellState

    workcell.reset(seed, family=family)
    start_pos = {key: value.copy() for key, value in workcell.start_pos.items()}
    state = WorkcellState(physics=np.asarray(physics, np.float64).copy(),
                          ee_target=Pose(controller[6:9].copy(), controller[9:18].reshape(3, 3).copy()),
                          q_target=controller[:6].copy(), gripper_command=float(controller[18]),
                          step=int(controller[19]), task=workcell.task, layout=workcell.layout, start_pos=start_pos)
    workcell.set_state(state)
    return state


class PreferenceWorker:
    """Runs the preference episodes of one spec by index (one policy and one workcell per process)."""

    def __init__(self, spec: PrefsSpec, thresholds: EventThresholds | None = None):
        from vla_ros.policy.runners import PolicyRunner
        from vla_ros.sim.rollout import PolicyChunks
        from vla_ros.sim.safety_events import SafetyWatch
        from vla_ros.sim.workcell import Workcell

        self.spec = spec
        self.runner = PolicyRunner(spec.policy, adapter=spec.adapter)
        self.workcell = Workcell(image_size=self.runner.config.image_size, split=spec.split, scene=spec.scene)
        self.watch = SafetyWatch(self.workcell, thresholds)
        self.policy_source = PolicyChunks(self.runner, seed=spec.seed)
        self.continuation = PolicyChunks(self.runner, seed=spec.seed + 1)

    def look_ahead(self, seed: int, state, actions: np.ndarray, on_step=None):
        """Roll `actions` then the policy forward from `state` for the horizon; the rollout (with events). The
        policy's sampling after the candidate draws from a stream fixed by (seed, state), the same for every
        candidate of the state."""
        from vla_ros.sim.rollout import rollout

        self.continuation.reseed(seed * 1000 + int(state.step))
        return rollout(self.workcell, _FirstThen(actions, self.continuation), seed, start=state,
                       max_steps=self.spec.horizon, watch=self.watch, on_step=on_step)

    def candidates(self, observation, instruction: str, rng: np.random.Generator) -> np.ndarray:
        """Candidate action ids [K, T] for an observation: the policy's own choice, then samples."""
        image, joints = observation.image[None], observation.joint_pos[None]
        own = self.runner.infer(image, [instruction], joints, rng=rng).tokens
        sampled = [self.runner.infer(image, [instruction], joints, temperature=self.spec.temperature, rng=rng).tokens
                   for _ in range(self.spec.candidates - 1)]
        return np.concatenate([own, *sampled]).astype(np.int64)

    def outcome(self, run) -> Outcome:
        events = np.array([run.events.get(kind, 0) for kind in EVENT_KINDS], np.int64)
        progress = 1.0 if run.success else task_progress(self.workcell.task, self.workcell.world_state())
        return Outcome(events, bool(run.success), float(progress), int(sum(run.vetoes.values())),
                       int(sum(run.slowdowns.values())))

    def run(self, index: int) -> list[StateRecord]:
        from vla_ros.sim.rollout import rollout

        spec = self.spec
        seed = SEED_BASE + spec.first_episode + index
        family = FAMILIES[(spec.first_episode + index) % len(FAMILIES)]
        self.policy_source.reseed(seed)
        recorder = _Recorder(self.workcell, self.policy_source, spec.every)
        rollout(self.workcell, recorder, seed, family=family, max_steps=spec.max_steps)
        rng = np.random.default_rng([spec.seed, seed])
        records = []
        for state, observation, instruction in recorder.saved:
            tokens = self.candidates(observation, instruction, rng)
            record = StateRecord(seed, family, int(state.step), instruction, observation.image.copy(),
                                 np.asarray(observation.joint_pos, np.float32), state.physics.copy(),
                                 controller_vector(state), tokens)
            for row in tokens:
                actions = self.runner.tokenizer.decode(row[None])[0]
                record.outcomes.append(self.outcome(self.look_ahead(seed, state, actions)))
            records.append(record)
        return records

    def close(self) -> None:
        self.workcell.close()


_WORKER: PreferenceWorker | None = None


def _init_worker(spec: PrefsSpec, thresholds: EventThresholds | None) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(1)
    _WORKER = PreferenceWorker(spec, thresholds)


def _run_index(index: int) -> list[StateRecord]:
    return _WORKER.run(index)


def generate_preferences(spec: PrefsSpec, out_path: str | Path, *, workers: int = 1, progress: bool = True,
                         thresholds: EventThresholds | None = None) -> dict:
    """Run `spec.episodes` episodes, judge candidates at their decision points, write the preferences file."""
    from tqdm import tqdm

    from vla_ros.policy.adapters import base_identity, check_adapter_base

    base_identity(spec.policy)  # a wrong path fails here in one sentence, not in every worker process
    if spec.adapter:
        check_adapter_base(spec.adapter, spec.policy)
    started = time.perf_counter()
    records: list[StateRecord] = []
    bar = tqdm(total=spec.episodes, desc="preferences", unit="ep", disable=not progress)

    judged = 0

    def keep(batch: list[StateRecord]) -> None:
        nonlocal judged
        records.extend(batch)
        judged += sum(len(judged_pairs(r.outcomes, spec.progress_margin)) for r in batch)
        bar.update(1)
        bar.set_postfix(states=len(records), pairs=judged)

    if workers <= 1:
        worker = PreferenceWorker(spec, thresholds)
        try:
            for index in range(spec.episodes):
                keep(worker.run(index))
        finally:
            worker.close()
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, initializer=_init_worker, initargs=(spec, thresholds)) as pool:
            for batch in pool.imap(_run_index, range(spec.episodes)):
                keep(batch)
    bar.close()
    pairs = [(s, i, j, kind, "judge") for s, record in enumerate(records)
             for i, j, kind in judged_pairs(record.outcomes, spec.progress_margin)]
    write_prefs(out_path, records, pairs, spec, thresholds or EventThresholds())
    summary = describe_prefs(load_prefs(out_path))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


# ------------------------------------------------------------------------------------------ the file

@dataclass
class Preferences:
    """A preferences file in memory: states, candidates, outcomes and pairs (see the module docstring)."""

    seed: np.ndarray
    family: list[str]
    tick: np.ndarray
    instruction: list[str]
    image: np.ndarray
    joint_pos: np.ndarray
    physics: np.ndarray
    controller: np.ndarray
    tokens: np.ndarray  # [S, K, T]
    events: np.ndarray  # [S, K, E]
    success: np.ndarray  # [S, K]
    progress: np.ndarray  # [S, K]
    vetoes: np.ndarray  # [S, K]
    slowdowns: np.ndarray  # [S, K]
    pairs: np.ndarray  # [N, 3] state, preferred, other
    pair_kind: list[str]
    pair_source: list[str]
    attrs: dict

    @property
    def spec(self) -> dict:
        return json.loads(self.attrs.get("spec", "{}"))


def write_prefs(path: str | Path, records: list[StateRecord], pairs: list[tuple[int, int, int, str, str]],
                spec: PrefsSpec | dict, thresholds: EventThresholds | dict, base_identity: str | None = None) -> Path:
    """Write states, candidates and pairs (state, preferred, other, kind, source) to an HDF5 preferences file."""
    import h5py

    from vla_ros.policy.adapters import base_identity as identity_of

    if not records:
        raise ValueError("no decision points were recorded: run more episodes")
    spec_dict = asdict(spec) if isinstance(spec, PrefsSpec) else dict(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype()
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = PREFS_FORMAT
        f.attrs["spec"] = json.dumps(spec_dict)
        f.attrs["thresholds"] = json.dumps(asdict(thresholds) if isinstance(thresholds, EventThresholds)
                                           else dict(thresholds))
        f.attrs["event_kinds"] = json.dumps(list(EVENT_KINDS))
        f.attrs["base_identity"] = base_identity or identity_of(spec_dict["policy"])
        states = f.create_group("states")
        states["seed"] = np.array([r.seed for r in records], np.int64)
        states.create_dataset("family", data=[r.family for r in records], dtype=text)
        states["tick"] = np.array([r.tick for r in records], np.int64)
        states.create_dataset("instruction", data=[r.instruction for r in records], dtype=text)
        states.create_dataset("image", data=np.stack([r.image for r in records]), compression="gzip",
                              compression_opts=4)
        states["joint_pos"] = np.stack([r.joint_pos for r in records]).astype(np.float32)
        states["physics"] = np.stack([r.physics for r in records])
        states["controller"] = np.stack([r.controller for r in records])
        candidates = f.create_group("candidates")
        candidates["tokens"] = np.stack([r.tokens for r in records]).astype(np.int64)
        candidates["events"] = np.stack([[o.events for o in r.outcomes] for r in records]).astype(np.int64)
        candidates["success"] = np.array([[o.success for o in r.outcomes] for r in records], bool)
        candidates["progress"] = np.array([[o.progress for o in r.outcomes] for r in records], np.float32)
        candidates["vetoes"] = np.array([[o.vetoes for o in r.outcomes] for r in records], np.int64)
        candidates["slowdowns"] = np.array([[o.slowdowns for o in r.outcomes] for r in records], np.int64)
        group = f.create_group("pairs")
        group["index"] = np.array([p[:3] for p in pairs], np.int64).reshape(-1, 3)
        group.create_dataset("kind", data=[p[3] for p in pairs], dtype=text)
        group.create_dataset("source", data=[p[4] for p in pairs], dtype=text)
    tmp.replace(path)
    return path


def load_prefs(path: str | Path) -> Preferences:
    """Read a preferences file; one clear error when it is none."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write one with 'vla-ros prefs generate'")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not an HDF5 preferences file ({exc})") from None
    with f:
        if f.attrs.get("format") != PREFS_FORMAT:
            raise ValueError(f"{path} is not a preferences file of format {PREFS_FORMAT} "
                             f"(format {f.attrs.get('format')!r}); write one with 'vla-ros prefs generate'")
        if json.loads(f.attrs["event_kinds"]) != list(EVENT_KINDS):
            raise ValueError(f"{path} counts events {json.loads(f.attrs['event_kinds'])}, this version "
                             f"{list(EVENT_KINDS)}")
        s, c, p = f["states"], f["candidates"], f["pairs"]
        strings = lambda d: [x.decode() if isinstance(x, bytes) else str(x) for x in d[()]]  # noqa: E731
        return Preferences(
            seed=s["seed"][()], family=strings(s["family"]), tick=s["tick"][()], instruction=strings(s["instruction"]),
            image=s["image"][()], joint_pos=s["joint_pos"][()], physics=s["physics"][()],
            controller=s["controller"][()], tokens=c["tokens"][()], events=c["events"][()],
            success=c["success"][()], progress=c["progress"][()], vetoes=c["vetoes"][()],
            slowdowns=c["slowdowns"][()], pairs=p["index"][()].reshape(-1, 3), pair_kind=strings(p["kind"]),
            pair_source=strings(p["source"]), attrs={k: (v.decode() if isinstance(v, bytes) else v)
                                                     for k, v in f.attrs.items()})


def prefs_names(paths) -> str | list[str]:
    """A preferences path, or a list of them, as recorded in reports."""
    return str(paths) if isinstance(paths, (str, Path)) else [str(path) for path in paths]


def check_base(prefs: Preferences, paths, policy_dir) -> str:
    """The identity of the policy in `policy_dir`, after checking that the preferences were generated with it."""
    from vla_ros.policy.adapters import base_identity

    identity = base_identity(policy_dir)
    if prefs.attrs.get("base_identity") != identity:
        raise ValueError(f"{prefs_names(paths)} was generated with base policy {prefs.attrs.get('base_identity')}, "
                         f"not with {policy_dir} ({identity}); use the policy that generated it")
    return identity


def load_many(paths) -> Preferences:
    """One file, or several pooled (e.g. judged pairs and a person's, or more episodes): their states and
    candidates concatenated, pairs re-indexed. The files must come from the same base policy and event kinds,
    with the same number of candidates per state."""
    if isinstance(paths, (str, Path)):
        return load_prefs(paths)
    parts = [load_prefs(path) for path in paths]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:]):
        if part.attrs.get("base_identity") != first.attrs.get("base_identity"):
            raise ValueError(f"{path} was generated with base policy {part.attrs.get('base_identity')}, "
                             f"{paths[0]} with {first.attrs.get('base_identity')}: pool files of one base")
        if part.tokens.shape[1:] != first.tokens.shape[1:]:
            raise ValueError(f"{path} has {part.tokens.shape[1]} candidates of {part.tokens.shape[2]} ids per "
                             f"state, {paths[0]} {first.tokens.shape[1]} of {first.tokens.shape[2]}")
    offsets = np.cumsum([0] + [len(part.seed) for part in parts[:-1]])
    joined = {}
    for name in ("seed", "tick", "image", "joint_pos", "physics", "controller", "tokens", "events", "success",
                 "progress", "vetoes", "slowdowns"):
        joined[name] = np.concatenate([getattr(part, name) for part in parts])
    for name in ("family", "instruction", "pair_kind", "pair_source"):
        joined[name] = [value for part in parts for value in getattr(part, name)]
    joined["pairs"] = np.concatenate([part.pairs + [offset, 0, 0] for part, offset in zip(parts, offsets)])
    return Preferences(**joined, attrs=dict(first.attrs))


def records_of(prefs: Preferences) -> list[StateRecord]:
    """The states of a loaded file as records (to write them again, e.g. with other pairs)."""
    records = []
    for s in range(len(prefs.seed)):
        outcomes = [Outcome(prefs.events[s, k], bool(prefs.success[s, k]), float(prefs.progress[s, k]),
                            int(prefs.vetoes[s, k]), int(prefs.slowdowns[s, k])) for k in range(prefs.tokens.shape[1])]
        records.append(StateRecord(int(prefs.seed[s]), prefs.family[s], int(prefs.tick[s]), prefs.instruction[s],
                                   prefs.image[s], prefs.joint_pos[s], prefs.physics[s], prefs.controller[s],
                                   prefs.tokens[s], outcomes))
    return records


def describe_prefs(prefs: Preferences) -> dict:
    """Counts a person (and the docs) want: states, candidates, unsafe candidates, pairs by kind and source."""
    unsafe = prefs.events.sum(-1) > 0
    kinds = {kind: int(sum(k == kind for k in prefs.pair_kind)) for kind in PAIR_KINDS}
    sources = {source: int(sum(s == source for s in prefs.pair_source)) for source in PAIR_SOURCES}
    return {
        "states": int(len(prefs.seed)), "episodes": int(len(set(prefs.seed.tolist()))),
        "candidates_per_state": int(prefs.tokens.shape[1]),
        "unsafe_candidates": float(unsafe.mean()),
        "own_choice_unsafe": float(unsafe[:, 0].mean()),
        "states_with_an_unsafe_candidate": float(unsafe.any(1).mean()),
        "events_by_kind": {kind: int(prefs.events[..., i].sum()) for i, kind in enumerate(EVENT_KINDS)},
        "pairs": int(len(prefs.pairs)), "pairs_by_kind": kinds, "pairs_by_source": sources,
    }


class ShieldedChunks:
    """The best the preference data can teach, measured: at every chunk the policy is asked for, its candidates
    (as in `PreferenceWorker.run`) are rolled forward from the current state and the safest is executed (the
    policy's own choice whenever it is among the safest). An oracle that needs the simulator, for benchmarks
    only: what an adapter that learned the safety preferences perfectly would do."""

    def __init__(self, worker: PreferenceWorker, seed: int):
        self.worker, self.seed = worker, seed
        self.rng = np.random.default_rng([worker.spec.seed, seed, 1])
        self.deviations = 0
        self.requests = 0

    def chunk(self, observation, instruction):
        worker, spec = self.worker, self.worker.spec
        state = worker.workcell.get_state()
        tokens = worker.candidates(observation, instruction, self.rng)
        candidates = [worker.runner.tokenizer.decode(row[None])[0] for row in tokens]
        outcomes = [worker.outcome(worker.look_ahead(self.seed, state, actions)) for actions in candidates]
        worker.workcell.set_state(state)
        best = 0
        for index, outcome in enumerate(outcomes[1:], 1):
            if judge(outcome, outcomes[best], spec.progress_margin)[0] > 0 and \
                    outcome.unsafe_events < outcomes[best].unsafe_events:
                best = index  # leave the policy's own choice only for a safer one
        self.requests += 1
        self.deviations += best != 0
        return candidates[best], ""
