"""Procedural scenes: several flat objects on a plain background, rendered with PIL.

A scene is a list of non-overlapping objects, each with a shape, a colour, a size and a centre.
Everything is a pure function of a ``numpy.random.Generator``, so a scene is determined by its
seed. Objects sit one per cell of the vision tower's patch grid. Besides the RGB image, the
generator gives per-patch labels (colour, shape, size and image region of the object a patch
holds) and the scene's counts, for auxiliary supervision of the vision tower.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image, ImageDraw


class Shape(Enum):
    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"


class Colour(Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"
    YELLOW = "yellow"
    PURPLE = "purple"
    ORANGE = "orange"


class Size(Enum):
    SMALL = "small"
    LARGE = "large"


class Background(Enum):
    WHITE = "white"
    GRAY = "gray"


SHAPES = tuple(Shape)
COLOURS = tuple(Colour)
SIZES = tuple(Size)
BACKGROUNDS = tuple(Background)

# Base RGB of each colour; each object is drawn with a small random shade around it, so a colour
# word names a region of colour space rather than one exact value.
RGB = {
    Colour.RED: (215, 35, 35),
    Colour.GREEN: (40, 165, 60),
    Colour.BLUE: (40, 80, 215),
    Colour.YELLOW: (235, 210, 30),
    Colour.PURPLE: (135, 55, 185),
    Colour.ORANGE: (245, 135, 20),
}
BACKGROUND_RGB = {Background.WHITE: (245, 245, 245), Background.GRAY: (175, 175, 175)}
# Side of each size as a fraction of the patch: every object sits centred in one cell of the
# vision tower's patch grid (a large one fills it), and two objects are never in neighbouring
# cells (diagonals included). So every visual token shows at most one whole object: colour,
# shape and size are read off one patch, and counting is counting patches. Objects that straddle
# patches at random offsets make a tiny ViT trained from scratch learn neighbour relations
# before it can tell a shape, which it does not manage in a CPU budget (measured: shape counts
# at 40 % after 8000 images; one-patch objects: see the world README).
SIDE_FRACTION = {Size.SMALL: 0.625, Size.LARGE: 1.0}
SHADE_JITTER = 14


@dataclass(frozen=True)
class WorldConfig:
    """Geometry and content limits of the world.

    ``image_size`` must be a multiple of ``patch_size``; the vision tower sees
    ``(image_size // patch_size) ** 2`` patches; each object occupies one of them.
    """

    image_size: int = 256
    patch_size: int = 16
    min_objects: int = 1
    max_objects: int = 6

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be >= 8 px to draw a shape, got {self.patch_size}")
        if self.grid < 5:
            raise ValueError(f"need a patch grid of >= 5 x 5 cells, got {self.grid} x {self.grid}")
        if not 1 <= self.min_objects <= self.max_objects <= 8:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 8, got {self.min_objects}, "
                f"{self.max_objects}"
            )

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


DEFAULT_WORLD = WorldConfig()


@dataclass(frozen=True)
class SceneObject:
    shape: Shape
    colour: Colour
    size: Size
    x: float  # centre, pixels
    y: float
    rgb: tuple[int, int, int]
    side: float  # side of the bounding square, pixels

    @property
    def half(self) -> float:
        return self.side / 2

    def phrase(self) -> str:
        """``"large red circle"``."""
        return f"{self.size.value} {self.colour.value} {self.shape.value}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: Background
    image_size: int

    def key(self) -> tuple:
        """Hashable content of the scene (everything the image is drawn from, shades included),
        used to check that splits share no scene."""
        return (
            self.background.value,
            tuple(
                (o.shape.value, o.colour.value, o.size.value, o.x, o.y, o.rgb, o.side)
                for o in self.objects
            ),
        )


def cell_of(obj: SceneObject, patch_size: int) -> tuple[int, int]:
    """(row, column) of the patch that holds the object."""
    return int(obj.y // patch_size), int(obj.x // patch_size)


def _place_object(rng: np.random.Generator, cfg: WorldConfig, placed: list[SceneObject]):
    """One object in a random free cell of the patch grid (no placed object in that cell or
    any of its 8 neighbours); None if no such cell is left."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = COLOURS[rng.integers(len(COLOURS))]
    size = SIZES[rng.integers(len(SIZES))]
    taken = [cell_of(o, cfg.patch_size) for o in placed]
    free = [
        (r, c)
        for r in range(cfg.grid)
        for c in range(cfg.grid)
        if all(max(abs(r - tr), abs(c - tc)) >= 2 for tr, tc in taken)
    ]
    if not free:
        return None
    row, col = free[int(rng.integers(len(free)))]
    p = cfg.patch_size
    shade = np.array(RGB[colour]) + rng.integers(-SHADE_JITTER, SHADE_JITTER + 1, size=3)
    rgb = tuple(int(v) for v in np.clip(shade, 0, 255))
    side = float(round(SIDE_FRACTION[size] * p))
    return SceneObject(shape, colour, size, p * col + p / 2, p * row + p / 2, rgb, side)


def generate_scene(rng: np.random.Generator, cfg: WorldConfig = DEFAULT_WORLD) -> Scene:
    """Draw one scene: a number of objects in [min_objects, max_objects], none overlapping."""
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    placed: list[SceneObject] = []
    for _ in range(count):
        obj = _place_object(rng, cfg, placed)
        if obj is None:
            raise RuntimeError(
                f"no free cell for {count} objects on a {cfg.grid} x {cfg.grid} patch grid; "
                f"lower max_objects"
            )
        placed.append(obj)
    return Scene(tuple(placed), background, cfg.image_size)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, fill) -> None:
    h = obj.half
    box = (obj.x - h, obj.y - h, obj.x + h - 1, obj.y + h - 1)
    if obj.shape is Shape.CIRCLE:
        draw.ellipse(box, fill=fill)
    elif obj.shape is Shape.SQUARE:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(obj.x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)


def render_scene(scene: Scene) -> Image.Image:
    """RGB image ``[image_size, image_size]`` of the scene."""
    image = Image.new("RGB", (scene.image_size, scene.image_size), BACKGROUND_RGB[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, obj.rgb)
    return image


def object_id_map(scene: Scene) -> np.ndarray:
    """``[image_size, image_size]`` uint8 map: 0 = background, i + 1 = pixel of object i."""
    ids = Image.new("L", (scene.image_size, scene.image_size), 0)
    draw = ImageDraw.Draw(ids)
    for i, obj in enumerate(scene.objects):
        _draw_object(draw, obj, i + 1)
    return np.asarray(ids)


PATCH_LABELS = {
    "colour": 1 + len(COLOURS),
    "shape": 1 + len(SHAPES),
    "size": 1 + len(SIZES),
    "region": 10,
}
# Per object patch: how many objects of the scene share its colour / its shape (0 = no object;
# at most 8). A question such as "how many red objects?" can then be answered by attending to
# any red object, the same skill as "what shape is the red object?".
OBJECT_COUNT_LABELS = {"colour_count": 9, "shape_count": 9}
ALL_PATCH_LABELS = {**PATCH_LABELS, **OBJECT_COUNT_LABELS}


def region_of(obj: SceneObject, image_size: int) -> int:
    """Index 0..8 of the cell of a 3 x 3 division of the image that holds the object's centre
    (row-major: 0 = top left, 4 = center, 8 = bottom right)."""
    col = min(int(3 * obj.x / image_size), 2)
    row = min(int(3 * obj.y / image_size), 2)
    return 3 * row + col


def patch_labels(scene: Scene, patch_size: int) -> dict[str, np.ndarray]:
    """Dense per-patch labels, each ``[grid, grid]`` int64 in row-major patch order, one class
    count per key of PATCH_LABELS: 0 = no object in the patch, else 1 + the index in COLOURS
    (``colour``), SHAPES (``shape``), SIZES (``size``) or of ``region_of`` (``region``) of the
    object the patch holds; for each key of OBJECT_COUNT_LABELS the number of objects sharing
    that object's colour or shape."""
    grid = scene.image_size // patch_size
    labels = {key: np.zeros((grid, grid), dtype=np.int64) for key in ALL_PATCH_LABELS}
    for obj in scene.objects:
        row, col = cell_of(obj, patch_size)
        labels["colour_count"][row, col] = sum(o.colour is obj.colour for o in scene.objects)
        labels["shape_count"][row, col] = sum(o.shape is obj.shape for o in scene.objects)
        labels["colour"][row, col] = 1 + COLOURS.index(obj.colour)
        labels["shape"][row, col] = 1 + SHAPES.index(obj.shape)
        labels["size"][row, col] = 1 + SIZES.index(obj.size)
        labels["region"][row, col] = 1 + region_of(obj, scene.image_size)
    return labels


COUNT_KEYS = ("all",) + tuple(c.value for c in COLOURS) + tuple(s.value for s in SHAPES)


def scene_counts(scene: Scene) -> np.ndarray:
    """``[len(COUNT_KEYS)]`` int64: the number of objects, then per colour (COLOURS order), then
    per shape (SHAPES order). A training target of the vision tower's class token, so that the
    tower learns to count instead of leaving it all to the text model."""
    colours = [sum(o.colour is c for o in scene.objects) for c in COLOURS]
    shapes = [sum(o.shape is s for o in scene.objects) for s in SHAPES]
    return np.array([len(scene.objects), *colours, *shapes], dtype=np.int64)


# Facts about the uniquely named objects of a scene: (slots, classes) of each kind. Class 0 =
# no such object, or more than one (the name does not single one out); else 1 + the index of
# the value (in COLOURS, SHAPES, or of ``region_of``). Slots run over SHAPES, SIZES x SHAPES,
# COLOURS and COLOURS x SHAPES in that order.
FACT_SLOTS = {
    "colour_of_shape": (len(SHAPES), 1 + len(COLOURS)),
    "colour_of_size_shape": (len(SIZES) * len(SHAPES), 1 + len(COLOURS)),
    "shape_of_colour": (len(COLOURS), 1 + len(SHAPES)),
    "region_of_colour_shape": (len(COLOURS) * len(SHAPES), 10),
}


def _unique_fact(objects, selects, value) -> int:
    """``1 + value(obj)`` for the one object ``selects`` picks, 0 if none or several."""
    chosen = [o for o in objects if selects(o)]
    return 1 + value(chosen[0]) if len(chosen) == 1 else 0


def scene_facts(scene: Scene) -> dict[str, np.ndarray]:
    """Per key of FACT_SLOTS an int64 array ``[slots]``: the colour of the circle, of the small
    square, the shape of the red object, the region of the red circle, ... (what a question
    naming one object asks). A training target of the vision tower's class token, so that the
    tower gathers each named object's attributes in one place."""
    objs, size = scene.objects, scene.image_size

    def colour(o: SceneObject) -> int:
        return COLOURS.index(o.colour)

    facts = {
        "colour_of_shape": [
            _unique_fact(objs, lambda o, s=s: o.shape is s, colour) for s in SHAPES
        ],
        "colour_of_size_shape": [
            _unique_fact(objs, lambda o, z=z, s=s: o.size is z and o.shape is s, colour)
            for z in SIZES
            for s in SHAPES
        ],
        "shape_of_colour": [
            _unique_fact(objs, lambda o, c=c: o.colour is c, lambda o: SHAPES.index(o.shape))
            for c in COLOURS
        ],
        "region_of_colour_shape": [
            _unique_fact(
                objs,
                lambda o, c=c, s=s: o.colour is c and o.shape is s,
                lambda o: region_of(o, size),
            )
            for c in COLOURS
            for s in SHAPES
        ],
    }
    return {k: np.array(v, dtype=np.int64) for k, v in facts.items()}
