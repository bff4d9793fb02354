"""`vla-ros train`, `vla-ros eval` and `vla-ros export-policy`: the built-in VLA policy's offline tools.

Heavy imports (torch, transformers, MuJoCo) stay inside the handlers so that `vla-ros --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from vla_ros.commands.argument_types import (check_training_paths, non_negative_float, non_negative_int, positive_int,
                                             unit_float)
from vla_ros.core.stages.policy import LOCAL_BACKENDS as BACKENDS
from vla_ros.policy.configuration_vla import FUSIONS, TEXT_ENCODER_LAYERS
from vla_ros.sim.settings import SCENES

SPLITS = ("train", "paraphrase", "unseen", "requests")  # vla_ros.policy.evaluation.SPLITS (not imported: --help stays fast)


def register(subparsers: argparse._SubParsersAction) -> None:
    from vla_ros.policy.recipe import TrainRecipe

    defaults = TrainRecipe()
    train = subparsers.add_parser(
        "train", help="train the built-in VLA policy on a demonstration data set",
        description="Train the VLA policy (CNN image tokens + MiniLM instruction states + joint positions → "
                    "small Llama → action tokens of the given tokenizer) from scratch, with early (default), middle "
                    "or late fusion of vision and language (--fusion; docs/policy.md). Writes "
                    "OUT/config.json, OUT/model.safetensors, OUT/tokenizer/, OUT/onnx/{prefix,step}.onnx, "
                    "OUT/training_report.json and OUT/loss_curve.png. Checkpoints go to OUT/checkpoint.pt and a "
                    "re-run with the same arguments resumes from it. Uses a CUDA GPU when one is present; runs under "
                    "Hugging Face accelerate, so `torchrun --nproc_per_node N -m vla_ros.cli train …` (or "
                    "`accelerate launch`) trains with DDP over N processes. Frames of a dataset.hdf5 stay on disk and "
                    "are read per batch by --workers DataLoader processes.")
    train.add_argument("--data", type=Path, nargs="+", required=True,
                       help="data set: a directory holding dataset.hdf5, a LeRobotDataset (v3.0 or v2.1) or "
                            "demonstration bags (docs/demonstrations.md); several are pooled")
    train.add_argument("--tokenizer", type=Path, required=True,
                       help="action tokenizer directory (e.g. models/tokenizers/vqvae)")
    train.add_argument("--out", type=Path, required=True, help="output policy directory (created if missing)")
    train.add_argument("--steps", type=positive_int, default=defaults.steps,
                       help=f"optimizer steps (default {defaults.steps})")
    train.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                       help=f"samples per step (default {defaults.batch_size})")
    train.add_argument("--lr", type=float, default=defaults.learning_rate,
                       help=f"peak learning rate (default {defaults.learning_rate})")
    train.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    train.add_argument("--threads", type=positive_int, default=defaults.threads,
                       help=f"torch CPU threads (default {defaults.threads})")
    train.add_argument("--eval-every", type=positive_int, default=defaults.eval_every,
                       help=f"validate every N steps (default {defaults.eval_every})")
    train.add_argument("--checkpoint-every", type=positive_int, default=defaults.checkpoint_every,
                       help=f"write OUT/checkpoint.pt every N steps (default {defaults.checkpoint_every})")
    train.add_argument("--no-paraphrase", action="store_true",
                       help="train on the recorded instruction only (no paraphrase augmentation)")
    train.add_argument("--extra-phrasings", action=argparse.BooleanOptionalAction, default=defaults.extra_phrasings,
                       help="also paraphrase with the extra training phrasings of vla_ros/sim/tasks.py (some name "
                            "the lower block first; the shipped recipe does, docs/policy.md)")
    train.add_argument("--terse", action="store_true",
                       help="also train on terse variants of the training phrasings (without 'the' / 'block'); "
                            "not in the shipped recipe (docs/policy.md)")
    train.add_argument("--generated-phrasings", type=non_negative_int, default=defaults.generated_phrasings,
                       metavar="N",
                       help="also paraphrase with N requests per task from the training request generator "
                            "(vla_ros/sim/requests.py: questions, polite requests, shorthand, other verbs and nouns; "
                            f"never the held-out generator's words) (default {defaults.generated_phrasings})")
    train.add_argument("--generated-share", type=unit_float, default=defaults.generated_share, metavar="P",
                       help="with --generated-phrasings: give a sample a generated request with probability P and "
                            "one of the training phrasings otherwise (default: drawn alike from both, so each "
                            "training phrasing becomes rarer the more requests are generated)")
    train.add_argument("--model", default="{}",
                       help="JSON of model overrides, e.g. '{\"hidden_size\": 128, \"num_layers\": 2}'")
    train.add_argument("--fusion", choices=FUSIONS, default=None,
                       help="where vision meets language (overrides --model's): early = instruction-conditioned "
                            "(FiLM) image tokens next to the instruction's word pieces in the decoder (the shipped "
                            "policy); middle = image tokens run through MiniLM's last, frozen layers next to the word "
                            "pieces (a trained bridge into the language model); late = each image token fused with "
                            "one instruction vector, no word pieces in the decoder (default early)")
    train.add_argument("--bridge-layers", type=positive_int, default=None, metavar="N",
                       help=f"with --fusion middle: how many of MiniLM's last layers see the image tokens "
                            f"(1-{TEXT_ENCODER_LAYERS}; the others see the instruction alone) (default 2)")
    train.add_argument("--episodes", type=positive_int, default=None,
                       help="use the first N successful training episodes of each data set only (default: all)")
    train.add_argument("--workers", type=non_negative_int, default=1,
                       help="DataLoader worker processes reading frames (default 1; 0 = in the training process)")
    train.add_argument("--restart", action="store_true", help="ignore an existing OUT/checkpoint.pt")
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval", help="closed-loop success of a policy in the simulated workcell",
        description="Roll a policy out in the simulated workcell (in-process, MuJoCo, simulated time) through the "
                    "graph's chunk executor and safety gate (settings from --graph), over N episodes with the task families in turn. Writes OUT/results.json, "
                    "OUT/results.md (success per task family), OUT/success.png and a few rollout videos in "
                    "OUT/videos/. Splits: 'train' = the training seeds, 'unseen' = new seeds with training "
                    "phrasings, 'paraphrase' = new seeds with held-out phrasings, 'requests' = the paraphrase seeds "
                    "phrased as people ask (held-out request generator: questions, polite requests, shorthand, "
                    "other verbs and nouns; success per form in results.md).")
    evaluate.add_argument("--policy", required=True,
                          help="policy directory (from 'vla-ros train'), or 'expert' for the scripted expert")
    evaluate.add_argument("--adapter", type=Path, default=None,
                          help="LoRA adapter directory (`vla-ros finetune`) trained on --policy, merged at load")
    evaluate.add_argument("--episodes", type=positive_int, required=True, help="number of episodes")
    evaluate.add_argument("--split", choices=SPLITS, required=True, help="which seeds and phrasings")
    evaluate.add_argument("--scene", choices=SCENES, default="default",
                          help="set-up shift of the workcell (docs/sim.md): default, camera_shift (over_shoulder "
                               "moved 8 cm and turned 7°) or appearance (table colour, lighting, block shades); "
                               "recorded in results.json (default default)")
    evaluate.add_argument("--blank-instruction", action="store_true",
                          help="give the policy an empty instruction (the language ablation)")
    evaluate.add_argument("--plan", action="store_true", help="generate the chain-of-thought plan before actions")
    evaluate.add_argument("--blend", action="store_true",
                          help="temporal ensembling as the executor's blend:=true: a chunk every step, each step the "
                               "weighted mean of the chunks covering it (default: plain switching, 3 steps per chunk)")
    evaluate.add_argument("--backend", choices=BACKENDS, default="builtin-torch",
                          help="inference backend (default builtin-torch)")
    evaluate.add_argument("--observation-age", type=non_negative_float, default=0.0, metavar="SECONDS",
                          help="model the graph's timing: each chunk comes from a frame taken this long before the "
                               "tick that adopts it, the arm moving meanwhile (through ROS: camera phase, inference "
                               "and transport, 0.05-0.15 s); below one control period (default 0: as trained)")
    evaluate.add_argument("--interpolate-commands", action="store_true",
                          help="model the graph's arm: each command is followed over its reach time, as widowx_sim's "
                               "trajectory followers do, instead of the target jumping at the tick")
    evaluate.add_argument("--temperature", type=non_negative_float, default=None,
                          help="sampling temperature (default: the policy's, 0.1; 0 = greedy)")
    evaluate.add_argument("--videos", type=int, default=4, help="episodes to record as MP4 (default 4)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    evaluate.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1)")
    evaluate.add_argument("--out", type=Path, default=None,
                          help="output directory (default runs/eval/<policy>_<split>[_blank][_plan][_blend][_<scene>])")
    evaluate.add_argument("--graph", default="widowx",
                          help="graph whose chunk_executor and safety_monitor settings the rollout uses (name under "
                               "config/ or a YAML path; default widowx)")
    evaluate.add_argument("--arg", dest="graph_args", nargs="+", action="extend", default=[],
                          metavar="NAME:=VALUE",
                          help="graph arguments, as for `vla-ros launch`, e.g. execute_steps:=4 (repeatable)")
    evaluate.add_argument("--ray", metavar="ADDRESS", default=None,
                          help="run the episodes as tasks on this Ray cluster, one worker per CPU ('auto', "
                               "HOST:PORT, ray://HOST:PORT, or 'local' to start one here); results are those of a "
                               "local run (every node needs the policy at the same path)")
    evaluate.add_argument("--view", action="store_true",
                          help="show every episode in the viewer as it runs (as `vla-ros view`: web viewer on "
                               "localhost:9090, or the native viewer with a display); it keeps serving until Ctrl-C")
    evaluate.add_argument("--view-save", default=None, metavar="FILE.rrd",
                          help="write the episodes' view to this rerun file instead (open it with `rerun FILE`)")
    evaluate.set_defaults(func=_eval)

    export = subparsers.add_parser(
        "export-policy", help="export a policy to ONNX for the builtin-onnx backend",
        description="Export a saved policy to POLICY/onnx/prefix.onnx and POLICY/onnx/step.onnx (with --adapter: the "
                    "policy with the adapter merged, to ADAPTER/onnx/), then check that onnxruntime gives the same "
                    "greedy tokens as torch on random observations.")
    export.add_argument("--policy", type=Path, required=True, help="policy directory")
    export.add_argument("--adapter", type=Path, default=None,
                        help="LoRA adapter trained on --policy: merge it and write ADAPTER/onnx/ instead")
    export.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import train_policy

    if not args.tokenizer.is_dir():
        raise SystemExit(f"vla-ros train: --tokenizer {args.tokenizer} is not a directory; give a saved tokenizer "
                         f"such as models/tokenizers/vqvae")
    if args.generated_share is not None and not args.generated_phrasings:
        raise SystemExit("vla-ros train: --generated-share needs --generated-phrasings N (N > 0): there are no "
                         "generated requests to share the samples with")
    for data in args.data:
        check_training_paths("train", data, args.out)
    try:
        overrides = json.loads(args.model)
        if not isinstance(overrides, dict):
            raise ValueError("not an object")
    except ValueError:
        raise SystemExit(f"vla-ros train: --model {args.model!r} is not a JSON object of model fields")
    overrides.update(fusion_overrides(args.fusion, args.bridge_layers, overrides.get("fusion", "early")))
    recipe = TrainRecipe(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         threads=args.threads, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                         paraphrase=not args.no_paraphrase, terse=args.terse,
                         extra_phrasings=args.extra_phrasings, generated_phrasings=args.generated_phrasings,
                         generated_share=args.generated_share)
    try:
        data = args.data[0] if len(args.data) == 1 else args.data
        report = train_policy(data, args.tokenizer, args.out, recipe, overrides, resume=not args.restart,
                              episodes=args.episodes, workers=args.workers)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        raise SystemExit(f"vla-ros train: {exc}")
    if not report["written"]:
        return 0  # another process of a distributed run writes OUT and reports
    selected = report["selected_eval"] or report["final_eval"] or {}
    print(f"wrote {args.out}: {report['parameters'] / 1e6:.2f} M parameters, {report['train_samples']} samples, "
          f"{report['train_seconds'] / 60:.1f} min on {report['device']}; weights of step {report['selected_step']}, "
          f"valid token accuracy {selected.get('token_accuracy', float('nan')):.3f}")
    return 0


def fusion_overrides(fusion: str | None, bridge_layers: int | None, model_fusion: str = "early") -> dict:
    """The model fields --fusion and --bridge-layers set (`model_fusion`: the fusion --model asks for)."""
    overrides = {"fusion": fusion} if fusion else {}
    if bridge_layers is not None:
        if (fusion or model_fusion) != "middle":
            raise SystemExit("vla-ros train: --bridge-layers applies to --fusion middle only")
        if bridge_layers > TEXT_ENCODER_LAYERS:
            raise SystemExit(f"vla-ros train: --bridge-layers {bridge_layers} is more than MiniLM's "
                             f"{TEXT_ENCODER_LAYERS} layers")
        overrides["bridge_layers"] = bridge_layers
    return overrides


def _eval(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from vla_ros.policy.evaluation import evaluate, failure_table, form_table, markdown_table, safety_table

    torch.set_num_threads(args.threads)
    runner = None
    name = "expert"
    if args.policy != "expert":
        from vla_ros.policy.modeling_vla import PolicyLoadError
        from vla_ros.policy.runners import PolicyRunner

        try:
            runner = PolicyRunner(args.policy, args.backend, threads=args.threads, adapter=args.adapter)
        except PolicyLoadError as exc:
            raise SystemExit(f"vla-ros eval: --policy {args.policy}: {exc}")
        name = Path(args.policy).name + (f"+{args.adapter.name}" if args.adapter else "")
    elif args.blank_instruction or args.plan or args.blend or args.adapter:
        raise SystemExit("vla-ros eval: --blank-instruction, --plan, --blend and --adapter apply to a learned policy, "
                         "not 'expert'")
    suffix = "_blank" if args.blank_instruction else ""
    suffix += "_plan" if args.plan else ""
    suffix += "_blend" if args.blend else ""
    suffix += "" if args.scene == "default" else f"_{args.scene}"
    suffix += f"_age{round(args.observation_age * 1000)}ms" if args.observation_age else ""
    suffix += "_interp" if args.interpolate_commands else ""
    out = args.out or Path("runs/eval") / f"{name}_{args.split}{suffix}"
    label = (f"{name}{' (blank instruction)' if args.blank_instruction else ''}{' + plan' if args.plan else ''}"
             f"{' + blend' if args.blend else ''}{'' if args.scene == 'default' else f' [{args.scene}]'}"
             f"{f' (frames {args.observation_age * 1000:.0f} ms old)' if args.observation_age else ''}"
             f"{' (interpolated commands)' if args.interpolate_commands else ''}")
    from dataclasses import replace

    from vla_ros.graphs.pipeline import PipelineError, pipeline_settings

    try:
        settings = pipeline_settings(args.graph, args.graph_args)
    except PipelineError as exc:
        raise SystemExit(f"vla-ros eval: {exc}")
    executor = replace(settings.executor, blend=True) if args.blend else settings.executor
    if args.observation_age >= executor.control_period_s:
        raise SystemExit(f"vla-ros eval: --observation-age {args.observation_age:g} s must be below one control period "
                         f"({executor.control_period_s:g} s)")
    view, endpoint = _evaluation_view(args)
    try:
        summary = evaluate(runner, args.split, args.episodes, out_dir=out, blank_instruction=args.blank_instruction,
                           plan=args.plan, videos=args.videos, temperature=args.temperature, seed=args.seed,
                           label=label, executor=executor, safety=settings.safety, ray_address=args.ray, view=view,
                           scene=args.scene, observation_age=args.observation_age,
                           interpolate_commands=args.interpolate_commands)
    except ConnectionError as exc:
        raise SystemExit(f"vla-ros eval: --ray: {exc}")
    print(markdown_table([summary]))
    print(failure_table(summary))
    print(safety_table([summary]))
    if set(summary["by_form"]) != {"template"}:
        print(form_table([summary]))
    print(f"wrote {out}/results.json, results.md, success.png and {min(args.videos, args.episodes)} videos "
          f"({summary['seconds']:.0f} s)")
    if endpoint is not None:
        view.recording.rr.flush()
        if endpoint.mode == "file":
            view.recording.rr.disconnect()  # closes the file with its footer
        print(f"vla-ros eval: viewer: {endpoint.describe()}", flush=True)
        if endpoint.mode == "web":
            print("vla-ros eval: serving the episodes until Ctrl-C", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


def _evaluation_view(args: argparse.Namespace):
    """(EvaluationView, endpoint) for --view / --view-save, or (None, None); one sentence when it cannot start."""
    if not (args.view or args.view_save):
        return None, None
    if args.ray:
        raise SystemExit("vla-ros eval: --view shows episodes run in this process; it cannot be used with --ray")
    import rerun as rr

    from vla_ros.robot.urdf import load_robot
    from vla_ros.viewer.evaluation import EvaluationView
    from vla_ros.viewer.recording import APPLICATION_ID, blueprint
    from vla_ros.viewer.server import ViewerError, ViewerSettings, start_viewer

    settings = ViewerSettings(viewer="file", save_path=args.view_save) if args.view_save else ViewerSettings()
    stream = rr.RecordingStream(APPLICATION_ID)
    try:
        endpoint = start_viewer(stream, settings, blueprint())
    except ViewerError as exc:
        raise SystemExit(f"vla-ros eval: {exc}")
    print(f"vla-ros eval: viewer: {endpoint.describe()}", flush=True)
    return EvaluationView(stream, load_robot()), endpoint


def _export(args: argparse.Namespace) -> int:
    import numpy as np

    from vla_ros.policy.adapters import load_policy
    from vla_ros.policy.modeling_vla import PolicyLoadError
    from vla_ros.policy.onnx_export import export_policy_onnx
    from vla_ros.policy.runners import PolicyRunner

    try:
        policy = load_policy(args.policy, args.adapter)
        folder = export_policy_onnx(policy, args.policy, adapter_dir=args.adapter)
        torch_runner = PolicyRunner(args.policy, "builtin-torch", adapter=args.adapter)
        onnx_runner = PolicyRunner(args.policy, "builtin-onnx", adapter=args.adapter)
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros export-policy: {exc}")
    size = policy.config.image_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    instructions = ["pick up the red block", "push the blue block to the left"] * 8
    joints = rng.normal(0, 0.5, (16, 6)).astype(np.float32)
    same = (torch_runner.infer(images, instructions, joints, temperature=0).tokens
            == onnx_runner.infer(images, instructions, joints, temperature=0).tokens).all(1).mean()
    print(f"wrote {folder}/prefix.onnx and step.onnx (onnxruntime {onnx_runner.session.providers[0]}); "
          f"greedy chunks identical to torch on {same:.0%} of 16 random observations")
    return 0 if same == 1.0 else 1
