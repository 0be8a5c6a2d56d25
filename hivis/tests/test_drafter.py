"""The HiViS drafter: text-only prefill, cache consistency, save/load and fit checks."""

from __future__ import annotations

import json

import pytest
import torch

import hivis
from hivis.drafter import DrafterMismatchError, HiViSDrafter, drafter_rows
from hivis.engine import GenerationConfig, speculative_generate
from hivis.selfcheck.inputs import random_image, random_prompt
from hivis.selfcheck.zoo import TinySpec
from hivis.targets import Family
from hivis.targets.inputs import image_token_id


@pytest.mark.parametrize("family", list(Family))
def test_drafter_prefill_has_no_visual_position(tiny_target, family):
    target = tiny_target(family)
    prepared = target.prepare([random_image(3)], random_prompt(family, 3))
    with torch.inference_mode():
        _, hidden = target.prefill(prepared, target.new_cache())
        tokens, features, positions = drafter_rows(prepared, hidden, hide_visual_tokens=True)
        all_tokens, _, all_positions = drafter_rows(prepared, hidden, hide_visual_tokens=False)
    visual = prepared.visual_mask
    assert int(visual.sum()) > 0
    assert image_token_id(target.model) not in tokens[0].tolist()
    # Every text position but position 0 (which has no previous feature).
    text_cols = [j for j in range(1, prepared.length) if not bool(visual[j])]
    assert tokens.shape[1] == len(text_cols)
    # Rows keep the target's own position ids, at text positions only.
    assert torch.equal(positions[:, 0], prepared.positions[:, text_cols])
    assert torch.equal(features[0], hidden[0, [j - 1 for j in text_cols]])
    # The EAGLE-style baseline gets every row, visual ones included.
    assert all_tokens.shape[1] == prepared.length - 1
    assert torch.equal(all_positions[:, 0], prepared.positions[:, 1:])
    torch.manual_seed(0)
    out = hivis.generate(
        target, HiViSDrafter(target), [random_image(3)], random_prompt(family, 3), max_new_tokens=3
    )
    assert out.metrics.drafter_prefill_length == len(text_cols)


def _recorded_generation(target, drafter, prepared, max_new, adaptive=False):
    """Run a generation, recording each step-0 drafter output (the root feature)."""
    roots = []

    def hook(module, args, output):
        step = args[3] if len(args) > 3 else 0
        if int(torch.as_tensor(step).max()) == 0:
            roots.append((args[0][0, -1].item(), args[2][:, 0, -1].clone(), output[0, -1].clone()))

    handle = drafter.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            config = GenerationConfig(max_new, adaptive=adaptive)
            out = speculative_generate(target, drafter, prepared, config)
    finally:
        handle.remove()
    return out, roots


@pytest.mark.parametrize(
    ("family", "adaptive"),
    [(Family.LLAVA, False), (Family.QWEN2_VL, False), (Family.LLAVA, True)],
)
def test_drafter_cache_equals_full_recompute(tiny_target, family, adaptive):
    # The incremental drafter (KV cache, trees dropped, accepted rows fed) must produce,
    # at every step, the same root feature as a from-scratch causal pass over the final
    # committed sequence with the target's own hidden states. With adaptive drafting, rows
    # queued during skipped steps are fed in one batch at the next probe.
    target = tiny_target(family)
    torch.manual_seed(4)
    drafter = HiViSDrafter(target).eval()
    image, prompt = random_image(5), random_prompt(family, 5)
    prepared = target.prepare([image], prompt)
    out, roots = _recorded_generation(target, drafter, prepared, 30 if adaptive else 16, adaptive)
    assert len(roots) >= 3
    if adaptive:
        assert len(roots) < out.metrics.verify_steps  # some steps really were skipped
    full_ids = torch.cat([prepared.input_ids, torch.tensor([out.token_ids])], dim=1)
    with torch.inference_mode():
        full = target.prepare([image], prompt)
        cache = target.new_cache()
        _, hidden_prompt = target.prefill(full, cache)
        gen = torch.tensor(out.token_ids)
        tree_mask = torch.ones(len(gen), len(gen), dtype=torch.bool).tril()
        _, hidden_gen = target.forward_tree(
            gen, torch.arange(len(gen)), tree_mask, prepared.next_position, cache
        )
        hidden = torch.cat([hidden_prompt[0], hidden_gen], dim=0)
        keep = [
            j
            for j in range(1, full_ids.shape[1] - 1)
            if j >= prepared.length or not bool(prepared.visual_mask[j])
        ]
        rows = len(prepared.positions)
        positions = torch.cat(
            [
                prepared.positions,
                (prepared.next_position + torch.arange(len(gen))).expand(rows, -1),
            ],
            dim=1,
        )
        ids = full_ids[:, keep]
        feats = hidden[[j - 1 for j in keep]][None]
        pos = positions[:, keep][:, None, :]
        reference = drafter(ids, feats, pos, 0)[0]
    by_position = {int(p[0]): reference[i] for i, p in enumerate(pos[:, 0].T)}
    for _token, position, feature in roots:
        torch.testing.assert_close(feature, by_position[int(position[0])], atol=2e-4, rtol=1e-4)


def test_save_load_round_trip(tiny_target, tmp_path):
    target = tiny_target(Family.IDEFICS3)
    torch.manual_seed(6)
    drafter = HiViSDrafter(target, num_steps=3, hide_visual_tokens=False)
    drafter.save(tmp_path / "d")
    saved = json.loads((tmp_path / "d" / "config.json").read_text())
    assert saved["format_version"] == 1 and saved["family"] == "idefics3"
    loaded = HiViSDrafter.load(tmp_path / "d", target)
    assert loaded.config == drafter.config
    state = drafter.state_dict()
    assert set(loaded.state_dict()) == set(state)
    assert not any("embed" in k or "lm_head" in k for k in state)  # shared parts not saved
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key])
    image, prompt = random_image(1), random_prompt(Family.IDEFICS3, 1)
    a = hivis.generate(target, drafter, [image], prompt, max_new_tokens=8, adaptive=False)
    b = hivis.generate(
        target, str(tmp_path / "d"), [image], prompt, max_new_tokens=8, adaptive=False
    )
    assert a.token_ids == b.token_ids
    assert a.metrics.accepted_per_step == b.metrics.accepted_per_step


def test_load_refuses_other_target(tiny_target, tmp_path):
    llava = tiny_target(Family.LLAVA)
    HiViSDrafter(llava).save(tmp_path / "d")
    with pytest.raises(DrafterMismatchError, match="family: drafter 'llava' vs target 'smolvlm'"):
        HiViSDrafter.load(tmp_path / "d", tiny_target(Family.SMOLVLM))
    wide = tiny_target(Family.LLAVA, TinySpec(hidden_size=96, num_heads=4, num_kv_heads=2))
    with pytest.raises(DrafterMismatchError, match="hidden_size: drafter 64 vs target 96"):
        HiViSDrafter.load(tmp_path / "d", wide)
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "d" / "config.json").write_text(json.dumps(config))
    with pytest.raises(DrafterMismatchError, match="format version 99"):
        HiViSDrafter.load(tmp_path / "d", llava)
    with pytest.raises(FileNotFoundError, match="holds no hivis drafter"):
        HiViSDrafter.load(tmp_path / "nothing", llava)


def test_generate_refuses_unfit_drafter_object(tiny_target):
    drafter = HiViSDrafter(tiny_target(Family.LLAVA))
    other = tiny_target(Family.LLAVA_NEXT)
    with pytest.raises(DrafterMismatchError):
        hivis.generate(other, drafter, [random_image(0)], "<image> what", max_new_tokens=2)


def test_residual_row_clamps_to_last(tiny_target):
    target = tiny_target(Family.LLAVA)
    torch.manual_seed(0)
    drafter = HiViSDrafter(target, num_steps=2).eval()
    ids = torch.tensor([[10, 11]])
    feats = torch.randn(1, 2, target.hidden_size)
    pos = torch.arange(2).view(1, 1, 2)
    with torch.inference_mode():
        late = drafter(ids, feats, pos, 7)
        last = drafter(ids, feats, pos, 1)
        first = drafter(ids, feats, pos, 0)
    torch.testing.assert_close(late, last)
    assert not torch.allclose(first, last)


@pytest.mark.parametrize("family", [Family.LLAVA, Family.IDEFICS3, Family.QWEN2_VL])
def test_lean_layer_equals_the_hf_layer(tiny_target, family):
    """The drafter's inference layer (fused projections, plain tensor calls) computes what the
    HF layer computes, on a prefill and on tree rows over a cache; kinds it does not reproduce
    (M-RoPE layers) get None and keep the HF layer."""
    from hivis.kv_cache import growing_cache
    from hivis.lean_layer import lean_layer_for
    from hivis.targets.base import additive_tree_mask

    target = tiny_target(family)
    torch.manual_seed(6)
    drafter = HiViSDrafter(target).eval()
    lean = lean_layer_for(drafter.layer)
    if target.mrope:
        assert lean is None
        return
    assert lean is not None
    hidden = target.hidden_size
    ids, feats = torch.randint(0, 50, (1, 9)), torch.randn(1, 9, hidden)
    pos = torch.arange(9).view(1, 1, -1)
    tree = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    outputs = []
    with torch.inference_mode():
        for layer in (None, lean):
            cache = growing_cache(1)
            first = drafter(ids, feats, pos, 0, None, cache, layer)
            mask = additive_tree_mask(tree, 9, feats.dtype)
            rows = drafter(ids[:, :3], feats[:, :3], pos[:, :, :3] + 9, 1, mask, cache, layer)
            outputs.append((first, rows))
    for hf, ours in zip(*outputs, strict=True):
        torch.testing.assert_close(ours, hf, atol=1e-5, rtol=1e-5)


def test_drafter_target_and_scripted_proposer_meet_the_engine_contracts(tiny_target):
    from hivis.protocols import DraftSession, Proposer, TargetModel
    from hivis.selfcheck.proposers import oracle_proposer

    target = tiny_target(Family.LLAVA)
    drafter = HiViSDrafter(target)
    assert isinstance(target, TargetModel)
    prompt = target.prepare([random_image(0)], random_prompt(Family.LLAVA, 0))
    hidden = torch.zeros(1, prompt.length, target.hidden_size)
    for proposer in (drafter, oracle_proposer([5, 6], target.vocab_size)):
        assert isinstance(proposer, Proposer)
        assert isinstance(proposer.begin(target, prompt, hidden, 5), DraftSession)
    assert not isinstance(object(), Proposer)


def test_drafter_of_another_same_shape_target_is_refused(tiny_target, tmp_path):
    """Same family and sizes, other weights: refused naming the weights; allowed on request.
    Another head layout at the same hidden size: refused naming the field, not a raw
    size-mismatch error."""
    from hivis.drafter import DrafterMismatchError

    mine = tiny_target(Family.LLAVA)
    HiViSDrafter(mine).save(tmp_path / "d")
    other = tiny_target(Family.LLAVA, TinySpec(seed=1))
    with pytest.raises(DrafterMismatchError, match="trained on another target.*embedding"):
        HiViSDrafter.load(tmp_path / "d", other)
    assert HiViSDrafter.load(tmp_path / "d", other, allow_other_target=True) is not None
    heads = tiny_target(Family.LLAVA, TinySpec(num_heads=8, num_kv_heads=4))
    with pytest.raises(DrafterMismatchError, match="num_attention_heads: drafter 4 vs target 8"):
        HiViSDrafter.load(tmp_path / "d", heads)


def test_fingerprint_survives_a_dtype_change(target_dir, tiny_target, tmp_path):
    from hivis.targets import load_target

    HiViSDrafter(tiny_target(Family.LLAVA)).save(tmp_path / "d")
    half = load_target(target_dir(Family.LLAVA), dtype=torch.bfloat16)
    assert HiViSDrafter.load(tmp_path / "d", half).fc.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("damage", ["truncate", "garbage", "config", "missing-key"])
def test_damaged_drafter_files_are_named(tiny_target, tmp_path, damage):
    from safetensors.torch import load_file, save_file

    from hivis.drafter import DrafterFileError

    target = tiny_target(Family.LLAVA)
    directory = HiViSDrafter(target).save(tmp_path / "d")
    weights, config = directory / "drafter.safetensors", directory / "config.json"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"not a safetensors file at all")
    elif damage == "config":
        config.write_text(config.read_text()[:40])
    else:
        state = load_file(str(weights))
        state.pop(sorted(state)[0])
        save_file(state, str(weights))
    named = "config.json" if damage == "config" else "drafter.safetensors"
    with pytest.raises(DrafterFileError, match=named):
        HiViSDrafter.load(directory, target)
