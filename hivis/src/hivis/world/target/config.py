"""Settings of a ``hivis world train-target`` run (:class:`TargetTrainConfig`, frozen,
checked when built) and the run's mutable position (:class:`TrainState`). What the fields do:
:mod:`hivis.world.target.train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hivis.world.target.model import TargetConfig


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (Linux flags avx512_bf16 or amx_bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class TrainState:
    step: int
    cpu_s: float  # process CPU time spent in training, all threads
    wall_s: float
    scenes_seen: int = 0


@dataclass(frozen=True)
class TargetTrainConfig:
    out_dir: Path
    tokenizer_dir: Path
    max_steps: int = 5000
    batch_size: int = 16
    early_batch_size: int = 8
    batch_switch_fraction: float = 0.6
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    aux_weight: float = 1.0
    extra_questions: int = 6
    balanced_extra_questions: bool = True
    curriculum_fraction: float = 0.15
    vision_pretrain_fraction: float = 0.15
    vision_batch_size: int = 32
    freeze_vision_in_joint: bool = False
    fact_targets: bool = False
    object_count_targets: bool = True
    word_tied_heads: bool = False
    lookup_weight: float = 1.0
    lookup_layer: int | None = None  # None: the middle of the text model (text_layers // 2 - 1)
    lookup_head: int = 0
    count_all_on_class_token: bool = True
    # Look-up supervision of the long-form answers too: the positions of each piece about
    # particular objects (an object's sentences, a count, a relation) look at those objects
    # (``Task.answer_referents``); without it those answers have no look-up target (no single
    # object fits the whole answer).
    long_form_lookup: bool = False
    # Off by default: long-form answers (~170 tokens each, two per image) nearly double the
    # packed sequence of an image, so a step costs ~1.8x and the default budget would train
    # the short questions less; and they need a tokenizer trained with them (other token ids).
    long_form: bool = False
    # A trained target to start from (``target.grow``: block expansion, extended tokenizer);
    # its vision tower is already trained, so runs that grow one skip the vision phase.
    init_from: Path | None = None
    curriculum_max_objects: int = 3
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    threads: int = 2
    # bf16 autocast of the forward passes (weights, gradients and AdamW stay float32). On this
    # project's CPU (avx512_bf16, no AMX) a bf16 matmul is 2-2.7x faster, but a whole training
    # step only 1.1-1.25x once warm (`hivis/benchmarks/target_step.py --compare precision`):
    # the rest of the step is casts and memory-bound work. Where bf16 is emulated it is slower,
    # so it is refused there.
    bf16: bool = False
    cpu_budget_core_min: float = 80.0
    wall_budget_min: float | None = 45.0
    target: TargetConfig = field(default_factory=TargetConfig)

    def __post_init__(self) -> None:
        if self.max_steps <= 0 or self.batch_size <= 0 or self.early_batch_size <= 0:
            raise ValueError("max_steps, batch_size and early_batch_size must be > 0")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError("warmup_steps must be in [0, max_steps)")
        if self.wall_budget_min is not None and self.wall_budget_min <= 0:
            raise ValueError(f"wall_budget_min must be > 0, got {self.wall_budget_min}")
        if not 0 <= self.vision_pretrain_fraction < 1 or self.vision_batch_size <= 0:
            raise ValueError("need 0 <= vision_pretrain_fraction < 1 and vision_batch_size > 0")
        if not 0 <= self.curriculum_fraction <= 1 or self.cpu_budget_core_min <= 0:
            raise ValueError("need 0 <= curriculum_fraction <= 1 and cpu_budget_core_min > 0")
        if not (self.lr > 0 and 0 <= self.min_lr_ratio <= 1 and self.aux_weight >= 0):
            raise ValueError("need lr > 0, 0 <= min_lr_ratio <= 1, aux_weight >= 0")
        if self.lookup_weight < 0:
            raise ValueError(f"lookup_weight must be >= 0, got {self.lookup_weight}")
        if not 0 <= self.lookup_layer_index < self.target.text_layers:
            raise ValueError(
                f"lookup_layer must be in [0, {self.target.text_layers}), got {self.lookup_layer}"
            )
        if self.long_form_lookup and not (self.long_form and self.lookup_weight > 0):
            raise ValueError(
                "long_form_lookup (--long-form-lookup) needs long_form (--long-form) and a "
                "lookup_weight > 0"
            )
        if self.count_all_on_class_token and not self.target.class_token:
            raise ValueError("count_all_on_class_token needs a target that keeps the class token")
        if not 0 <= self.lookup_head < self.target.text_heads:
            raise ValueError(
                f"lookup_head must be in [0, {self.target.text_heads}), got {self.lookup_head}"
            )
        if self.bf16 and not cpu_has_native_bf16():
            raise ValueError(
                "bf16 training needs a CPU with native bf16 matmuls (avx512_bf16 or amx_bf16 "
                "in /proc/cpuinfo); this one has neither: train in float32 (--precision fp32)"
            )
        if self.init_from is not None and not (Path(self.init_from) / "config.json").is_file():
            raise FileNotFoundError(f"init_from {self.init_from}: no saved target there")
        if not Path(self.tokenizer_dir).is_dir():
            raise FileNotFoundError(
                f"tokenizer directory {self.tokenizer_dir} does not exist "
                f"(create it with `world tokenizer --out DIR`)"
            )

    @property
    def lookup_layer_index(self) -> int:
        """The text layer whose head the look-up loss trains (the middle one by default: the
        layers before it bring the question's words to the answer positions)."""
        if self.lookup_layer is not None:
            return self.lookup_layer
        return max(0, self.target.text_layers // 2 - 1)
