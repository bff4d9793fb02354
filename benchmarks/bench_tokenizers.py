"""Encode/decode latency per chunk of the shipped tokenizers, torch and onnxruntime, into docs/benchmarks.md.

Usage: python benchmarks/bench_tokenizers.py [--models models/tokenizers] [--repeats 300]
Writes runs/bench_tokenizers.json and replaces the `## Action tokenizers` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Action tokenizers"
HEADER = "# Benchmarks\n\nMachine: 2-core x86-64 CPU, no GPU, Debian 12, Python 3.11.\n"


def _latency_ms(fn, repeats: int) -> dict:
    for _ in range(20):  # warm-up: first calls allocate and (onnxruntime) plan memory
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}


def measure(models: Path, repeats: int) -> dict:
    import onnxruntime
    import torch

    from vla_ros.tokenizers import OnnxActionDecoder, export_decoder_onnx, load_tokenizer
    from vla_ros.tokenizers.synthetic import synthetic_episodes
    from vla_ros.tokenizers.chunking import chunks_from_episodes

    torch.set_num_threads(1)
    chunk = chunks_from_episodes(synthetic_episodes(1, seed=0), 8)[:1]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for directory in sorted(p for p in models.iterdir() if (p / "config.json").is_file()):
            tokenizer = load_tokenizer(directory)
            tokens = tokenizer.encode(chunk)
            onnx_path = export_decoder_onnx(tokenizer, Path(tmp) / f"{directory.name}.onnx")
            decoder = OnnxActionDecoder(onnx_path, providers=["CPUExecutionProvider"])
            results[directory.name] = {
                "kind": tokenizer.kind,
                "tokens_per_chunk": tokenizer.tokens_per_chunk,
                "weights_bytes": (directory / "model.safetensors").stat().st_size,
                "onnx_bytes": onnx_path.stat().st_size,
                "encode_torch": _latency_ms(lambda: tokenizer.encode(chunk), repeats),
                "decode_torch": _latency_ms(lambda: tokenizer.decode(tokens), repeats),
                "decode_onnxruntime_cpu": _latency_ms(lambda: decoder.decode(tokens), repeats),
            }
    return {"machine": platform.processor() or platform.machine(), "torch_threads": 1, "onnxruntime_threads": 1,
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "repeats": repeats,
            "tokenizers": results}


def markdown_section(result: dict) -> str:
    lines = [
        SECTION,
        "",
        f"`python benchmarks/bench_tokenizers.py` — one chunk (batch 1, 8 steps) per call, 1 thread, "
        f"median (p95) over {result['repeats']} calls after warm-up; torch {result['torch']}, "
        f"onnxruntime {result['onnxruntime']} (CPU provider). Decode = token ids → un-normalized 8×7 chunk.",
        "",
        "| tokenizer | tokens/chunk | weights | encode torch | decode torch | decode onnxruntime |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result["tokenizers"].items():
        def cell(key):
            return f"{r[key]['median_ms']:.3f} ms ({r[key]['p95_ms']:.3f})"

        lines.append(f"| {name} | {r['tokens_per_chunk']} | {r['weights_bytes'] / 1e6:.2f} MB | {cell('encode_torch')} "
                     f"| {cell('decode_torch')} | {cell('decode_onnxruntime_cpu')} |")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace (or append) only this section, leaving other engineers' sections untouched."""
    text = doc.read_text() if doc.is_file() else HEADER
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "tokenizers", help="directory of tokenizers")
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per measurement (default 300)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md", help="markdown file to update")
    args = parser.parse_args()
    result = measure(args.models, args.repeats)
    out = ROOT / "runs" / "bench_tokenizers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    section = markdown_section(result)
    write_section(args.doc, section)
    print(section)
    print(f"wrote {out} and the '{SECTION}' section of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
