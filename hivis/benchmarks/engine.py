"""Engine benchmark on a tiny LLaVA target on CPU (random weights, built offline).

Measures, in one process and interleaved, the time per generated token of:
  autoregressive     hivis harness, target alone with KV cache
  hf_greedy          the target's own ``generate(do_sample=False)``
  hf_prompt_lookup   HF assisted generation with ``prompt_lookup_num_tokens`` (external peer)
  random_drafter     an untrained HiViS drafter (worst case: it knows nothing), adaptive
  random_drafter_always_draft   the same with adaptive drafting off (a tree every step)
  eagle_random       the same untrained drafter, EAGLE-style (visual rows visible)
  oracle_chain/tree  an oracle proposing the target's own continuation (upper bound)
  good80_chain/tree  the oracle made wrong at ~20 % of positions (a "mostly right" drafter)
Oracle-based drafters cost ~nothing to run, so their rows bound what verification allows.
and reports ratios to ``autoregressive`` from medians over repetitions.

    python hivis/benchmarks/engine.py --json hivis/benchmarks/engine.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time

import torch
from transformers.utils import logging

import hivis
from hivis.hf import generate_prepared, hf_generate
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.selfcheck.proposers import oracle_proposer
from hivis.selfcheck.zoo import TinySpec, build_tiny_target
from hivis.targets import Family, load_target
from hivis.tree import TreeConfig

# 8 x 512 text layers (a target step costs several drafter steps), 256 visual tokens per image.
SPEC = TinySpec(
    hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4, image_size=64, patch_size=4
)


def _time(fn) -> tuple[float, list[int], dict]:
    start = time.perf_counter()
    tokens, info = fn()
    return time.perf_counter() - start, tokens, info


def _methods(target, drafters, image, prompt, max_new, tree):
    prepared = target.prepare([image], prompt)
    reference = generate_prepared(target, prepared, max_new + 8)
    vocab = target.vocab_size

    def hf(**kw):
        def run():
            out = hf_generate(target, [image], prompt, max_new, **kw)
            return out.token_ids, {}

        return run

    def spec(drafter, tree_config, adaptive=True):
        def run():
            out = hivis.generate(
                target, drafter, [image], prompt, max_new, tree=tree_config, adaptive=adaptive
            )
            return out.token_ids, out.metrics.to_dict()

        return run

    def ar():
        out = hivis.autoregressive(target, [image], prompt, max_new)
        return out.token_ids, out.metrics.to_dict()

    oracle = oracle_proposer(reference, vocab)
    good = oracle_proposer(reference, vocab, accuracy=0.8, seed=1)
    depth = tree.depth
    return {
        "autoregressive": ar,
        "hf_greedy": hf(),
        "hf_prompt_lookup": hf(prompt_lookup_num_tokens=depth),
        "random_drafter": spec(drafters["hivis"], tree),
        "random_drafter_always_draft": spec(drafters["hivis"], tree, adaptive=False),
        "eagle_random": spec(drafters["eagle"], tree),
        "oracle_chain": spec(oracle, TreeConfig.chain(depth)),
        "oracle_tree": spec(oracle, tree),
        "good80_chain": spec(good, TreeConfig.chain(depth)),
        "good80_tree": spec(good, tree),
    }


def run(reps: int, prompts: int, max_new: int, tree: TreeConfig, threads: int) -> dict:
    logging.disable_progress_bar()
    torch.set_num_threads(min(threads, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_target(Family.LLAVA, tmp, SPEC)
        target = load_target(tmp)
    torch.manual_seed(0)
    drafters = {
        "hivis": hivis.HiViSDrafter(target),
        "eagle": hivis.HiViSDrafter(target, hide_visual_tokens=False),
    }
    per_token: dict[str, list[float]] = {}
    info: dict[str, list[dict]] = {}
    for p in range(prompts):
        image, prompt = random_image(100 + p, (64, 64)), random_prompt(Family.LLAVA, 100 + p)
        methods = _methods(target, drafters, image, prompt, max_new, tree)
        _time(methods["autoregressive"])  # warm-up
        expected = None
        for _ in range(reps):
            for name, fn in methods.items():
                seconds, tokens, extra = _time(fn)
                expected = tokens if name == "autoregressive" else expected
                if name != "hf_prompt_lookup" and tokens != expected:
                    raise AssertionError(f"{name} is not lossless on prompt {p}")
                per_token.setdefault(name, []).append(seconds / len(tokens))
                info.setdefault(name, []).append(extra)
    return _summarise(per_token, info, target, tree, reps, prompts, max_new)


def _summarise(per_token, info, target, tree, reps, prompts, max_new) -> dict:
    base = statistics.median(per_token["autoregressive"])
    rows: dict[str, dict] = {}
    for name, times in per_token.items():
        median = statistics.median(times)
        row = {"ms_per_token": 1000 * median, "time_ratio_vs_autoregressive": median / base}
        row["speedup"] = base / median
        metrics = [m for m in info[name] if m]
        if metrics:
            row["acceptance_length"] = statistics.mean(m["acceptance_length"] for m in metrics)
            row["drafter_prefill_ratio"] = statistics.mean(
                m["drafter_prefill_ratio"] for m in metrics
            )
            for part in ("prefill_s", "draft_s", "verify_s"):
                row[part] = statistics.median(m[part] for m in metrics)
            # Decode phase only: time after the prefill's first token, per later token.
            row["decode_ms_per_token"] = 1000 * statistics.median(
                (m["total_s"] - m["prefill_s"]) / max(1, m["new_tokens"] - 1) for m in metrics
            )
        rows[name] = row
    decode_base = rows["autoregressive"]["decode_ms_per_token"]
    for row in rows.values():
        if "decode_ms_per_token" in row:
            row["decode_speedup"] = decode_base / row["decode_ms_per_token"]
    return {
        "random_drafter_slowdown": rows["random_drafter"]["time_ratio_vs_autoregressive"],
        "oracle_decode_speedup": rows["oracle_chain"]["decode_speedup"],
        "oracle_speedup": rows["oracle_chain"]["speedup"],
        "oracle_tree_speedup": rows["oracle_tree"]["speedup"],
        "methods": rows,
        "setup": {
            "target": f"LLaVA, text {SPEC.num_layers} layers x hidden {SPEC.hidden_size}",
            "params": sum(p.numel() for p in target.model.parameters()),
            "tree": vars(tree),
            "chain_depth": tree.depth,
            "reps": reps,
            "prompts": prompts,
            "max_new_tokens": max_new,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="minutes"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--tree", default="10,4,3", help="TOTAL,DEPTH,TOPK")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a machine shared with others)"
    )
    args = parser.parse_args()
    total, depth, top_k = (int(x) for x in args.tree.split(","))
    tree = TreeConfig(total_tokens=total, depth=depth, top_k=top_k)
    result = run(args.reps, args.prompts, args.max_new_tokens, tree, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
