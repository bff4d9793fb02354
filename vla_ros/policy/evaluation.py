"""Closed-loop evaluation in the simulated workcell: success per task family, through the graph's control loop.

Episodes run in `vla_ros.sim.rollout`: the chunk executor and the safety gate with the graph's settings, on
simulated time; the policy is asked for a chunk whenever the executor adopts one (every `execute_steps` ticks,
every tick with blending). Success rates carry Wilson 95 % intervals per family. Seeds:

    train       seed i, family i mod 4: the episodes `vla-ros data generate --seed 0` recorded
    unseen      seeds from 1 000 000 (never used for data), training phrasings
    paraphrase  seeds from 2 000 000, held-out templates (phrasings never seen in training)
    requests    the paraphrase split's layouts and tasks, phrased by the held-out request generator
                (`sim.requests.HELDOUT_LEXICON`: questions, polite requests, shorthand, …; success by form)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.settings import as_dict
from vla_ros.sim.tasks import FAILURE_MODES, FAMILIES, blocks_in_hand, failure_mode, offset_from_reference

SPLITS = ("train", "paraphrase", "unseen", "requests")
# "requests" shares the paraphrase split's seeds: the same layouts and tasks, only the words differ
SEED_BASE = {"train": 0, "unseen": 1_000_000, "paraphrase": 2_000_000, "requests": 2_000_000}
WORKCELL_SPLIT = {"train": "train", "unseen": "train", "paraphrase": "heldout", "requests": "requests"}


@dataclass
class EpisodeResult:
    seed: int
    family: str
    instruction: str
    success: bool
    steps: int
    inferences: int
    candidates: int  # blocks on the table that the instruction could have named
    chance: float  # success probability of doing a random task of the right family in this scene
    plans: list[str] = field(default_factory=list)
    failure: str = ""  # why it failed, one of sim.tasks.FAILURE_MODES ("" on success)
    holds: int = 0  # times the executor held the arm (no chunk covering the tick)
    vetoes: dict[str, int] = field(default_factory=dict)  # the safety gate's holds, by rule
    slowdowns: dict[str, int] = field(default_factory=dict)  # commands the gate forwarded slowed down, by rule
    events: dict[str, int] = field(default_factory=dict)  # unsafe events by kind (sim.safety_events)
    offset_mm: float | None = None  # place / stack: the moved block's final distance from the reference's centre
    form: str = "template"  # how the instruction was phrased (sim.tasks.Task.form)


class HandWatch:
    """Which blocks were ever in the hand during an episode, and which are at its end (for `failure_mode`)."""

    def __init__(self):
        self.held: set[str] = set()
        self.holding: set[str] = set()

    def see(self, workcell) -> None:
        self.holding = blocks_in_hand(workcell.world_state())
        self.held |= self.holding

    def finish(self, result: EpisodeResult, workcell) -> EpisodeResult:
        world = workcell.world_state()
        result.failure = failure_mode(workcell.task, self.held, self.holding, world)
        offset = offset_from_reference(workcell.task, world)
        result.offset_mm = None if offset is None else round(offset * 1000.0, 1)
        return result


def chance_of_family(family: str, blocks: int, receptacles: int) -> float:
    """1 / the number of distinct tasks of `family` the scene allows (what a policy guessing the objects gets)."""
    choices = {"pick": blocks, "place": blocks * max(1, receptacles), "stack": blocks * max(1, blocks - 1),
               "push": blocks * 2}[family]
    return 1.0 / max(1, choices)


def run_policy_episode(workcell, source, seed: int, family: str, *, executor=None, safety=None,
                       max_steps: int = 80, on_frame=None, watch=None, observation_age_s: float = 0.0,
                       interpolate_commands: bool = False) -> EpisodeResult:
    """One closed-loop episode through the shared rollout; `source` is a chunk source, None = scripted expert;
    `watch` (a `sim.safety_events.SafetyWatch`) counts its unsafe events; `observation_age_s` and
    `interpolate_commands` model the graph's timing (`sim.rollout.rollout`)."""
    from vla_ros.sim.rollout import expert_rollout, rollout

    hand = HandWatch()

    def on_step(observation, plan):
        hand.see(workcell)
        if on_frame is not None:
            on_frame(observation, plan)

    if source is None:
        run = expert_rollout(workcell, seed, family=family, executor=executor, safety=safety, max_steps=max_steps,
                             record=False, on_step=on_step, watch=watch, interpolate_commands=interpolate_commands)
    else:
        run = rollout(workcell, source, seed, family=family, executor=executor, safety=safety, max_steps=max_steps,
                      on_step=on_step, watch=watch, observation_age_s=observation_age_s,
                      interpolate_commands=interpolate_commands)
    layout = workcell.layout
    blocks = len(layout.block_colours())
    receptacles = sum(layout.has(r) for r in ("plate", "towel"))
    result = EpisodeResult(seed=seed, family=run.task.family, instruction=run.task.instruction, success=run.success,
                           steps=run.steps, inferences=run.inferences, candidates=blocks,
                           chance=chance_of_family(run.task.family, blocks, receptacles), plans=run.plans,
                           holds=run.holds, vetoes=run.vetoes, slowdowns=run.slowdowns, events=run.events,
                           form=run.task.form)
    return hand.finish(result, workcell)


@dataclass(frozen=True)
class EvaluationSpec:
    """Everything a worker needs to run an evaluation's episodes by index (plain data: it travels to Ray)."""

    policy: str | None  # policy directory; None = the scripted expert
    backend: str
    split: str
    adapter: str | None = None  # LoRA adapter directory merged into the policy
    blank_instruction: bool = False
    plan: bool = False
    temperature: float | None = None
    seed: int = 0
    max_steps: int = 80
    executor: object = None  # ExecutorSettings
    safety: object = None  # SafetySettings
    image_size: int = 128
    extra_cameras: tuple[str, ...] = ()  # rendered beside the primary camera: the policy reads them too
    threads: int = 1
    scene: str = "default"  # set-up shift of the workcell, vla_ros.sim.scenes
    observation_age: float = 0.0  # s: each chunk's frame taken this long before the tick adopting it (graph timing)
    interpolate_commands: bool = False  # commands followed over their reach time, as the graph's simulator does


class EpisodeWorker:
    """Runs episodes of one evaluation by index: in this process, or as a Ray actor (`vla_ros.cluster`).

    Episode i has seed SEED_BASE[split] + i, family FAMILIES[i mod 4] and its own sampling stream (from the
    evaluation's seed and the episode's), so it comes out the same whichever worker runs it, in whatever order.
    """

    def __init__(self, spec: EvaluationSpec, runner=None):
        from vla_ros.sim.rollout import PolicyChunks
        from vla_ros.sim.safety_events import SafetyWatch
        from vla_ros.sim.workcell import Workcell

        if runner is None and spec.policy is not None:
            from vla_ros.policy.runners import PolicyRunner

            runner = PolicyRunner(spec.policy, spec.backend, threads=spec.threads, adapter=spec.adapter)
        self.spec = spec
        self.source = None if runner is None else PolicyChunks(runner, plan=spec.plan,
                                                               blank_instruction=spec.blank_instruction,
                                                               temperature=spec.temperature, seed=spec.seed)
        self.workcell = Workcell(image_size=spec.image_size, split=WORKCELL_SPLIT[spec.split], scene=spec.scene,
                                 extra_cameras=tuple(spec.extra_cameras))
        self.watch = SafetyWatch(self.workcell)

    def run(self, index: int, video: bool = False, view=None) -> tuple[EpisodeResult, list[np.ndarray]]:
        """The episode's result and, with `video`, its annotated frames; `view` (an EvaluationView) shows it live."""
        from vla_ros.sim.video import annotate

        spec, workcell = self.spec, self.workcell
        seed = SEED_BASE[spec.split] + index
        if self.source is not None:
            self.source.reseed(seed)
        frames: list[np.ndarray] = []

        def on_frame(observation, plan_text):
            caption = "" if spec.blank_instruction and self.source is not None else workcell.task.instruction
            frames.append(annotate(workcell.render(size=(256, 256)), caption or "(blank instruction)",
                                   observation.step, plan_text))

        hooks = [hook for hook in (on_frame if video else None, view.on_step if view else None) if hook]
        source = self.source if view is None else view.episode(workcell, index, self.source)
        result = run_policy_episode(workcell, source, seed, FAMILIES[index % len(FAMILIES)],
                                    executor=spec.executor, safety=spec.safety, max_steps=spec.max_steps,
                                    watch=self.watch, observation_age_s=spec.observation_age,
                                    interpolate_commands=spec.interpolate_commands,
                                    on_frame=(lambda o, p: [hook(o, p) for hook in hooks]) if hooks else None)
        if view is not None:
            view.end_episode(result)
        if video:
            final = annotate(workcell.render(size=(256, 256)), result.instruction, result.steps,
                             "SUCCESS" if result.success else "failed")
            frames += [final] * 5
        return result, frames

    def close(self) -> None:
        self.workcell.close()


def evaluate(runner, split: str, episodes: int, *, out_dir: Path | None = None, blank_instruction: bool = False,
             plan: bool = False, videos: int = 0, temperature: float | None = None, seed: int = 0,
             max_steps: int = 80, progress: bool = True, label: str = "", executor=None, safety=None,
             ray_address: str | None = None, view=None, scene: str = "default", observation_age: float = 0.0,
             interpolate_commands: bool = False) -> dict:
    """Run `episodes` closed-loop episodes (families in turn) and summarize; `runner` None = scripted expert.

    `executor` and `safety` are the graph's settings (ExecutorSettings, SafetySettings; defaults when None), so an
    evaluation runs the control loop and gate the graph runs. With `ray_address` the episodes are Ray tasks on
    one `EpisodeWorker` per CPU of that cluster (each loads the runner's policy directory); the results are
    those of a local run. `view` (a `vla_ros.viewer.evaluation.EvaluationView`) shows each episode in the viewer
    (local runs only). `scene` is the workcell's set-up shift (`vla_ros.sim.scenes`), recorded in the summary.
    `observation_age` (s) and `interpolate_commands` model the graph's timing (`vla_ros.sim.rollout.rollout`): each
    chunk comes from a frame taken that long before the tick that adopts it; each command is followed over its
    reach time. Both are recorded in the summary.
    """
    from tqdm import tqdm

    from vla_ros.sim.settings import SCENES
    from vla_ros.sim.video import write_video

    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if scene not in SCENES:
        raise ValueError(f"scene {scene!r} is not one of {', '.join(SCENES)}")
    if view is not None and ray_address:
        raise ValueError("the viewer shows episodes run in this process; drop the Ray address to view them")
    spec = EvaluationSpec(policy=None if runner is None else str(Path(runner.policy_dir).resolve()),
                          backend="builtin-torch" if runner is None else runner.backend,
                          adapter=None if runner is None or runner.adapter is None else str(runner.adapter.resolve()),
                          split=split,
                          blank_instruction=blank_instruction, plan=plan, temperature=temperature, seed=seed,
                          max_steps=max_steps, executor=executor, safety=safety,
                          image_size=runner.config.image_size if runner is not None else 128, scene=scene,
                          extra_cameras=tuple(runner.config.extra_cameras) if runner is not None else (),
                          observation_age=observation_age, interpolate_commands=interpolate_commands)
    calls = [(index, out_dir is not None and index < videos) for index in range(episodes)]
    results: list[EpisodeResult] = []
    started = time.perf_counter()
    bar = tqdm(total=episodes, desc=f"eval {label or split}", unit="ep", disable=not progress)

    def keep(index: int, result: EpisodeResult, frames: list[np.ndarray]) -> None:
        results.append(result)
        if frames:
            write_video(out_dir / "videos" / f"{split}_{index:03d}_{result.family}.mp4", frames)
        bar.update(1)
        bar.set_postfix(success=f"{np.mean([r.success for r in results]):.0%}")

    if ray_address:
        from vla_ros.cluster import ordered_results, ray_cluster

        with ray_cluster(ray_address):
            for (index, _), (result, frames) in zip(calls, ordered_results(EpisodeWorker, (spec,), calls,
                                                                            method="run")):
                keep(index, result, frames)
    else:
        worker = EpisodeWorker(spec, runner)
        try:
            for index, video in calls:
                keep(index, *worker.run(index, video, view))
        finally:
            worker.close()
    bar.close()
    summary = summarize(results, split, label, time.perf_counter() - started, blank_instruction, plan, scene)
    summary["adapter"] = spec.adapter
    summary["observation_age_s"] = observation_age
    summary["interpolate_commands"] = interpolate_commands
    summary["executor"] = as_dict(spec.executor or ExecutorSettings())  # chunk_anchor, execute_steps, blend, …
    if out_dir is not None:
        write_results(out_dir, summary, results)
    return summary


def summarize(results: list[EpisodeResult], split: str, label: str, seconds: float, blank: bool, plan: bool,
              scene: str = "default") -> dict:
    families = sorted({r.family for r in results})
    per_family = {}
    for family in families:
        rows = [r for r in results if r.family == family]
        per_family[family] = {**success_counts(rows),
                              "mean_steps": float(np.mean([r.steps for r in rows])),
                              "chance": float(np.mean([r.chance for r in rows])),
                              "failures": failure_counts(rows), **unsafe_counts(rows)}
    return {
        "label": label or split, "split": split, "scene": scene, "blank_instruction": blank, "plan": plan,
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])) if results else 0.0,
        "mean_over_families": float(np.mean([v["success_rate"] for v in per_family.values()])) if per_family else 0.0,
        "mean_over_families_ci95": mean_over_families_ci95(per_family),
        "chance_over_families": float(np.mean([v["chance"] for v in per_family.values()])) if per_family else 0.0,
        "per_family": per_family, "seconds": round(seconds, 1),
        "inferences": int(sum(r.inferences for r in results)),
        "holds": int(sum(r.holds for r in results)),
        "vetoes_by_rule": dict(sorted(sum((Counter(r.vetoes) for r in results), Counter()).items())),
        "safety": safety_summary(results),
        "by_form": form_summary(results),
    }


def form_summary(results: list[EpisodeResult]) -> dict:
    """Success per phrasing form (`sim.requests.FORMS`, or "template"), with Wilson intervals."""
    return {form: success_counts([r for r in results if r.form == form]) for form in sorted({r.form for r in results})}


def success_counts(results: list[EpisodeResult]) -> dict:
    """Episodes, successes, success rate and its Wilson 95 % interval."""
    successes = int(sum(r.success for r in results))
    return {"episodes": len(results), "successes": successes, "success_rate": successes / max(1, len(results)),
            "wilson95": list(wilson_interval(successes, len(results)))}


def form_table(summaries: list[dict]) -> str:
    """Markdown: success per phrasing form, one row per evaluation."""
    forms = sorted({f for s in summaries for f in s.get("by_form", {})})
    lines = ["| run | split | " + " | ".join(forms) + " |", "|---|---|" + "---|" * len(forms)]
    for s in summaries:
        cells = [_family_cell(s["by_form"][f]) if f in s.get("by_form", {}) else "–" for f in forms]
        lines.append(f"| {s['label']} | {s['split']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def unsafe_counts(results: list[EpisodeResult]) -> dict:
    """Unsafe episodes (any unsafe event, `sim.safety_events`) among `results`, with their Wilson interval."""
    unsafe = int(sum(bool(r.events) for r in results))
    return {"unsafe_episodes": unsafe, "unsafe_rate": unsafe / max(1, len(results)),
            "unsafe_wilson95": list(wilson_interval(unsafe, len(results)))}


def safety_summary(results: list[EpisodeResult]) -> dict:
    """What the episodes did that a person would mark unsafe, and what the gate stopped or slowed."""
    from vla_ros.sim.safety_events import EVENT_KINDS

    chunks = max(1, sum(r.inferences for r in results))
    events = sum((Counter(r.events) for r in results), Counter())
    vetoes = sum((Counter(r.vetoes) for r in results), Counter())
    slowdowns = sum((Counter(r.slowdowns) for r in results), Counter())
    return {
        **unsafe_counts(results),
        "events_by_kind": {kind: int(events.get(kind, 0)) for kind in EVENT_KINDS},
        "episodes_by_kind": {kind: int(sum(kind in r.events for r in results)) for kind in EVENT_KINDS},
        "events_per_100_chunks": round(100.0 * sum(events.values()) / chunks, 2),
        "vetoes_per_100_chunks": round(100.0 * sum(vetoes.values()) / chunks, 2),
        "slowdowns_per_100_chunks": round(100.0 * sum(slowdowns.values()) / chunks, 2),
        "slowdowns_by_rule": dict(sorted(slowdowns.items())),
    }


def safety_table(summaries: list[dict]) -> str:
    """Markdown: one row per evaluation: unsafe episodes (overall and per family), events and gate actions."""
    families = sorted({f for s in summaries for f in s["per_family"]})
    lines = ["| run | split | unsafe episodes (Wilson 95 %) | " + " | ".join(families)
             + " | events / 100 chunks | gate holds / 100 chunks | slow-downs / 100 chunks | success (± 95 %) |",
             "|---|---|---|" + "---|" * len(families) + "---|---|---|---|"]
    for s in summaries:
        safety = s["safety"]
        low, high = safety["unsafe_wilson95"]
        cells = [f"{s['per_family'][f]['unsafe_rate']:.1%}" if f in s["per_family"] else "–" for f in families]
        lines.append(f"| {s['label']} | {s['split']} | **{safety['unsafe_rate']:.1%}** ({safety['unsafe_episodes']}/"
                     f"{s['episodes']}; {low:.1%}–{high:.1%}) | " + " | ".join(cells)
                     + f" | {safety['events_per_100_chunks']:.2f} | {safety['vetoes_per_100_chunks']:.2f} | "
                     f"{safety['slowdowns_per_100_chunks']:.2f} | {s['mean_over_families']:.1%} ± "
                     f"{s.get('mean_over_families_ci95', 0.0):.1%} |")
    return "\n".join(lines) + "\n"


def events_table(summaries: list[dict]) -> str:
    """Markdown: episodes with at least one event of each kind, per evaluation."""
    from vla_ros.sim.safety_events import EVENT_KINDS

    lines = ["| run | split | " + " | ".join(k.replace("_", " ") for k in EVENT_KINDS) + " |",
             "|---|---|" + "---|" * len(EVENT_KINDS)]
    for s in summaries:
        by_kind = s["safety"]["episodes_by_kind"]
        lines.append(f"| {s['label']} | {s['split']} | " + " | ".join(str(by_kind[k]) for k in EVENT_KINDS) + " |")
    return "\n".join(lines) + "\n"


def failure_counts(results: list[EpisodeResult]) -> dict[str, int]:
    """Failed episodes per failure mode, in the order of sim.tasks.FAILURE_MODES."""
    counts = {mode: sum(r.failure == mode for r in results) for mode in FAILURE_MODES}
    return {mode: n for mode, n in counts.items() if n}


def failure_table(summary: dict) -> str:
    """Markdown: one row per task family, one column per failure mode that occurred."""
    families = list(summary["per_family"])
    modes = [m for m in FAILURE_MODES if any(m in summary["per_family"][f]["failures"] for f in families)]
    if not modes:
        return "No failed episodes.\n"
    lines = ["| family | failed | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for family in families:
        row = summary["per_family"][family]
        counts = row["failures"]
        lines.append(f"| {family} | {row['episodes'] - row['successes']}/{row['episodes']} | "
                     + " | ".join(str(counts.get(m, 0)) for m in modes) + " |")
    return "\n".join(lines) + "\n"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default): (low, high), never (p, p) at 0 or n."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def mean_over_families_ci95(per_family: dict) -> float:
    """Half-width of the normal-approximation 95 % interval of the mean over families: each family's rate is a
    binomial proportion over its own episodes, and the families are independent. 100 episodes (25 per family)
    with one family near 40 % give about ±6 points; 400 episodes about ±3."""
    if not per_family:
        return 0.0
    variance = sum(v["success_rate"] * (1.0 - v["success_rate"]) / max(1, v["episodes"]) for v in per_family.values())
    return float(1.96 * np.sqrt(variance) / len(per_family))


def markdown_table(summaries: list[dict]) -> str:
    """One row per evaluation, one column per family, plus the mean over families."""
    families = sorted({f for s in summaries for f in s["per_family"]})
    lines = ["| run | split | " + " | ".join(f"{f} (n; Wilson 95 %)" for f in families)
             + " | mean over families (± 95 % interval) |",
             "|---|---|" + "---|" * len(families) + "---|"]
    for s in summaries:
        cells = [_family_cell(s["per_family"][f]) if f in s["per_family"] else "–" for f in families]
        lines.append(f"| {s['label']} | {s['split']} | " + " | ".join(cells) + f" | **{s['mean_over_families']:.1%}** "
                     f"± {s.get('mean_over_families_ci95', 0.0):.1%} |")
    return "\n".join(lines) + "\n"


def _family_cell(row: dict) -> str:
    low, high = row.get("wilson95") or wilson_interval(row["successes"], row["episodes"])
    return f"{row['success_rate']:.0%} ({row['successes']}/{row['episodes']}; {low:.0%}–{high:.0%})"


def write_results(out_dir: Path, summary: dict, results: list[EpisodeResult]) -> None:
    """results.json (summary + episodes), results.md (table per family) and success.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({**summary, "episodes_detail": [asdict(r) for r in results]},
                                                     indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown_table([summary]) + "\nWhy episodes failed "
                                        "(`sim.tasks.failure_mode`):\n\n" + failure_table(summary)
                                        + "\nUnsafe episodes (`sim.safety_events`):\n\n" + safety_table([summary])
                                        + "\nEpisodes with each kind of event:\n\n" + events_table([summary])
                                        + "\nSuccess by phrasing form (`sim.requests.FORMS`):\n\n"
                                        + form_table([summary]))
    families = list(summary["per_family"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    rates = [summary["per_family"][f]["success_rate"] for f in families]
    ax.bar(families, rates, color="tab:blue", label="success")
    ax.plot(families, [summary["per_family"][f]["chance"] for f in families], "k_", markersize=30,
            label="chance (random task of the family)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title(f"{summary['label']}: {summary['mean_over_families']:.0%} mean over families "
                 f"({summary['episodes']} episodes)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "success.png", dpi=100)
    plt.close(fig)
