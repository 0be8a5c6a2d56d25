"""The embedded world, an application on top of hivis, split by role:

* ``data``: synthetic scenes, questions, the world tokenizer, the dataset export;
* ``target``: the tiny target VLM and its trainer;
* ``drafters``: the drafter build (``hivis world build``) and the shipped models;
* ``app``: ``hivis demo`` and ``hivis bench`` on the shipped models;
* ``cli``: the ``hivis world ...`` commands.

The data API is re-exported here.
"""

from hivis.world.data.dataset import Split, WorldSample, export_split, export_world, make_sample
from hivis.world.data.scenes import Scene, WorldConfig, generate_scene, patch_labels, render_scene
from hivis.world.data.tasks import Task, TaskType, make_tasks
from hivis.world.data.tokenizer import answer_text, prompt_text

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
