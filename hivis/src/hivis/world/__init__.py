"""The embedded synthetic world: scenes, tasks, export, tokenizer and the tiny target VLM."""

from hivis.world.dataset import Split, WorldSample, export_split, export_world, make_sample
from hivis.world.scenes import Scene, WorldConfig, generate_scene, patch_labels, render_scene
from hivis.world.tasks import Task, TaskType, make_tasks
from hivis.world.tokenizer import answer_text, prompt_text

__all__ = [
    "Scene",
    "Split",
    "Task",
    "TaskType",
    "WorldConfig",
    "WorldSample",
    "answer_text",
    "export_split",
    "export_world",
    "generate_scene",
    "make_sample",
    "make_tasks",
    "patch_labels",
    "prompt_text",
    "render_scene",
]
