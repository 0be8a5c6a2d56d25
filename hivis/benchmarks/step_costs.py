"""What one speculative step is made of, on the shipped world: a drafter call, a target decode
step, a target tree pass.

    python hivis/benchmarks/step_costs.py [--rows 4] [--tree-nodes 25] [--threads 1]

* drafter: the HiViS drafter with a 20-row prefix in its KV cache, one call on ``--rows`` tree
  rows (logits included), through the HF decoder layer and through ``hivis.lean_layer``
  (checked to give the same logits), and the lean call part by part;
* target: after the prefill of a held-out test prompt, one ``decode_one`` step and one
  ``forward_tree`` pass over a ``--tree-nodes`` tree (4 children per node), through the HF
  text model and through ``hivis.targets.lean`` (checked to give the same logits);
* the KV-cache work of one step alone (``--tree-nodes`` rows appended to each of the target's
  layers, a 4-node accepted path kept, cropped back) with growing layers and with the
  target's ``StackedCache``.

Caches are cropped back after each call (``hivis.kv_cache.crop``), so a timed call starts
from the same cache each time. Median of 7 batches (300 drafter calls, 100 target
calls each).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hivis.kv_cache import crop, full_attention_cache, growing_cache, keep_rows
from hivis.lean_layer import lean_layer_for
from hivis.targets.base import additive_tree_mask
from hivis.tree import build_tree
from hivis.world.drafters.shipped import DrafterKind, load_world, test_cases


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
    parser.add_argument("--tree-nodes", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = load_world(kinds=(DrafterKind.HIVIS,))
    drafter = world.drafters[DrafterKind.HIVIS]
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
            crop(cache, base)
            return drafter.logits(out)

        same = torch.equal(call(None), call(lean))
        hf, ours = median_ms(lambda: call(None)), median_ms(lambda: call(lean))
        parts = drafter_parts(drafter, lean, (ids, feats, pos, mask), cache, base)
        steps = {name: target_costs(t, args.tree_nodes) for name, t in _targets(world).items()}
    print(
        f"threads {args.threads}: drafter call on {args.rows} rows: HF layer {hf:.3f} ms, lean "
        f"layer {ours:.3f} ms ({hf / ours:.2f}x, identical logits: {same})"
    )
    for name, (decode, tree, _) in steps.items():
        print(
            f"target through {name}: decode step {decode:.2f} ms, {args.tree_nodes}-node tree "
            f"pass {tree:.2f} ms ({tree / decode:.2f} decode steps)"
        )
    same = all(torch.equal(a, b) for a, b in zip(*(s[2] for s in steps.values()), strict=True))
    print(f"target logits identical through both: {same}")
    print(
        f"KV cache work of one step ({args.tree_nodes} rows appended to each of the target's "
        "layers, a 4-node path kept, cropped back): "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in cache_costs(world.target, args.tree_nodes))
    )
    print("lean drafter call, part by part: " + ", ".join(f"{k} {v:.3f} ms" for k, v in parts))


def drafter_parts(drafter, lean, inputs, cache, base: int) -> list[tuple[str, float]]:
    """Milliseconds of each part of a lean drafter call: embedding + cat + fc (the fused
    input), the rotary cos/sin tables, the decoder layer, the LM head."""
    ids, feats, pos, mask = inputs
    embed = drafter._shared[0]
    residual = drafter.residual[1].expand(*ids.shape, -1)

    def fused_input():
        return drafter.fc(torch.cat([embed(ids), feats, residual], dim=-1))

    fused = fused_input()
    rope = drafter.rotary(fused, pos[0])

    def layer():
        out = lean(fused, mask, rope, cache)
        crop(cache, base)
        return out

    out = layer()
    return [
        ("fused input", median_ms(fused_input)),
        ("rotary tables", median_ms(lambda: drafter.rotary(fused, pos[0]))),
        ("decoder layer", median_ms(layer)),
        ("LM head", median_ms(lambda: drafter.logits(out))),
    ]


def cache_costs(target, nodes: int) -> list[tuple[str, float]]:
    """Milliseconds of a step's cache operations alone, per cache kind, at the target's
    shapes after a prefill of the test prompt's length: append ``nodes`` rows to every layer,
    keep a 4-node path (``keep_rows``), crop back to the prefix."""
    config = target.text_config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    case = test_cases(1)[0]
    prefix = target.prepare([case.image], case.prompt).length
    layers = int(config.num_hidden_layers)
    rows = torch.randn(1, heads, nodes, head_dim)
    kept = torch.tensor([0, 1, 5, 21]) if nodes >= 22 else torch.arange(min(4, nodes))
    out = []
    for name, cache in (
        ("growing layers", growing_cache(layers)),
        ("one stacked buffer", full_attention_cache(target.model.config)),
    ):
        block = torch.randn(1, heads, prefix, head_dim)
        for i in range(layers):
            cache.update(block, block, i)

        def step(cache=cache):
            for i in range(layers):
                cache.update(rows, rows, i)
            keep_rows(cache, prefix, kept)
            crop(cache, prefix)

        out.append((name, median_ms(step)))
    return out


def _targets(world) -> dict:
    """The shipped target through the HF text model and through the lean forward."""
    return {"HF modules": world.target.with_lean(False), "hivis.targets.lean": world.target}


def target_costs(target, nodes: int) -> tuple[float, float, tuple]:
    """Milliseconds of one decode step and of one ``nodes``-node tree pass after a prefill,
    and the logits of each (decode [V], tree [nodes, V])."""
    case = test_cases(1)[0]
    cache = target.new_cache()
    target.prefill(target.prepare([case.image], case.prompt), cache)
    length = cache.get_seq_length()
    tree = build_tree([5] * nodes, [-1] + [(i - 1) // 4 for i in range(1, nodes)])

    def decode():
        target.decode_one(5, length, cache)
        crop(cache, length)

    def verify():
        target.forward_tree(tree.tokens, tree.depths, tree.ancestor_mask, length, cache)
        crop(cache, length)

    logits = (
        target.decode_one(5, length, cache),
        target.forward_tree(tree.tokens, tree.depths, tree.ancestor_mask, length, cache)[0],
    )
    crop(cache, length)
    return median_ms(decode, calls=100), median_ms(verify, calls=100), logits


if __name__ == "__main__":
    main()
