"""Look-up supervision: referents of the questions, their packing, and the loss, which must be
-log of the attention mass that the real layer puts on the referents' visual tokens."""

import numpy as np
import pytest
import torch
from tiny_world import TINY_WORLD_SCENES, TINY_WORLD_TARGET

from hivis.world.data.dataset import Split, make_sample
from hivis.world.data.scenes import (
    Background,
    Colour,
    Scene,
    SceneObject,
    Shape,
    Size,
    cell_of,
    render_scene,
)
from hivis.world.data.tasks import (
    TaskType,
    colour_of,
    count_all,
    count_colour,
    count_shape,
    shape_of,
)
from hivis.world.target.batches import make_batch
from hivis.world.target.config import TargetTrainConfig
from hivis.world.target.lookup import captured_query_key, lookup_loss, referent_tokens
from hivis.world.target.model import TargetConfig
from hivis.world.target.packing import IGNORE, pack_batch


def _object(shape, colour, row, col):
    return SceneObject(shape, colour, Size.LARGE, 16 * col + 8, 16 * row + 8, (0, 0, 0), 16)


SCENE = Scene(
    (
        _object(Shape.CIRCLE, Colour.RED, 0, 0),
        _object(Shape.SQUARE, Colour.RED, 2, 4),
        _object(Shape.TRIANGLE, Colour.BLUE, 4, 1),
    ),
    Background.WHITE,
    96,
)


def _draws(maker, scene, n=40, **kwargs):
    rng = np.random.default_rng(0)
    return [maker(scene, rng, **kwargs) for _ in range(n)]


def test_lookup_referents_are_the_objects_each_question_names():
    for task in _draws(count_colour, SCENE, balanced=True):
        colour = next(c for c in Colour if f" {c.value} " in f" {task.question} ")
        assert task.referents == tuple(i for i, o in enumerate(SCENE.objects) if o.colour is colour)
    for task in _draws(count_shape, SCENE):
        wanted = {i for i, o in enumerate(SCENE.objects) if o.shape.value in task.question}
        assert set(task.referents) == wanted
    for task in _draws(colour_of, SCENE):
        (i,) = task.referents
        assert SCENE.objects[i].shape.value in task.question
        assert task.answer.endswith(f"{SCENE.objects[i].colour.value}.")
    for task in _draws(shape_of, SCENE):
        (i,) = task.referents
        assert SCENE.objects[i].colour is Colour.BLUE  # the only unique colour
    assert count_all(SCENE, np.random.default_rng(0)).referents == (0, 1, 2)
    # Asking for an absent colour names no object.
    absent = [t for t in _draws(count_colour, SCENE, n=200) if "There are no" in t.answer]
    assert absent and all(t.referents == () for t in absent)


def test_lookup_referent_tokens_follow_the_patch_grid():
    task = count_all(SCENE, np.random.default_rng(0))
    # 6 x 6 patches, class token first: cell (row, col) is token 1 + 6 row + col.
    assert referent_tokens(SCENE, [task], 16, class_token=True) == [(1, 1 + 16, 1 + 25)]
    assert referent_tokens(SCENE, [task], 16, class_token=False) == [(0, 16, 25)]
    assert [cell_of(o, 16) for o in SCENE.objects] == [(0, 0), (2, 4), (4, 1)]


def test_lookup_of_count_all_can_go_to_the_class_token():
    rng = np.random.default_rng(0)
    tasks = [count_all(SCENE, rng), count_colour(SCENE, rng, balanced=True)]
    on_class = referent_tokens(SCENE, tasks, 16, class_token=True, count_all_on_class_token=True)
    on_objects = referent_tokens(SCENE, tasks, 16, class_token=True)
    assert on_class[0] == (0,) and on_objects[0] == (1, 1 + 16, 1 + 25)
    assert on_class[1] == on_objects[1]  # other questions keep their objects
    with pytest.raises(ValueError, match="class token"):
        referent_tokens(SCENE, tasks, 16, class_token=False, count_all_on_class_token=True)


def test_lookup_keys_mark_every_answer_position_of_a_question_with_referents(world_target):
    _, processor = world_target
    tasks = [count_all(SCENE, np.random.default_rng(0)), _draws(shape_of, SCENE, n=1)[0]]
    tasks.append(next(t for t in _draws(count_colour, SCENE, n=200) if not t.referents))
    referents = [referent_tokens(SCENE, tasks, 16, class_token=True)]
    batch = pack_batch(
        [(render_scene(SCENE), tasks)], processor, TINY_WORLD_TARGET.num_visual_tokens, referents
    )
    head_len = int(
        (batch.input_ids[0] == processor.tokenizer.convert_tokens_to_ids("<image>")).nonzero()[0, 0]
    )
    for seg, looked_at in enumerate(referents[0]):
        answer_positions = (batch.segment_ids[0] == seg).nonzero()[:, 0]
        assert (batch.labels[0, answer_positions] != IGNORE).all()
        marked = batch.lookup_keys[0, answer_positions]
        expected = torch.zeros_like(marked)
        expected[:, [head_len + v for v in looked_at]] = True
        assert torch.equal(marked, expected)
    # Nothing but answer positions is supervised.
    supervised = batch.lookup_keys[0].any(-1)
    assert (batch.segment_ids[0][supervised] >= 0).all()
    with pytest.raises(ValueError, match="one entry per task"):
        pack_batch(
            [(render_scene(SCENE), tasks)], processor, TINY_WORLD_TARGET.num_visual_tokens, [[()]]
        )
    with pytest.raises(ValueError, match="visual-token indices"):
        pack_batch(
            [(render_scene(SCENE), tasks[:1])],
            processor,
            TINY_WORLD_TARGET.num_visual_tokens,
            [[(99,)]],
        )


@pytest.mark.parametrize("layer, head", [(0, 0), (1, 1)])
def test_lookup_loss_is_minus_log_of_the_layers_attention_on_the_referents(
    world_target, layer, head
):
    model, processor = world_target
    batch, _ = make_batch(
        Split.TRAIN,
        0,
        3,
        0,
        TINY_WORLD_SCENES,
        processor,
        TINY_WORLD_TARGET.num_visual_tokens,
        2,
        lookup=True,
    )
    assert batch.lookup_keys.any()
    # Only eager attention returns its weights, and it adds the mask to the scores, so it gets
    # the additive form of the batch's boolean mask (sdpa, used in training, takes the bool).
    inputs = batch.model_inputs()
    blocked = torch.finfo(torch.float32).min
    inputs["attention_mask"] = torch.zeros(batch.attention_mask.shape).masked_fill(
        ~batch.attention_mask, blocked
    )
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), captured_query_key(model, layer) as captured:
            out = model(**inputs, output_attentions=True)
            loss = lookup_loss(
                model, captured, batch.position_ids, batch.attention_mask, batch.lookup_keys, head
            )
    finally:
        model.set_attn_implementation("sdpa")
    weights = out.attentions[layer][:, head]  # [B, T, T]
    rows = batch.lookup_keys.any(-1)
    mass = (weights * batch.lookup_keys).sum(-1)[rows]
    torch.testing.assert_close(loss, -mass.log().mean(), atol=1e-5, rtol=1e-5)
    # The hooks are gone after the block.
    attention = model.model.language_model.layers[layer].self_attn
    assert not attention.q_proj._forward_hooks and not attention.k_proj._forward_hooks


def test_lookup_loss_trains_the_head_to_look_at_the_referents(world_target):
    model, processor = world_target
    model = type(model)(model.config)  # a fresh copy: the fixture stays untouched
    model.load_state_dict(world_target[0].state_dict())
    batch, _ = make_batch(
        Split.TRAIN,
        0,
        2,
        0,
        TINY_WORLD_SCENES,
        processor,
        TINY_WORLD_TARGET.num_visual_tokens,
        2,
        lookup=True,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        with captured_query_key(model, 1) as captured:
            model(**batch.model_inputs())
        loss = lookup_loss(
            model, captured, batch.position_ids, batch.attention_mask, batch.lookup_keys, 0
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as training does
        opt.step()
        losses.append(loss.item())
    # From about uniform attention (-log(k / ~50 keys)) to most of the mass on the referents.
    assert min(losses[-3:]) < 0.5 * losses[0]


def test_lookup_options_are_checked(world_tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match="lookup_weight"):
        TargetTrainConfig(tmp_path, world_tokenizer_dir, lookup_weight=-1.0)
    with pytest.raises(ValueError, match="lookup_layer"):
        TargetTrainConfig(tmp_path, world_tokenizer_dir, lookup_layer=8)
    with pytest.raises(ValueError, match="lookup_head"):
        TargetTrainConfig(tmp_path, world_tokenizer_dir, lookup_head=4)
    # By default the middle text layer: 3 of the default 8, 0 of a 2-layer target.
    assert TargetTrainConfig(tmp_path, world_tokenizer_dir).lookup_layer_index == 3
    assert (
        TargetTrainConfig(
            tmp_path, world_tokenizer_dir, target=TINY_WORLD_TARGET
        ).lookup_layer_index
        == 0
    )
    assert TargetTrainConfig(tmp_path, world_tokenizer_dir, lookup_layer=5).lookup_layer_index == 5
    no_class = TargetConfig(class_token=False)
    with pytest.raises(ValueError, match="class token"):
        TargetTrainConfig(tmp_path, world_tokenizer_dir, target=no_class)
    assert not TargetTrainConfig(
        tmp_path, world_tokenizer_dir, target=no_class, count_all_on_class_token=False
    ).count_all_on_class_token


def test_lookup_tasks_of_a_sample_carry_referents_in_its_scene():
    sample = make_sample(0, Split.TRAIN, 3, TINY_WORLD_SCENES)
    for task in sample.tasks:
        assert all(0 <= i < len(sample.scene.objects) for i in task.referents)
        if task.task_type in (TaskType.COLOUR_OF, TaskType.SHAPE_OF, TaskType.POSITION_OF):
            assert len(task.referents) == 1
