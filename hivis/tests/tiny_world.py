"""The embedded world shrunk for tests (imported by the world tests and conftest)."""

from hivis.world.data.scenes import WorldConfig
from hivis.world.target.model import TargetConfig

# 96 px images, 6 x 6 patches of 16 px plus the class token (37 visual tokens), one vision
# layer of width 32, a two-layer text model of width 32; scenes of 1-3 objects.
TINY_WORLD_TARGET = TargetConfig(
    image_size=96,
    patch_size=16,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate=64,
    text_hidden=32,
    text_layers=2,
    text_heads=2,
    text_intermediate=64,
    max_positions=512,
)
TINY_WORLD_SCENES = WorldConfig(96, 16, 1, 3)
