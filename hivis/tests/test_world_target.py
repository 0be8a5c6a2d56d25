"""The world's tiny target: builds, saves, reloads through the Auto classes, generates, trains."""

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_world import TINY_WORLD_SCENES, TINY_WORLD_TARGET
from transformers import AutoModelForImageTextToText, AutoProcessor

from hivis.world.cli import main as world_cli
from hivis.world.data.dataset import Split, make_sample
from hivis.world.data.scenes import (
    ALL_PATCH_LABELS,
    COLOURS,
    COUNT_KEYS,
    FACT_SLOTS,
    OBJECT_COUNT_LABELS,
    PATCH_LABELS,
    RGB,
    Background,
    Colour,
    Scene,
    SceneObject,
    Shape,
    Size,
    render_scene,
    scene_counts,
    scene_facts,
)
from hivis.world.data.tasks import NUMBER_WORDS, count_colour, count_shape
from hivis.world.data.tokenizer import answer_text, prompt_text
from hivis.world.target.aux_eval import evaluate_aux_heads
from hivis.world.target.aux_heads import COUNT_CLASSES, attribute_word_ids, aux_head_for, aux_losses
from hivis.world.target.batches import _with_extra_questions, make_batch
from hivis.world.target.checkpoint import export_checkpoint
from hivis.world.target.config import TargetTrainConfig, TrainState
from hivis.world.target.evaluate import Breakdown, EvalMode, evaluate, generate_answers
from hivis.world.target.model import TargetConfig, save_target, sincos_2d
from hivis.world.target.packing import IGNORE, pack_batch, segment_exact_match
from hivis.world.target.steps import forward_losses, forward_precision, optimizer_for, train_step
from hivis.world.target.train import train_target, train_target_in_fresh_processes


def _items(count, start=0):
    samples = [
        make_sample(0, Split.TRAIN, i, TINY_WORLD_SCENES) for i in range(start, start + count)
    ]
    return [(render_scene(s.scene), list(s.tasks)) for s in samples]


def test_world_default_target_fits_the_budget():
    """>= 256 visual tokens; about <= 9 M parameters (<= 18 MB in float16)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    cfg = TargetConfig()
    assert cfg.num_visual_tokens >= 256
    with torch.device("meta"):
        from hivis.world.target.model import llava_config

        class _Tok:  # the sizes llava_config reads from a tokenizer
            bos_token_id, eos_token_id, pad_token_id, image_token = 1, 2, 0, "<image>"

            def __len__(self):
                return 640

            def convert_tokens_to_ids(self, token):
                return 3

        config = llava_config(cfg, _Tok())
        assert isinstance(config, LlavaConfig)
        model = LlavaForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) <= 9_000_000
    assert config.text_config.num_hidden_layers >= 6


def test_world_sincos_rows_are_distinct_and_bounded():
    table = sincos_2d(16, 32)
    assert table.shape == (256, 32)
    assert table.abs().max() <= 1.0
    assert torch.cdist(table, table).add(torch.eye(256)).min() > 1e-3  # all rows differ


def test_world_target_saves_reloads_and_generates(world_target, tmp_path):
    model, processor = world_target
    save_target(model, processor, tmp_path / "t")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "t").eval()
    proc = AutoProcessor.from_pretrained(tmp_path / "t")
    image, tasks = _items(1)[0]
    inputs = proc(images=image, text=prompt_text(tasks[0].question), return_tensors="pt")
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    assert (inputs["input_ids"] == image_id).sum() == TINY_WORLD_TARGET.num_visual_tokens
    with torch.no_grad():
        reference = model(**inputs).logits
        reloaded = again(**inputs).logits
    assert torch.equal(reference, reloaded)
    out = again.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    # float16 copy: half the bytes, same architecture
    save_target(model, processor, tmp_path / "h", dtype=torch.float16)
    half = AutoModelForImageTextToText.from_pretrained(tmp_path / "h")
    assert half.dtype == torch.float16
    assert next(model.parameters()).dtype == torch.float32  # caller's model untouched
    size = (tmp_path / "h" / "model.safetensors").stat().st_size
    assert size < 0.6 * (tmp_path / "t" / "model.safetensors").stat().st_size


def test_world_packed_logits_equal_separate_passes(world_target):
    model, processor = world_target
    items = _items(2)
    batch = pack_batch(items, processor, TINY_WORLD_TARGET.num_visual_tokens)
    with torch.no_grad():
        packed = model(**batch.model_inputs()).logits
        seg = 0
        for row, (image, tasks) in enumerate(items):
            for task in tasks:
                text = prompt_text(task.question) + answer_text(task.answer)
                inputs = processor(images=image, text=text, return_tensors="pt")
                alone = model(**inputs).logits[0]
                pos = (batch.segment_ids[row] == seg).nonzero()[:, 0]
                n = len(pos)
                torch.testing.assert_close(
                    packed[row, pos], alone[-n - 1 : -1], atol=1e-4, rtol=1e-4
                )
                assert torch.equal(batch.labels[row, pos], inputs["input_ids"][0, -n:])
                seg += 1
    assert seg == len(batch.segment_tasks)


def test_world_segment_exact_match_hand_case(world_target):
    _, processor = world_target
    batch = pack_batch(_items(1), processor, TINY_WORLD_TARGET.num_visual_tokens)
    vocab = 700
    logits = torch.zeros(*batch.labels.shape, vocab)
    supervised = batch.labels != IGNORE
    logits[supervised] = torch.nn.functional.one_hot(batch.labels[supervised], vocab).float()
    assert segment_exact_match(logits, batch).all()
    # spoil one token of segment 1 only
    pos = (batch.segment_ids[0] == 1).nonzero()[0, 0]
    logits[0, pos] = torch.nn.functional.one_hot(torch.tensor(5), vocab).float()
    result = segment_exact_match(logits, batch)
    assert not result[1] and result[0] and result[2:].all()


def test_world_greedy_generate_agrees_with_teacher_forced_argmax(world_target):
    """The first generated token is the argmax at the packed answer-start position."""
    model, processor = world_target
    image, tasks = _items(1)[0]
    answers = generate_answers(model, processor, [image] * 2, [t.question for t in tasks[:2]], 1)
    batch = pack_batch([(image, tasks[:2])], processor, TINY_WORLD_TARGET.num_visual_tokens)
    with torch.no_grad():
        logits = model(**batch.model_inputs()).logits
    for seg in range(2):
        first = (batch.segment_ids[0] == seg).nonzero()[0, 0]
        token = logits[0, first].argmax().item()
        expected = processor.tokenizer.decode([token], skip_special_tokens=True).strip()
        assert answers[seg] == expected


def test_world_a_few_training_steps_reduce_the_loss(world_target):
    model, processor = world_target
    model = type(model)(model.config)  # fresh copy, the fixture stays untouched
    model.load_state_dict(world_target[0].state_dict())
    model.train()
    head = aux_head_for(TINY_WORLD_TARGET)
    batch, aux = make_batch(
        Split.TRAIN, 0, 4, 0, TINY_WORLD_SCENES, processor, TINY_WORLD_TARGET.num_visual_tokens
    )
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-2)
    losses = []
    for _ in range(15):
        answer, aux_loss, _ = forward_losses(model, head, batch, aux)
        loss = answer + 0.5 * aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append((answer.item(), aux_loss.item()))
    assert losses[-1][0] < 0.8 * losses[0][0]
    assert losses[-1][1] < 0.8 * losses[0][1]


def test_world_train_target_resumes_exactly(world_tokenizer_dir, tmp_path, capsys):
    common = dict(
        tokenizer_dir=Path(world_tokenizer_dir),
        max_steps=4,
        batch_size=2,
        warmup_steps=1,
        curriculum_fraction=0.0,
        vision_pretrain_fraction=0.25,  # step 0 vision only, steps 1-3 joint
        checkpoint_every=2,
        log_every=1,
        cpu_budget_core_min=1e6,
        threads=1,
        target=TINY_WORLD_TARGET,
    )
    whole = train_target(TargetTrainConfig(out_dir=tmp_path / "whole", **common))
    train_target(TargetTrainConfig(out_dir=tmp_path / "split", **common), stop_at_step=2)
    resumed = train_target(TargetTrainConfig(out_dir=tmp_path / "split", **common))
    a = AutoModelForImageTextToText.from_pretrained(whole).state_dict()
    b = AutoModelForImageTextToText.from_pretrained(resumed).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)
    # the same run stepped in fresh processes (3 steps, then 1) ends where the whole run ends
    fresh = train_target_in_fresh_processes(
        TargetTrainConfig(out_dir=tmp_path / "fresh", **common), steps_per_process=3
    )
    f = AutoModelForImageTextToText.from_pretrained(fresh).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], f[name], atol=1e-6, rtol=1e-5, msg=name)
    with pytest.raises(ValueError, match="steps_per_process"):
        train_target_in_fresh_processes(
            TargetTrainConfig(out_dir=tmp_path / "none", **common), steps_per_process=0
        )
    assert not (tmp_path / "none").exists()
    log = (tmp_path / "split" / "log.jsonl").read_text()
    assert '"step": 3' in log
    phases = [json.loads(line).get("phase") for line in log.splitlines()]
    assert phases[:4] == ["vision", "joint", "joint", "joint"]
    # the last checkpoint exported as a target equals the target the run saved
    exported = export_checkpoint(
        TargetTrainConfig(out_dir=tmp_path / "split", **common), tmp_path / "x"
    )
    c = AutoModelForImageTextToText.from_pretrained(exported).state_dict()
    for name in a:
        assert torch.equal(b[name], c[name]), name
    # the run's auxiliary heads read what its vision tower has learnt
    report = evaluate_aux_heads(TargetTrainConfig(out_dir=tmp_path / "split", **common), scenes=4)
    assert report["step"] == 4 and report["scenes"] == 4
    fractions = {k: v for k, v in report.items() if k not in ("step", "scenes")}
    # a default run (object-count targets, no fact targets) reports the heads it trained
    assert set(fractions) == {"counts_all", "counts_colour", "counts_shape"} | {
        f"patch_{k}" for k in ALL_PATCH_LABELS
    }
    assert all(0.0 <= v <= 1.0 for v in fractions.values())
    # the same through the command line, which reads the run's train_config.json
    args = ["world", "eval-aux", "--run", str(tmp_path / "split"), "--scenes", "4"]
    assert world_cli(args + ["--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == report


def test_world_frozen_vision_tower_stays_put_in_the_joint_phase(
    world_target, world_tokenizer_dir, tmp_path
):
    model, processor = world_target
    model = type(model)(model.config)
    model.load_state_dict(world_target[0].state_dict())
    model.train()
    cfg = TargetTrainConfig(
        out_dir=tmp_path,
        tokenizer_dir=Path(world_tokenizer_dir),
        max_steps=4,
        batch_size=2,
        early_batch_size=2,
        warmup_steps=0,
        vision_pretrain_fraction=0.25,  # step 0 vision only, then joint
        vision_batch_size=2,
        freeze_vision_in_joint=True,
        fact_targets=True,
        object_count_targets=True,
        cpu_budget_core_min=1e6,
        target=TINY_WORLD_TARGET,
    )
    head = aux_head_for(TINY_WORLD_TARGET)
    optimizer = optimizer_for(model, head, cfg)
    vision = model.model.vision_tower
    text = model.model.language_model
    for step in range(3):
        before = [p.detach().clone() for p in (*vision.parameters(), *text.parameters())]
        record = train_step(
            model, head, optimizer, cfg, TrainState(step, 0.0, 0.0, 2 * step), processor
        )
        optimizer.step()
        after = list((*vision.parameters(), *text.parameters()))
        moved = [not torch.equal(b, a) for b, a in zip(before, after, strict=True)]
        n_vision = len(list(vision.parameters()))
        if step == 0:
            assert (
                record["phase"] == "vision" and any(moved[:n_vision]) and not any(moved[n_vision:])
            )
        else:
            assert (
                record["phase"] == "joint" and not any(moved[:n_vision]) and any(moved[n_vision:])
            )


def test_world_extra_questions_cycle_counting_and_colour_of():
    sample = make_sample(0, Split.TRAIN, 5, TINY_WORLD_SCENES)
    tasks = _with_extra_questions(sample, 6, seed=0, index=5)
    assert tasks[: len(sample.tasks)] == list(sample.tasks)
    extra = [t.task_type.value for t in tasks[len(sample.tasks) :]]
    # in turn: by colour, by shape, colour of a named object (skipped when none can be named)
    assert [k for k in extra if k != "colour_of"] == ["count_colour", "count_shape"] * 2
    assert _with_extra_questions(sample, 6, seed=0, index=5) == tasks  # deterministic
    # two identical circles: no object can be named by its shape, so no colour question
    twin = SceneObject(Shape.CIRCLE, Colour.RED, Size.SMALL, 24.0, 24.0, RGB[Colour.RED], 10.0)
    scene = Scene((twin, replace(twin, x=72.0)), Background.GRAY, TINY_WORLD_SCENES.image_size)
    kinds = [
        t.task_type.value
        for t in _with_extra_questions(SimpleNamespace(scene=scene, tasks=()), 3, 0, 0)
    ]
    assert kinds == ["count_colour", "count_shape"]


def test_world_balanced_counting_questions_make_every_count_equally_likely():
    # Scene: two red circles, one blue square; colour counts {2, 1, 0 (four colours)},
    # shape counts {2, 1, 0}: balanced picks give each distinct count a third of the time,
    # natural picks give "no" far less often; answers always match the scene.
    red = SceneObject(Shape.CIRCLE, Colour.RED, Size.SMALL, 24.0, 24.0, RGB[Colour.RED], 10.0)
    blue = replace(red, shape=Shape.SQUARE, colour=Colour.BLUE, rgb=RGB[Colour.BLUE], x=40.0)
    scene = Scene((red, replace(red, x=72.0), blue), Background.GRAY, TINY_WORLD_SCENES.image_size)
    rng = np.random.default_rng(0)
    for maker in (count_colour, count_shape):
        answers = Counter(maker(scene, rng, balanced=True).answer.split()[2] for _ in range(3000))
        assert set(answers) == {"no", "one", "two"}
        assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in answers.values()), answers
    natural = Counter(count_colour(scene, rng).answer.split()[2] for _ in range(3000))
    assert natural["no"] / 3000 < 0.25
    for _ in range(50):  # "There are two red objects." / "There is one blue object."
        _, _, number, colour, _ = count_colour(scene, rng, balanced=True).answer.split()
        assert NUMBER_WORDS.index(number) == sum(o.colour.value == colour for o in scene.objects)
    extra = _with_extra_questions(SimpleNamespace(scene=scene, tasks=()), 6, 0, 0, balanced=True)
    assert [t.task_type.value for t in extra][:2] == ["count_colour", "count_shape"]


def test_world_train_config_rejects_bad_values(world_tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match="warmup_steps"):
        TargetTrainConfig(
            out_dir=tmp_path, tokenizer_dir=world_tokenizer_dir, max_steps=5, warmup_steps=5
        )
    with pytest.raises(FileNotFoundError, match="world tokenizer"):
        TargetTrainConfig(out_dir=tmp_path, tokenizer_dir=tmp_path / "missing")


def test_world_bf16_forward_runs_in_bf16_and_stays_close_to_float32(
    world_target, world_tokenizer_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr("hivis.world.target.config.cpu_has_native_bf16", lambda: True)
    model, processor = world_target
    head = aux_head_for(TINY_WORLD_TARGET)
    batch, aux = make_batch(
        Split.TRAIN, 0, 2, 0, TINY_WORLD_SCENES, processor, TINY_WORLD_TARGET.num_visual_tokens
    )
    results = {}
    for bf16 in (False, True):
        cfg = TargetTrainConfig(out_dir=tmp_path, tokenizer_dir=world_tokenizer_dir, bf16=bf16)
        with forward_precision(cfg):
            answer, aux_loss, logits = forward_losses(model, head, batch, aux)
        results[bf16] = (answer.item(), aux_loss.item(), logits.dtype)
    assert results[False][2] == torch.float32 and results[True][2] == torch.bfloat16
    assert results[True][0] == pytest.approx(results[False][0], rel=0.02)
    assert results[True][1] == pytest.approx(results[False][1], rel=0.02)


def test_world_bf16_is_refused_before_training_on_a_cpu_without_it(
    world_tokenizer_dir, tmp_path, monkeypatch, capsys
):
    from hivis.cli import main as hivis_cli

    monkeypatch.setattr("hivis.world.target.config.cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match="--precision fp32"):
        TargetTrainConfig(out_dir=tmp_path, tokenizer_dir=world_tokenizer_dir, bf16=True)
    out = tmp_path / "run"
    argv = ["world", "train-target", "--out", str(out), "--tokenizer", str(world_tokenizer_dir)]
    assert hivis_cli([*argv, "--precision", "bf16"]) == 2
    assert "native bf16" in capsys.readouterr().err and not out.exists()


def test_world_train_target_refuses_a_zero_steps_per_process_before_training(
    world_tokenizer_dir, tmp_path, capsys
):
    from hivis.cli import main as hivis_cli

    out = tmp_path / "run"
    argv = ["world", "train-target", "--out", str(out), "--tokenizer", str(world_tokenizer_dir)]
    assert hivis_cli([*argv, "--steps-per-process", "0"]) == 2
    assert "steps_per_process must be >= 1" in capsys.readouterr().err and not out.exists()


def _logits_for(target: torch.Tensor, classes: int, scale: float) -> torch.Tensor:
    return scale * torch.nn.functional.one_hot(target, classes).float()


def test_world_aux_losses_uniform_and_perfect_predictions(world_target):
    processor = world_target[1]
    _, aux = make_batch(
        Split.TRAIN, 0, 3, 0, TINY_WORLD_SCENES, processor, TINY_WORLD_TARGET.num_visual_tokens
    )
    b, n = aux["colour"].shape
    assert n == (96 // 16) ** 2  # one label per patch; the class token carries the counts
    assert aux["counts"].shape == (b, len(COUNT_KEYS))
    samples = [make_sample(0, Split.TRAIN, i, TINY_WORLD_SCENES) for i in range(3)]
    assert aux["counts"].tolist() == [scene_counts(s.scene).tolist() for s in samples]
    # the object patches are exactly one per object
    assert (aux["colour"] > 0).sum(1).tolist() == [len(s.scene.objects) for s in samples]
    facts = [scene_facts(s.scene) for s in samples]
    for key, (slots, _) in FACT_SLOTS.items():
        assert aux[key].shape == (b, slots)
        assert aux[key].tolist() == [f[key].tolist() for f in facts]
    uniform = {k: torch.zeros(b, n, c) for k, c in PATCH_LABELS.items()}
    uniform["counts"] = torch.zeros(b, len(COUNT_KEYS), COUNT_CLASSES)
    uniform |= {k: torch.zeros(b, slots, c) for k, (slots, c) in FACT_SLOTS.items()}
    # each patch term counts twice (all patches, object patches), counts and facts once
    expected = (
        2 * sum(math.log(c) for c in PATCH_LABELS.values())
        + math.log(COUNT_CLASSES)
        + sum(math.log(c) for _, c in FACT_SLOTS.values())
    )
    assert aux_losses(uniform, aux, facts=True).item() == pytest.approx(expected, rel=1e-6)
    without_facts = expected - sum(math.log(c) for _, c in FACT_SLOTS.values())
    assert aux_losses(uniform, aux).item() == pytest.approx(without_facts, rel=1e-6)
    uniform |= {k: torch.zeros(b, n, c) for k, c in OBJECT_COUNT_LABELS.items()}
    with_counts = without_facts + 2 * sum(math.log(c) for c in OBJECT_COUNT_LABELS.values())
    assert aux_losses(uniform, aux, object_counts=True).item() == pytest.approx(
        with_counts, rel=1e-6
    )
    perfect = {k: _logits_for(aux[k], c, 50.0) for k, c in PATCH_LABELS.items()}
    perfect["counts"] = _logits_for(aux["counts"], COUNT_CLASSES, 50.0)
    perfect |= {k: _logits_for(aux[k], c, 50.0) for k, (_, c) in FACT_SLOTS.items()}
    assert aux_losses(perfect, aux, facts=True).item() < 1e-6


def test_world_aux_head_reads_counts_from_the_class_token():
    head = aux_head_for(TINY_WORLD_TARGET)
    visual = torch.randn(2, TINY_WORLD_TARGET.num_visual_tokens, TINY_WORLD_TARGET.text_hidden)
    out = head(visual)
    assert out["counts"].shape == (2, len(COUNT_KEYS), COUNT_CLASSES)
    assert out["colour"].shape == (2, 36, PATCH_LABELS["colour"])
    changed = visual.clone()
    changed[:, 0] += 1.0  # only the class token moves the counts
    assert not torch.equal(head(changed)["counts"], out["counts"])
    assert torch.equal(head(changed)["colour"], out["colour"])


def test_world_word_tied_heads_score_patches_by_cosine_with_the_words(
    world_target, world_tokenizer_dir
):
    model, processor = world_target
    model = type(model)(model.config)
    model.load_state_dict(world_target[0].state_dict())
    tokenizer = processor.tokenizer
    ids = attribute_word_ids(tokenizer)
    assert [tokenizer.decode(i).strip() for i in ids["colour"]] == [c.value for c in COLOURS]
    head = aux_head_for(TINY_WORLD_TARGET, model, tokenizer)
    embedding = model.get_input_embeddings().weight
    visual = torch.randn(1, TINY_WORLD_TARGET.num_visual_tokens, TINY_WORLD_TARGET.text_hidden)
    visual[0, 1] = 3.0 * embedding[ids["colour"][2]].detach()  # first patch: along " blue"
    out = head(visual)
    plain = aux_head_for(TINY_WORLD_TARGET)
    plain.load_state_dict(head.state_dict(), strict=False)
    # class 0 (no object) and the untied keys are the plain Linear's
    assert torch.equal(out["colour"][..., 0], plain(visual)["colour"][..., 0])
    assert torch.equal(out["region"], plain(visual)["region"])
    # classes 1.. : word_scale x cosine, so the patch along " blue" scores blue at word_scale
    assert out["colour"][0, 0, 1:].argmax() == 2
    torch.testing.assert_close(out["colour"][0, 0, 3], head.word_scale.detach())
    # the words' embeddings train with the heads (and no other row of the embedding)
    labels = {k: torch.zeros(1, 36, dtype=torch.long) for k in ALL_PATCH_LABELS}
    labels["colour"][0, 0] = 3
    loss = F.cross_entropy(out["colour"][0], labels["colour"][0])
    loss.backward()
    moved = embedding.grad.abs().sum(-1) > 0
    assert set(torch.nonzero(moved).flatten().tolist()) == set(ids["colour"])
    with pytest.raises(ValueError, match="one"):
        attribute_word_ids(lambda text, **kw: {"input_ids": [5, 6]})


def test_world_eval_breakdown_splits_each_task_without_losing_answers(world_target):
    model, processor = world_target
    whole = evaluate(model, processor, EvalMode.TEACHER_FORCED, Split.TEST, 3, batch_size=2)
    for breakdown in Breakdown:
        parts = evaluate(model, processor, EvalMode.TEACHER_FORCED, Split.TEST, 3, 0, 2, breakdown)
        for task, score in whole.items():
            mine = {k: v for k, v in parts.items() if k.startswith(task + " / ")}
            assert mine and sum(v.total for v in mine.values()) == score.total
            assert sum(v.correct for v in mine.values()) == score.correct
    by_answer = evaluate(
        model, processor, EvalMode.TEACHER_FORCED, Split.TEST, 3, 0, 2, Breakdown.ANSWER
    )
    assert any(
        k.startswith("count_all / answer ") and k != "count_all / answer -" for k in by_answer
    )
    with pytest.raises(ValueError, match="teacher-forced"):
        evaluate(model, processor, EvalMode.GENERATE, Split.TEST, 1, 0, 2, Breakdown.OBJECTS)
