"""Cost of one drafter call on tree rows: the HF decoder layer vs ``hivis.lean_layer``.

    python hivis/benchmarks/drafter_call.py [--rows 4] [--threads 1]

Loads the shipped world's HiViS drafter, feeds a 20-row prefix into its KV cache, then times
one call on ``--rows`` tree rows (cache cropped back after each call, logits included), both
ways, median of 7 batches of 300 calls. Also checks that both give the same logits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hivis.lean_layer import lean_layer_for
from hivis.targets.base import additive_tree_mask
from hivis.targets.cache import growing_cache
from hivis.world.shipped import DrafterKind, load_world


def median_ms(fn, calls: int = 300, batches: int = 7) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    drafter = load_world(kinds=(DrafterKind.HIVIS,)).drafters[DrafterKind.HIVIS]
    hidden = drafter.config.hidden_size
    lean = lean_layer_for(drafter.layer)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        cache = growing_cache(1)
        prefix = torch.randint(0, 100, (1, 20), generator=gen)
        prefix_feats = torch.randn(1, 20, hidden, generator=gen)
        drafter(prefix, prefix_feats, torch.arange(20).view(1, 1, -1), 0, None, cache)
        base = 20
        rows = args.rows
        ids = torch.randint(0, 100, (1, rows), generator=gen)
        feats = torch.randn(1, rows, hidden, generator=gen)
        pos = torch.full((1, 1, rows), base + 1)
        mask = additive_tree_mask(torch.eye(rows, dtype=torch.bool), base, feats.dtype)

        def call(layer):
            out = drafter(ids, feats, pos, 1, mask, cache, layer)[0]
            for cached in cache.layers:
                cached.keys = cached.keys[:, :, :base]
                cached.values = cached.values[:, :, :base]
            return drafter.logits(out)

        same = torch.equal(call(None), call(lean))
        hf, ours = median_ms(lambda: call(None)), median_ms(lambda: call(lean))
    print(
        f"rows {rows}, threads {args.threads}: HF layer {hf:.3f} ms, lean layer {ours:.3f} ms "
        f"({hf / ours:.2f}x), identical logits: {same}"
    )


if __name__ == "__main__":
    main()
