"""The drafter training pipeline end to end on a tiny random target: features from JSONL,
stage-1 and stage-2 losses fall, exact resume, two processes through accelerate, and the
exported drafter generating losslessly in the engine."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch

import hivis
from hivis.cli import main as hivis_main
from hivis.drafter import HiViSDrafter
from hivis.selfcheck.inputs import random_image
from hivis.selfcheck.zoo import WORDS, build_tiny_target
from hivis.targets import Family, load_target
from hivis.train.cli import main as train_main
from hivis.train.features import FeatureStore
from hivis.train.objective import LossWeights
from hivis.train.trainer import DrafterTrainConfig, Stage, train

N_RECORDS = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaVA target, a JSONL data set and its HiViS feature store (made by the CLI)."""
    root = tmp_path_factory.mktemp("train")
    target_dir = build_tiny_target(Family.LLAVA, root / "target")
    (root / "images").mkdir()
    lines = []
    for i in range(N_RECORDS):
        random_image(i).save(root / "images" / f"{i}.png")
        rng = random.Random(i)
        question = "<image> " + " ".join(rng.choice(WORDS) for _ in range(3))
        answer = " ".join(rng.choice(WORDS) for _ in range(8))
        convo = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        lines.append(json.dumps({"id": str(i), "image": f"images/{i}.png", "conversations": convo}))
    convo = [{"from": "human", "value": "what"}, {"from": "gpt", "value": "red"}]
    lines += ["{not json", json.dumps({"id": "no-image", "conversations": convo})]
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    store = root / "features"
    code = hivis_main(
        [
            "train",
            "features",
            "--target",
            str(target_dir),
            "--data",
            str(root / "data.jsonl"),
            "--out",
            str(store),
            "--regenerate",
            "greedy",
            "--max-new-tokens",
            "12",
        ]
    )
    assert code == 0
    target = load_target(target_dir)
    records = FeatureStore.open(store, json.loads((store / "manifest.json").read_text())["target"])
    return root, target_dir, target, records.load_all()


def config(stage=Stage.STAGE1, steps=40, checkpoint_every=0):
    return DrafterTrainConfig(
        stage=stage,
        num_steps=1 if stage is Stage.STAGE1 else 3,
        lr=3e-3,
        warmup_steps=2,
        max_steps=steps,
        batch_size=8,
        checkpoint_every=checkpoint_every,
        log_every=1,
    )


def mean_loss(history, first: bool) -> float:
    part = history[:5] if first else history[-5:]
    return sum(h["loss"] for h in part) / len(part)


def test_train_features_manifest_counts_every_skipped_record(world):
    manifest = json.loads((world[0] / "features" / "manifest.json").read_text())
    read = manifest["skipped_when_read"]
    assert {reason: entry["count"] for reason, entry in read.items()} == {
        "invalid JSON": 1,
        "no image": 1,
    }
    assert read["invalid JSON"]["example"].startswith(f"line {N_RECORDS + 1}:")
    assert manifest["records"] == N_RECORDS


def test_train_stage1_then_stage2_losses_fall(world, tmp_path):
    _, _, target, records = world
    assert len(records) == N_RECORDS and all(r.loss_mask.any() for r in records)
    drafter = HiViSDrafter(target, num_steps=3)
    stage1 = train(drafter, records, config(), tmp_path / "s1", progress=False)
    assert mean_loss(stage1.history, first=False) < 0.7 * mean_loss(stage1.history, first=True)
    stage2 = train(drafter, records, config(Stage.STAGE2), tmp_path / "s2", progress=False)
    assert mean_loss(stage2.history, first=False) < 0.85 * mean_loss(stage2.history, first=True)
    last = stage2.history[-1]
    assert last["top1_2"] > 0 and 0 < last["rows_2"] < last["rows_0"]


def test_train_eagle_baseline_with_visual_rows(world, tmp_path):
    root, target_dir, target, _ = world
    store = tmp_path / "eagle"
    args = ["features", "--target", str(target_dir), "--data", str(root / "data.jsonl")]
    assert train_main([*args, "--out", str(store), "--eagle", "--limit", "8"]) == 0
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["target"]["hide_visual_tokens"] is False
    records = FeatureStore.open(store, manifest["target"]).load_all()
    image_id = target.model.config.image_token_id
    assert all((r.input_ids == image_id).any() for r in records)
    drafter = HiViSDrafter(target, num_steps=3, hide_visual_tokens=False)
    result = train(drafter, records, config(steps=20), tmp_path / "run", progress=False)
    assert mean_loss(result.history, first=False) < mean_loss(result.history, first=True)


def test_train_text_only_ablation_ignores_target_features(world, tmp_path):
    root, target_dir, target, records = world
    out = tmp_path / "text_only"
    args = ["stage1", "--target", str(target_dir), "--features", str(root / "features")]
    assert train_main([*args, "--out", str(out), "--max-steps", "3", "--text-only"]) == 0
    drafter = HiViSDrafter.load(out / "drafter", target)
    assert drafter.config.use_target_features is False
    r = records[0]
    ids, pos = r.input_ids[None], r.positions[:, None]
    with torch.no_grad():
        a = drafter(ids, r.hidden_in[None], pos, 0, None)
        b = drafter(ids, torch.randn_like(r.hidden_in)[None], pos, 0, None)
        c = drafter(ids, torch.randn_like(r.hidden_in)[None], pos, 1, None)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    image = root / "images" / "0.png"
    prompt = "USER: <image> what color is the circle\nASSISTANT:"
    fast = hivis.generate(target, drafter, [image], prompt, max_new_tokens=12)
    assert fast.token_ids == hivis.autoregressive(target, [image], prompt, 12).token_ids


class Interrupt(Exception):
    pass


def test_train_resume_gives_the_uninterrupted_weights(world, tmp_path):
    _, _, target, records = world
    cfg = config(steps=6, checkpoint_every=2)
    torch.manual_seed(1)
    reference = HiViSDrafter(target, num_steps=3)
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    train(reference, records, cfg, tmp_path / "ref", progress=False)

    def stop_after_three(step, _metrics):
        if step == 3:
            raise Interrupt

    first = HiViSDrafter(target, num_steps=3)
    first.load_state_dict(initial)
    with pytest.raises(Interrupt):
        train(first, records, cfg, tmp_path / "run", on_step=stop_after_three, progress=False)
    resumed = HiViSDrafter(target, num_steps=3)
    resumed.load_state_dict(initial)  # a fresh process: the checkpoint at step 2 restores it
    result = train(resumed, records, cfg, tmp_path / "run", progress=False)
    assert [h["step"] for h in result.history] == list(range(1, 7))
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_train_two_processes_match_one(world, tmp_path):
    _, target_dir, _, _ = world
    losses = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            str(n),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "hivis.train.cli",
            "stage1",
            "--target",
            str(target_dir),
            "--features",
            str(world[0] / "features"),
            "--out",
            str(out),
            "--max-steps",
            "6",
            "--batch-size",
            "8",
            "--lr",
            "3e-3",
            "--warmup-steps",
            "2",
            "--log-every",
            "1",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        losses[n] = [entry["loss"] for entry in log]
        assert (out / "drafter" / "config.json").exists()
    assert len(losses[1]) == len(losses[2]) == 6
    for one, two in zip(losses[1], losses[2], strict=True):
        assert abs(one - two) <= 0.05 * abs(one), (losses[1], losses[2])


def test_train_export_loads_and_stays_lossless(world, tmp_path):
    root, _, target, records = world
    drafter = HiViSDrafter(target, num_steps=3)
    train(drafter, records, config(steps=30), tmp_path / "s1", progress=False)
    drafter.save(tmp_path / "exported")
    loaded = HiViSDrafter.load(tmp_path / "exported", target)
    for i in range(3):
        image = root / "images" / f"{i}.png"
        prompt = "USER: <image> what color is the circle\nASSISTANT:"
        fast = hivis.generate(target, loaded, [image], prompt, max_new_tokens=16)
        slow = hivis.autoregressive(target, [image], prompt, max_new_tokens=16)
        assert fast.token_ids == slow.token_ids


def test_train_feature_store_of_another_target_is_refused(world, tmp_path, capsys):
    root, _, _, _ = world
    other = build_tiny_target(Family.LLAVA, tmp_path / "other", spec=_other_spec())
    args = ["stage1", "--target", str(other), "--features", str(root / "features")]
    code = train_main([*args, "--out", str(tmp_path / "x"), "--max-steps", "1"])
    assert code == 2
    assert "made by another target (fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _other_spec():
    from hivis.selfcheck.zoo import TinySpec

    return TinySpec(seed=7)


def test_train_weights_default_to_the_papers():
    weights = LossWeights()
    assert (weights.w_p, weights.w_v) == (0.1, 1.0)
    cfg = DrafterTrainConfig(max_steps=1)
    assert cfg.lr == 3e-5 and cfg.betas == (0.9, 0.95) and cfg.grad_clip == 0.5


def test_each_epoch_takes_every_record_once_and_grouping_cuts_the_padding():
    """A mix like the world's (short answers, a few long-form ones): each epoch is a
    deterministic partition of the records, epochs differ, and length-grouped batches pad
    far fewer rows than random ones."""
    from hivis.train.trainer import batches_per_epoch, global_batch

    lengths = [300 if i % 6 == 0 else 20 + i % 13 for i in range(1000)]
    per_epoch = batches_per_epoch(len(lengths), 16)
    padded = {}
    for grouped in (False, True):
        config = DrafterTrainConfig(max_steps=1, batch_size=16, length_grouped=grouped, seed=3)
        epochs = [
            [global_batch(lengths, config, e * per_epoch + i) for i in range(per_epoch)]
            for e in range(2)
        ]
        for batches in epochs:
            assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert epochs[0] != epochs[1]
        assert epochs[0][5] == global_batch(lengths, config, 5)
        padded[grouped] = sum(len(b) * max(lengths[i] for i in b) for b in epochs[0])
    assert padded[True] < 0.5 * padded[False]
