"""Generation metrics and their definitions.

* ``acceptance_length``: mean number of tokens committed per target verification forward,
  the bonus token *included* (so plain autoregressive decoding scores 1.0 and a chain of depth
  D whose drafts are all accepted scores D + 1). The prefill's first token is not counted.
* ``acceptance_length_no_bonus``: the same without the bonus token (accepted draft tokens per
  verification forward).
* ``drafter_prefill_ratio``: rows in the drafter's prefill / tokens in the target's prefill
  (HiViS removes every visual position, so this is small for image-heavy prompts).
  ``target_prefill_length`` is the whole prompt; ``reused_prefix_length`` of its tokens came
  from a :class:`hivis.PrefixCache` instead of being computed (0 without one).
* ``prefill_s``, ``draft_s``, ``verify_s``: wall-clock split; verify covers the target's tree
  forward, the acceptance decision and cache compaction.
* ``tokens_per_s``: generated tokens / total wall-clock time of the generation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class GenerationMetrics:
    """Counters filled by the engine; derived metrics are properties."""

    new_tokens: int = 0
    target_prefill_length: int = 0
    drafter_prefill_length: int = 0
    reused_prefix_length: int = 0
    verify_steps: int = 0
    committed_in_steps: int = 0
    accepted_per_step: list[int] = field(default_factory=list)
    prefill_s: float = 0.0
    draft_s: float = 0.0
    verify_s: float = 0.0
    total_s: float = 0.0

    @property
    def acceptance_length(self) -> float:
        """Tokens committed per verification forward, bonus token included."""
        return self.committed_in_steps / self.verify_steps if self.verify_steps else 0.0

    @property
    def acceptance_length_no_bonus(self) -> float:
        """Accepted draft tokens per verification forward (bonus token excluded)."""
        steps = self.verify_steps
        return sum(self.accepted_per_step) / steps if steps else 0.0

    @property
    def drafter_prefill_ratio(self) -> float:
        if not self.target_prefill_length:
            return 0.0
        return self.drafter_prefill_length / self.target_prefill_length

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in (
            "acceptance_length",
            "acceptance_length_no_bonus",
            "drafter_prefill_ratio",
            "tokens_per_s",
        ):
            data[name] = getattr(self, name)
        return data
