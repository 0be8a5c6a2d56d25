"""Procedural scenes: several flat objects on a plain background, rendered with PIL.

A scene is a list of non-overlapping objects, each with a shape, a colour, a size and a centre.
Everything is a pure function of a ``numpy.random.Generator``, so a scene is determined by its
seed. Besides the RGB image, the generator gives per-patch labels (which colour / shape covers
each patch, and which patch holds an object's centre) for dense auxiliary supervision.
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
# Full side length in pixels of the bounding square of each size. Bounding squares are aligned
# to the vision tower's patch grid and two of them are at least one patch apart: every patch
# shows at most one object, and the corner patches of an object alone tell its shape (full for a
# square, a quarter disc for a circle, a diagonal edge for a triangle), which a ViT with no
# local prior learns far faster than shapes that straddle patches at random offsets.
SIDE = {Size.SMALL: 16, Size.LARGE: 32}
SHADE_JITTER = 14
MAX_REDRAWS = 20  # per object, before a scene is declared impossible


@dataclass(frozen=True)
class WorldConfig:
    """Geometry and content limits of the world.

    ``image_size`` must be a multiple of ``patch_size``; the vision tower sees
    ``(image_size // patch_size) ** 2`` patches. Objects are aligned to that grid, so
    ``patch_size`` must divide every object side (16 and 32 px).
    """

    image_size: int = 128
    patch_size: int = 8
    min_objects: int = 1
    max_objects: int = 6

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if any(side % self.patch_size for side in SIDE.values()):
            raise ValueError(
                f"patch_size {self.patch_size} must divide the object sides "
                f"{sorted(SIDE.values())} (objects are aligned to the patch grid)"
            )
        if self.image_size < 64:
            raise ValueError(f"image_size must be >= 64 to hold objects, got {self.image_size}")
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

    @property
    def half(self) -> float:
        return SIDE[self.size] / 2

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
                (o.shape.value, o.colour.value, o.size.value, o.x, o.y, o.rgb) for o in self.objects
            ),
        )


def _overlaps(x: float, y: float, half: float, placed: list[SceneObject], gap: float) -> bool:
    """Whether a square of half side ``half`` at (x, y) comes closer than ``gap`` to an object."""
    return any(
        abs(x - o.x) < half + o.half + gap and abs(y - o.y) < half + o.half + gap for o in placed
    )


def _place_object(rng: np.random.Generator, cfg: WorldConfig, placed: list[SceneObject]):
    """Rejection-sample one object, its bounding square on the patch grid and at least one
    patch away from every object of ``placed``; None if no room is found."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = COLOURS[rng.integers(len(COLOURS))]
    size = SIZES[rng.integers(len(SIZES))]
    half = SIDE[size] / 2
    corners = (cfg.image_size - SIDE[size]) // cfg.patch_size + 1  # grid positions per axis
    for _ in range(50):
        x = float(cfg.patch_size * rng.integers(corners) + half)
        y = float(cfg.patch_size * rng.integers(corners) + half)
        if not _overlaps(x, y, half, placed, cfg.patch_size):
            base = np.array(RGB[colour])
            shade = base + rng.integers(-SHADE_JITTER, SHADE_JITTER + 1, size=3)
            rgb = tuple(int(v) for v in np.clip(shade, 0, 255))
            return SceneObject(shape, colour, size, x, y, rgb)
    return None


def generate_scene(rng: np.random.Generator, cfg: WorldConfig = DEFAULT_WORLD) -> Scene:
    """Draw one scene: a number of objects in [min_objects, max_objects], none overlapping."""
    count = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    placed: list[SceneObject] = []
    for _ in range(MAX_REDRAWS * count):
        if len(placed) == count:
            break
        obj = _place_object(rng, cfg, placed)
        if obj is not None:  # else no room for this draw: retry with a fresh shape and size
            placed.append(obj)
    if len(placed) < count:
        raise RuntimeError(
            f"could not place {count} objects on a {cfg.image_size} px image; lower max_objects"
        )
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


def patch_labels(scene: Scene, patch_size: int) -> dict[str, np.ndarray]:
    """Dense per-patch labels, each ``[grid, grid]`` int64 in row-major patch order.

    ``colour``: 0 = background, 1 + index in COLOURS of the object covering most of the patch
    (background unless it covers at least a quarter of it); ``shape``: same with SHAPES;
    ``centre``: 1 on the patch that holds an object's centre, else 0.
    """
    ids = object_id_map(scene)
    grid = scene.image_size // patch_size
    blocks = ids.reshape(grid, patch_size, grid, patch_size).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(grid, grid, patch_size * patch_size)
    counts = np.stack([(blocks == i).sum(-1) for i in range(len(scene.objects) + 1)], axis=-1)
    counts[..., 0] = 0
    owner = counts.argmax(-1)
    owner[counts.max(-1) < patch_size * patch_size // 4] = 0
    colour_of = np.array([0] + [1 + COLOURS.index(o.colour) for o in scene.objects])
    shape_of = np.array([0] + [1 + SHAPES.index(o.shape) for o in scene.objects])
    centre = np.zeros((grid, grid), dtype=np.int64)
    for obj in scene.objects:
        row = min(int(obj.y // patch_size), grid - 1)
        col = min(int(obj.x // patch_size), grid - 1)
        centre[row, col] = 1
    return {
        "colour": colour_of[owner].astype(np.int64),
        "shape": shape_of[owner].astype(np.int64),
        "centre": centre,
    }


COUNT_KEYS = ("all",) + tuple(c.value for c in COLOURS) + tuple(s.value for s in SHAPES)


def scene_counts(scene: Scene) -> np.ndarray:
    """``[len(COUNT_KEYS)]`` int64: the number of objects, then per colour (COLOURS order), then
    per shape (SHAPES order). A dense per-patch training target: every visual token is asked to
    carry these, so the vision tower learns to count instead of leaving it to the text model."""
    colours = [sum(o.colour is c for o in scene.objects) for c in COLOURS]
    shapes = [sum(o.shape is s for o in scene.objects) for s in SHAPES]
    return np.array([len(scene.objects), *colours, *shapes], dtype=np.int64)
