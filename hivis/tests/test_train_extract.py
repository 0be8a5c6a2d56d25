"""Feature extraction through a tiny target: rows follow the drafter's convention, visual
rows are removed for HiViS, assistant tokens are the supervised predictions."""

import pytest
import torch

from hivis.drafter import drafter_rows
from hivis.selfcheck.inputs import random_image
from hivis.selfcheck.zoo import build_tiny_target
from hivis.targets import Family, load_target
from hivis.train.data import IMAGE_PLACEHOLDER, Record, Role, Turn
from hivis.train.extract import (
    batchable,
    extract_features,
    extract_features_modes,
    generation_prompt,
    regenerate_answers,
    regenerate_answers_batch,
    token_labels,
)


@pytest.fixture(scope="module", params=[Family.LLAVA, Family.QWEN2_VL])
def target(request, tmp_path_factory):
    directory = build_tiny_target(request.param, tmp_path_factory.mktemp(request.param.value))
    return load_target(directory)


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "scene.png"
    random_image(3).save(path)
    turns = (
        Turn(Role.USER, f"{IMAGE_PLACEHOLDER} how many red objects"),
        Turn(Role.ASSISTANT, "two red objects"),
        Turn(Role.USER, "what color is the circle"),
        Turn(Role.ASSISTANT, "the circle is blue"),
    )
    return Record("scene", (path,), turns, 1)


@pytest.mark.parametrize("hide", [True, False])
def test_features_follow_the_drafter_row_convention(target, record, hide):
    features = extract_features(target, record, hide_visual_tokens=hide)
    full, assistant = token_labels(target, record)
    with torch.inference_mode():
        _, hidden = target.prefill(full, target.new_cache())
    tokens, fed, positions = drafter_rows(full, hidden, hide)
    assert torch.equal(features.input_ids, tokens[0])
    assert torch.allclose(features.hidden_in, fed[0].float())
    assert torch.equal(features.positions, positions[:, 0])
    image_id = target.model.config.image_token_id
    n_visual = int((full.input_ids[0] == image_id).sum())
    assert n_visual > 0
    assert int((features.input_ids == image_id).sum()) == (0 if hide else n_visual)
    assert len(features.input_ids) == full.length - 1 - (n_visual if hide else 0)
    # Supervised rows predict exactly the assistant tokens: both answers, each with its EOS.
    answer_tokens = assistant.sum().item()
    assert features.loss_mask.sum().item() == answer_tokens
    eos = target.tokenizer.eos_token_id
    assert (full.input_ids[0][assistant] == eos).sum().item() == 2
    # Where rows are contiguous, the feature fed to row j is the one row j-1 predicts.
    c = features.contiguous
    assert torch.equal(features.hidden_in[1:][c[1:]], features.hidden_out[:-1][c[1:]])
    visual = (full.input_ids[0] == image_id).tolist()
    rows = [j for j in range(1, full.length) if not (hide and visual[j])]
    expected = [False] + [b == a + 1 for a, b in zip(rows, rows[1:], strict=False)]
    assert c.tolist() == expected


def test_generation_prompt_is_the_rendered_prefix(target, record):
    text, n_images = generation_prompt(target, record, 3)
    assert n_images == 1
    full, _ = token_labels(target, record)
    prepared = target.prepare(list(record.images), text)
    assert torch.equal(prepared.input_ids[0], full.input_ids[0, : prepared.length])


def test_one_pass_for_both_row_modes_equals_one_pass_each(target, record):
    both = extract_features_modes(target, record, (True, False))
    for hide in (True, False):
        alone = extract_features(target, record, hide_visual_tokens=hide)
        for name in ("input_ids", "loss_mask", "hidden_in", "hidden_out", "positions"):
            assert torch.equal(getattr(both[hide], name), getattr(alone, name)), name


def test_batched_answers_are_the_greedy_answers_one_at_a_time(target, tmp_path):
    """Left-padded batches of prompts of different lengths answer as each record alone."""
    records = []
    for i, question in enumerate(["how many", "what color is the big red circle there", "why"]):
        path = tmp_path / f"scene{i}.png"
        random_image(10 + i).save(path)
        turns = (Turn(Role.USER, f"{IMAGE_PLACEHOLDER} {question}"), Turn(Role.ASSISTANT, "x"))
        records.append(Record(f"s{i}", (path,), turns, i))
    if not batchable(target, records[0]):
        assert target.mrope  # M-RoPE positions: one record at a time
        with pytest.raises(ValueError, match="single-answer"):
            regenerate_answers_batch(target, records, 12)
        return
    batched = regenerate_answers_batch(target, records, 12)
    alone = [regenerate_answers(target, r, 0.0, 12) for r in records]
    assert [r.turns[-1].text for r in batched] == [r.turns[-1].text for r in alone]
    assert len({r.turns[-1].text for r in alone}) > 1  # the comparison sees distinct answers
