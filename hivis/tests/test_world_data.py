"""The synthetic world: scenes, tasks, splits, export and tokenizer."""

import io

import numpy as np
import pytest
from PIL import Image

from hivis.world.data.dataset import Split, export_world, iter_samples, make_sample, read_jsonl
from hivis.world.data.scenes import (
    RGB,
    Background,
    Colour,
    Scene,
    SceneObject,
    Shape,
    Size,
    WorldConfig,
    object_id_map,
    patch_labels,
    render_scene,
    scene_counts,
    scene_facts,
)
from hivis.world.data.tasks import TaskType, count_all, describe, position_phrase, reasoning
from hivis.world.data.tokenizer import CHAT_TEMPLATE, answer_text, prompt_text, train_tokenizer


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _obj(shape, colour, size, x, y, side=16.0):
    return SceneObject(shape, colour, size, x, y, RGB[colour], side)


def _three_objects() -> Scene:
    """A small blue circle (bottom right), a large red triangle (top left) and a small red square
    (center) on a gray 128 px image."""
    return Scene(
        (
            _obj(Shape.CIRCLE, Colour.BLUE, Size.SMALL, 104.0, 104.0),
            _obj(Shape.TRIANGLE, Colour.RED, Size.LARGE, 24.0, 24.0),
            _obj(Shape.SQUARE, Colour.RED, Size.SMALL, 64.0, 64.0),
        ),
        Background.GRAY,
        128,
    )


def test_world_generation_is_deterministic_by_seed():
    a = [make_sample(7, Split.TRAIN, i) for i in range(20)]
    b = [make_sample(7, Split.TRAIN, i) for i in range(20)]
    assert [s.scene for s in a] == [s.scene for s in b]
    assert [s.tasks for s in a] == [s.tasks for s in b]
    assert all(
        _png_bytes(render_scene(x.scene)) == _png_bytes(render_scene(y.scene))
        for x, y in zip(a, b, strict=True)
    )
    other_seed = [make_sample(8, Split.TRAIN, i).scene for i in range(20)]
    assert all(x.scene != y for x, y in zip(a, other_seed, strict=True))


def test_world_splits_are_disjoint():
    keys = {split: {s.scene.key() for s in iter_samples(0, split, 300)} for split in Split}
    uids = {split: {s.uid for s in iter_samples(0, split, 300)} for split in Split}
    for a in Split:
        assert len(keys[a]) == 300
        for b in Split:
            if a is not b:
                assert not keys[a] & keys[b]
                assert not uids[a] & uids[b]


def test_world_objects_fit_and_do_not_overlap():
    cfg = WorldConfig()
    for sample in iter_samples(3, Split.TRAIN, 300, cfg):
        objs = sample.scene.objects
        assert cfg.min_objects <= len(objs) <= cfg.max_objects
        ids = object_id_map(sample.scene)
        for i, o in enumerate(objs):
            assert o.half <= o.x <= cfg.image_size - o.half
            assert o.half <= o.y <= cfg.image_size - o.half
            assert ids[int(o.y), int(o.x)] == i + 1  # the centre pixel belongs to the object
        # every object keeps at least half its area: nothing painted over it
        for i, o in enumerate(objs):
            assert (ids == i + 1).sum() >= 0.4 * (2 * o.half) ** 2


def test_world_objects_sit_one_per_patch_never_in_neighbouring_patches():
    cfg = WorldConfig()
    p, grid = cfg.patch_size, cfg.grid
    for sample in iter_samples(5, Split.TRAIN, 300, cfg):
        cells = []
        for o in sample.scene.objects:
            assert o.x % p == p / 2 and o.y % p == p / 2  # centred in its patch
            assert o.side == (p if o.size is Size.LARGE else round(0.625 * p))
            cells.append((int(o.y // p), int(o.x // p)))
        for i, a in enumerate(cells):
            for b in cells[:i]:
                assert max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2
        # every object pixel lies in its own patch
        ids = object_id_map(sample.scene)
        blocks = ids.reshape(grid, p, grid, p).transpose(0, 2, 1, 3).reshape(grid, grid, -1)
        owner = blocks.max(-1)
        assert ((blocks == 0) | (blocks == owner[..., None])).all()
        assert sorted(owner[owner > 0].tolist()) == list(range(1, len(cells) + 1))


def test_world_config_rejects_patches_too_small_for_a_shape_or_too_few_cells():
    with pytest.raises(ValueError, match="patch_size must be >= 8"):
        WorldConfig(image_size=96, patch_size=4)
    with pytest.raises(ValueError, match="5 x 5"):
        WorldConfig(image_size=64, patch_size=16)


def test_world_scene_counts_of_a_hand_built_scene():
    scene = _three_objects()
    # all; red green blue yellow purple orange; circle square triangle
    assert scene_counts(scene).tolist() == [3, 2, 0, 1, 0, 0, 0, 1, 1, 1]
    labels = patch_labels(scene, 16)  # objects of the same colour share its count
    red = labels["colour"] == 1
    assert (labels["colour_count"][red] == 2).all() and red.sum() == 2
    assert (labels["shape_count"][labels["shape"] > 0] == 1).all()


def test_world_facts_of_a_hand_built_scene():
    scene = _three_objects()
    facts = scene_facts(scene)
    # colour of the circle / square / triangle: blue (1 + 2), red (1 + 0), red
    assert facts["colour_of_shape"].tolist() == [3, 1, 1]
    # (small, large) x (circle, square, triangle)
    assert facts["colour_of_size_shape"].tolist() == [3, 1, 0, 0, 0, 1]
    # shape of the red object: two red objects -> 0; blue -> circle (1 + 0); others absent
    assert facts["shape_of_colour"].tolist() == [0, 0, 1, 0, 0, 0]
    region = facts["region_of_colour_shape"].reshape(6, 3)  # colours x shapes
    assert region[0].tolist() == [0, 5, 1]  # red square in the center, red triangle top left
    assert region[2].tolist() == [9, 0, 0]  # blue circle at the bottom right
    assert region[[1, 3, 4, 5]].sum() == 0


def test_world_patch_labels_of_a_hand_built_scene():
    # a large red square in patch (row 2, column 1) and a small blue triangle in patch (7, 6),
    # on a 128 px image with 16 px patches (8 x 8 grid)
    scene = Scene(
        (
            _obj(Shape.SQUARE, Colour.RED, Size.LARGE, 24.0, 40.0, 16.0),
            _obj(Shape.TRIANGLE, Colour.BLUE, Size.SMALL, 104.0, 120.0, 10.0),
        ),
        Background.WHITE,
        128,
    )
    labels = patch_labels(scene, 16)
    expected = {key: np.zeros((8, 8), dtype=np.int64) for key in labels}
    # 1 + index: red = COLOURS[0], blue = COLOURS[2]; square = SHAPES[1], triangle = SHAPES[2];
    # small = SIZES[0], large = SIZES[1]; regions: (24, 40) top left = 0, (104, 120) = 8
    for key, first, second in (
        ("colour", 1, 3),
        ("shape", 2, 3),
        ("size", 2, 1),
        ("region", 1, 9),
    ):
        expected[key][2, 1], expected[key][7, 6] = first, second
        assert (labels[key] == expected[key]).all(), key
    # one red object and one blue, one square and one triangle: each shares with itself only
    assert labels["colour_count"][2, 1] == 1 and labels["shape_count"][7, 6] == 1
    assert labels["colour_count"].sum() == 2 and labels["shape_count"].sum() == 2
    ids = object_id_map(scene)
    assert (ids[32:48, 16:32] == 1).all()  # the large square fills its patch
    assert (ids == 2).sum() >= 0.4 * 10 * 10  # the small triangle is drawn inside its own


def test_world_answers_of_a_hand_built_scene():
    scene = _three_objects()
    rng = np.random.default_rng(0)
    assert describe(scene, rng).answer == (
        "There are three objects on a gray background: a large red triangle at the top left, "
        "a small red square in the center and a small blue circle at the bottom right."
    )
    assert count_all(scene, rng).answer == "There are three objects."
    assert position_phrase(scene.objects[0], 128) == "at the bottom right"
    for _ in range(20):
        task = reasoning(scene, rng)
        assert task.task_type is TaskType.REASONING
        if task.question.startswith("If every red"):
            assert task.answer == (
                "There are three objects and two of them are red, so one object would be left."
            )


def test_world_every_answer_depends_on_the_scene():
    """The same question gets different answers on different scenes (no image-free shortcut)."""
    answers: dict[tuple[str, str], set[str]] = {}
    for sample in iter_samples(1, Split.TRAIN, 400, long_form=True):
        for task in sample.tasks:
            answers.setdefault((task.task_type.value, task.question), set()).add(task.answer)
    for task_type in TaskType:
        n_answers = max(len(a) for (t, _), a in answers.items() if t == task_type.value)
        assert n_answers >= 2, task_type


def test_world_export_is_readable_llava_jsonl(tmp_path):
    counts = {Split.TRAIN: 4, Split.TEST: 3}
    paths = export_world(tmp_path, counts, seed=2)
    for split, count in counts.items():
        records = read_jsonl(paths[split])
        samples = list(iter_samples(2, split, count))
        assert len(records) == sum(len(s.tasks) for s in samples)
        for rec in records:
            human, gpt = rec["conversations"]
            assert human["from"] == "human" and gpt["from"] == "gpt"
            assert human["value"].startswith("<image>\n")
            assert TaskType(rec["task"])
            image = Image.open(tmp_path / rec["image"])
            assert image.mode == "RGB" and image.size == (256, 256)
        first = samples[0]
        png = np.asarray(Image.open(tmp_path / records[0]["image"]))
        assert (png == np.asarray(render_scene(first.scene))).all()  # PNG is lossless
        assert records[0]["conversations"][1]["value"] == first.tasks[0].answer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(vocab_size=640, scenes=300)


def test_world_tokenizer_round_trip(tokenizer, tmp_path):
    texts = [
        t
        for s in iter_samples(4, Split.TEST, 50)
        for task in s.tasks
        for t in (task.question, " " + task.answer)
    ]
    texts += ["Zebras 123 do not live here: ünïcödé & tabs\tand\nnewlines!"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # frequent world words are single tokens
    for word in [" objects", " red", " triangle", " There", " left"]:
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1
    full = prompt_text("How many red objects are there?") + answer_text("There is one.")
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 1
    assert tokenizer.decode(ids) == full
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(full, add_special_tokens=False)["input_ids"] == ids
    assert again.chat_template == CHAT_TEMPLATE


def test_world_chat_template_equals_prompt_text(tokenizer):
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Count the objects."}],
        }
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == prompt_text("Count the objects.")
    messages.append({"role": "assistant", "content": "There are two objects."})
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == prompt_text("Count the objects.") + answer_text("There are two objects.")


def test_world_config_rejects_bad_geometry():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        WorldConfig(image_size=100, patch_size=8)
    with pytest.raises(ValueError, match="max_objects"):
        WorldConfig(min_objects=3, max_objects=2)
