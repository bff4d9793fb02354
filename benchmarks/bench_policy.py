"""Figures of the VLA policy: chunk latency per backend, and the closed-loop success table.

Latency: one observation → one chunk of 8 action ids (CNN, prefix, 8 generated tokens; the
instruction's MiniLM states are cached, as in the node) for HF `generate` without cache, our
KV-cached torch path, onnxruntime and onnxruntime with int8 MatMul weights (`builtin-onnx-int8`). Writes
runs/bench_policy/latency.json and latency.png; the CPU model is recorded with them.

Fusion (--fusion-latency): the same chunk latency (onnxruntime and our torch path, one thread) for an
untrained policy of the default size with each fusion (early, middle, late), with its parameter counts and
the time of one training step (batch 64, two threads). Writes runs/bench_policy/fusion.{json,md}.

Success (--success): the rows of docs/benchmarks.md — scripted expert, the policy on unseen seeds
(training phrasings), on held-out paraphrases, with the instruction blanked, and with the plan —
through `vla_ros.policy.evaluation`. Writes runs/bench_policy/success.{json,md,png}.

    python benchmarks/bench_policy.py [--policy models/policy/vla] [--repeats 200] [--threads 1 2]
    python benchmarks/bench_policy.py --fusion-latency [--repeats 200] [--train-steps 20]
    python benchmarks/bench_policy.py --success --policy models/policy/vla --episodes 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none): latency depends on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def untrained_policy(directory: Path, **overrides) -> Path:
    """The shipped architecture (with `overrides`) and random weights (latency does not depend on the weights)."""
    from vla_ros.policy.modeling_vla import new_policy
    from vla_ros.policy.onnx_export import export_policy_onnx
    from vla_ros.tokenizers.loading import load_tokenizer

    tokenizer = load_tokenizer(REPO / "models" / "tokenizers" / "vqvae")
    policy = new_policy(tokenizer, **overrides)
    policy.save_pretrained(directory)
    export_policy_onnx(policy, directory)
    return directory


def time_calls(function, repeats: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return np.asarray(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, default=None,
                        help="policy directory (default: an untrained policy of the shipped architecture)")
    parser.add_argument("--repeats", type=int, default=200, help="timed chunks per backend")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts to measure")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_policy")
    parser.add_argument("--success", action="store_true", help="run the closed-loop success table instead")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per success row")
    parser.add_argument("--fusion-latency", action="store_true",
                        help="compare early, middle and late fusion (untrained, default size) instead")
    parser.add_argument("--train-steps", type=int, default=20,
                        help="--fusion-latency: timed training steps per fusion (batch 64, 2 threads; 0 = none)")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.fusion_latency:
        return fusion_table(args.repeats, args.train_steps, args.out)
    if args.success:
        if args.policy is None:
            parser.error("--success needs --policy")
        return success_table(args.policy, args.episodes, args.out)
    import torch
    from tqdm import tqdm

    from vla_ros.policy.generation import generate_hf
    from vla_ros.policy.runners import PolicyRunner

    args.out.mkdir(parents=True, exist_ok=True)
    policy_dir = args.policy or untrained_policy(args.out / "untrained_policy")
    rng = np.random.default_rng(0)
    results: dict = {"policy": str(policy_dir), "repeats": args.repeats, "machine": f"2-core x86-64 CPU ({cpu_model()}), no GPU",
                     "rows": []}
    for threads in args.threads:
        torch_runner = PolicyRunner(policy_dir, "builtin-torch", threads=threads)
        onnx_runner = PolicyRunner(policy_dir, "builtin-onnx", threads=threads)
        int8_runner = PolicyRunner(policy_dir, "builtin-onnx-int8", threads=threads)
        torch.set_num_threads(threads)
        size = torch_runner.config.image_size
        image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        joints = rng.normal(0, 0.3, (1, 6)).astype(np.float32)
        instruction = ["put the red block on the plate"]
        policy = torch_runner.policy

        def hf_uncached():
            states, mask = torch_runner.encode_instructions(instruction)
            with torch.inference_mode():
                prefix = policy.prefix_embeddings(torch.from_numpy(image), torch.from_numpy(states),
                                                  torch.from_numpy(mask), torch.from_numpy(joints), torch.ones(1))
            return generate_hf(policy, prefix, use_cache=False)

        cases = {
            "HF generate, no KV cache (torch)": hf_uncached,
            "ours, KV cache (torch)": lambda: torch_runner.infer(image, instruction, joints, temperature=0),
            "ours, KV cache (onnxruntime CPU)": lambda: onnx_runner.infer(image, instruction, joints, temperature=0),
            "ours + plan, KV cache (onnxruntime CPU)": lambda: onnx_runner.infer(image, instruction, joints,
                                                                                  plan=True, temperature=0),
            "ours, KV cache (onnxruntime CPU, int8 weights)": lambda: int8_runner.infer(image, instruction, joints,
                                                                                         temperature=0),
        }
        assert np.array_equal(hf_uncached(), torch_runner.infer(image, instruction, joints, temperature=0).tokens)
        for name, function in tqdm(cases.items(), desc=f"{threads} thread(s)"):
            times = time_calls(function, args.repeats)
            results["rows"].append({"backend": name, "threads": threads, "p50_ms": float(np.percentile(times, 50)),
                                    "p95_ms": float(np.percentile(times, 95)), "mean_ms": float(times.mean())})
    baseline = {r["threads"]: r["p50_ms"] for r in results["rows"] if r["backend"].startswith("HF")}
    for row in results["rows"]:
        row["speedup_vs_hf_uncached"] = baseline[row["threads"]] / row["p50_ms"]
    (args.out / "latency.json").write_text(json.dumps(results, indent=2) + "\n")
    write_plot(args.out / "latency.png", results)
    print("| backend | threads | p50 ms | p95 ms | speed-up vs HF uncached (p50) |")
    print("|---|---|---|---|---|")
    for row in results["rows"]:
        print(f"| {row['backend']} | {row['threads']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
              f"{row['speedup_vs_hf_uncached']:.1f}× |")
    print(f"wrote {args.out / 'latency.json'} and latency.png")
    return 0


def fusion_table(repeats: int, train_steps: int, out: Path) -> int:
    """Latency per chunk (onnxruntime and torch, one thread), parameters and training-step time of each fusion."""
    import torch

    from vla_ros.policy.configuration_vla import FUSIONS
    from vla_ros.policy.runners import PolicyRunner

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    instruction = ["put the red block on the plate"]
    rows = []
    for fusion in FUSIONS:
        torch.manual_seed(0)
        directory = untrained_policy(out / f"untrained_{fusion}", fusion=fusion)
        onnx_runner = PolicyRunner(directory, "builtin-onnx", threads=1)
        torch_runner = PolicyRunner(directory, "builtin-torch", threads=1)
        torch.set_num_threads(1)
        config, policy = torch_runner.config, torch_runner.policy
        image = rng.integers(0, 256, (1, config.image_size, config.image_size, 3), dtype=np.uint8)
        joints = rng.normal(0, 0.3, (1, 6)).astype(np.float32)
        tokens = onnx_runner.infer(image, instruction, joints, temperature=0).tokens
        assert np.array_equal(tokens, torch_runner.infer(image, instruction, joints, temperature=0).tokens), fusion
        row = {"fusion": fusion, "prefix_length": config.prefix_length,
               "trained_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad),
               "frozen_parameters": sum(p.numel() for p in policy.parameters() if not p.requires_grad)}
        for name, runner in (("onnx", onnx_runner), ("torch", torch_runner)):
            times = time_calls(lambda: runner.infer(image, instruction, joints, temperature=0), repeats)
            row[f"{name}_p50_ms"] = float(np.percentile(times, 50))
            row[f"{name}_p95_ms"] = float(np.percentile(times, 95))
        if train_steps > 0:
            row["train_step_ms"] = training_step_ms(policy, train_steps)
        rows.append(row)
    results = {"repeats": repeats, "train_steps": train_steps, "batch_size": 64, "machine": f"2-core x86-64 CPU ({cpu_model()}), no GPU",
               "rows": rows}
    (out / "fusion.json").write_text(json.dumps(results, indent=2) + "\n")
    table = ("| fusion | prefix tokens | trained parameters | frozen parameters | onnxruntime p50 / p95 ms | "
             "torch p50 / p95 ms | training step ms (batch 64, 2 threads) |\n|---|---|---|---|---|---|---|\n")
    for row in rows:
        step = f"{row['train_step_ms']:.0f}" if "train_step_ms" in row else "-"
        table += (f"| {row['fusion']} | {row['prefix_length']} | {row['trained_parameters'] / 1e6:.2f} M | "
                  f"{row['frozen_parameters'] / 1e6:.2f} M | {row['onnx_p50_ms']:.2f} / {row['onnx_p95_ms']:.2f} | "
                  f"{row['torch_p50_ms']:.2f} / {row['torch_p95_ms']:.2f} | {step} |\n")
    table += "\nPer 8-token chunk, one observation, one thread, instruction states cached (as in the node).\n"
    (out / "fusion.md").write_text(table)
    print(table)
    print(f"wrote {out / 'fusion.json'} and fusion.md")
    return 0


def training_step_ms(policy, steps: int, batch_size: int = 64, threads: int = 2) -> float:
    """Median ms of make_batch + batch_loss + backward + AdamW step on random frames and tokens (the shipped
    recipe's loss weights), after two untimed steps."""
    import torch

    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import TextTable, batch_loss, make_batch
    from vla_ros.policy.training_data import IGNORE, EpisodeFrames, TrainingSet

    rng = np.random.default_rng(0)
    config, vocab, samples = policy.config, policy.vocab, 256
    size, chunk = config.image_size, config.chunk_size
    plans = np.full((samples, vocab.max_plan_tokens + 1), IGNORE, np.int64)
    plans[:, 0], plans[:, 1] = vocab.action_size, vocab.end_plan
    data = TrainingSet(
        images=EpisodeFrames([rng.integers(0, 256, (samples, size, size, 3), dtype=np.uint8)]),
        joint_pos=rng.normal(0, 0.3, (samples, 6)).astype(np.float32),
        tokens=rng.integers(0, config.action_vocab_size, (samples, config.tokens_per_chunk)),
        chunks=rng.normal(0, 0.5, (samples, chunk, 7)).astype(np.float32), plans=plans,
        places=rng.normal(0, 0.5, (samples, 4)).astype(np.float32), place_mask=np.ones((samples, 2), np.float32),
        episode=np.zeros(samples, np.int64), phrasings=[[0, 1]],
        instructions=["put the red block on the plate", "stack the blue block on the green block"])
    text = TextTable(data.instructions, config.text_tokens, config.text_states_layer)
    recipe = TrainRecipe(batch_size=batch_size)
    torch.set_num_threads(threads)
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 2):
        started = time.perf_counter()
        batch = make_batch(data, text, rng.integers(0, samples, batch_size), vocab, recipe, rng, generator, True)
        loss, _, _ = batch_loss(policy, batch, torch.device("cpu"), recipe.chunk_loss_weight,
                                recipe.grounding_loss_weight, recipe.role_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    torch.set_num_threads(1)
    policy.eval()
    return float(np.median(times) * 1e3)


def success_table(policy_dir: Path, episodes: int, out: Path) -> int:
    """Expert, policy (unseen, paraphrase), blank instruction and plan rows in one table."""
    import torch

    from vla_ros.policy.evaluation import evaluate, markdown_table
    from vla_ros.policy.runners import PolicyRunner

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    runner = PolicyRunner(policy_dir, "builtin-onnx")
    name = policy_dir.name
    rows = [
        dict(runner=None, split="unseen", label="scripted expert (upper bound)"),
        dict(runner=None, split="paraphrase", label="scripted expert (upper bound)"),
        dict(runner=runner, split="unseen", label=f"{name}"),
        dict(runner=runner, split="paraphrase", label=f"{name}"),
        dict(runner=runner, split="unseen", label=f"{name}, instruction blanked", blank_instruction=True),
        dict(runner=runner, split="unseen", label=f"{name} + plan (CoT)", plan=True),
        dict(runner=runner, split="paraphrase", label=f"{name} + plan (CoT)", plan=True),
    ]
    summaries = []
    for row in rows:
        summaries.append(evaluate(row.pop("runner"), row.pop("split"), episodes, **row, videos=0))
    table = markdown_table(summaries)
    blank = summaries[4]
    table += (f"\nInstruction blanked: {blank['mean_over_families']:.1%} success; chance of doing a random task of "
              f"the right family in these scenes: {blank['chance_over_families']:.1%}.\n")
    (out / "success.md").write_text(table)
    (out / "success.json").write_text(json.dumps(summaries, indent=2) + "\n")
    write_success_plot(out / "success.png", summaries)
    print(table)
    print(f"wrote {out / 'success.md'}, success.json and success.png")
    return 0


def write_success_plot(path: Path, summaries: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({f for s in summaries for f in s["per_family"]})
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(summaries)
    for index, summary in enumerate(summaries):
        rates = [summary["per_family"].get(f, {}).get("success_rate", 0.0) for f in families + []]
        rates.append(summary["mean_over_families"])
        positions = np.arange(len(families) + 1) + index * width
        ax.bar(positions, rates, width, label=f"{summary['label']} [{summary['split']}]")
    ax.set_xticks(np.arange(len(families) + 1) + 0.4 - width / 2, families + ["mean"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(9, 4))
    labels = [f"{r['backend']}\n{r['threads']} thr" for r in rows]
    ax.barh(labels, [r["p50_ms"] for r in rows], color="tab:blue", label="p50")
    ax.errorbar([r["p95_ms"] for r in rows], labels, fmt="k|", markersize=12, label="p95")
    ax.axvline(15, color="tab:red", linestyle="--", label="15 ms target")
    ax.set_xlabel("ms per 8-token chunk (observation → action ids)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
