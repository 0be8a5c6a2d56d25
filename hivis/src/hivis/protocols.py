"""The contracts the engine relies on, as ``typing.Protocol`` s (batch size 1).

* :class:`TargetModel`: the VLM whose output is kept - prefill, one pass over a draft tree,
  a plain decode step, and keeping the accepted path in its KV cache
  (:class:`hivis.targets.HFTarget` is the implementation for Hugging Face models).
* :class:`Proposer` and the :class:`DraftSession` it begins per generation: what proposes
  the draft trees (:class:`hivis.HiViSDrafter`; the self-checks' scripted proposers).

The engine (:mod:`hivis.engine`) calls nothing else on them. Caches are the
``DynamicCache`` s of :mod:`hivis.kv_cache`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from transformers.cache_utils import DynamicCache

    from hivis.targets.base import PreparedPrompt
    from hivis.targets.families import Family
    from hivis.tree import DraftTree, TreeConfig


@runtime_checkable
class TargetModel(Protocol):
    """What the engine needs from a target VLM.

    ``tokenizer`` decodes the output (and checks stop strings); ``model`` is the wrapped
    model, whose ``generation_config`` gives the default EOS ids; ``device`` is where its
    inputs go.
    """

    family: Family
    hidden_size: int
    vocab_size: int
    tokenizer: Any
    model: Any
    device: torch.device

    def prepare(self, images: list, prompt: str) -> PreparedPrompt:
        """Tokenize ``prompt`` with its ``images`` (one per placeholder)."""

    def new_cache(self) -> DynamicCache:
        """An empty KV cache for this target."""

    def prefill(
        self, prompt: PreparedPrompt, cache: DynamicCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the whole prompt into the empty ``cache``; returns (logits [1, V] for the next
        token, last-layer hidden states [1, L, H])."""

    def prefill_from(
        self, prompt: PreparedPrompt, start: int, cache: DynamicCache
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run prompt tokens ``start:`` on a ``cache`` holding the first ``start`` rows;
        returns (logits [1, V], hidden [1, L - start, H])."""

    def forward_tree(
        self,
        tokens: torch.Tensor,
        depths: torch.Tensor,
        ancestor_mask: torch.Tensor,
        root_position: int,
        cache: DynamicCache,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a draft tree (tokens [n], depths [n], ancestor_mask [n, n]) after
        the cache, its rows appended to ``cache``; returns (logits [n, V], hidden [n, H])."""

    def decode_one(self, token: int, position: int, cache: DynamicCache) -> torch.Tensor:
        """One plain decode step; returns logits [V]."""

    def keep_path(self, cache: DynamicCache, prefix_len: int, kept: torch.Tensor) -> None:
        """Keep only the tree rows ``kept`` [m] (root first) after the first ``prefix_len``."""


@runtime_checkable
class DraftSession(Protocol):
    """A proposer's state during one generation.

    ``prefill_length``: rows the proposer prefilled (for
    :attr:`~hivis.GenerationMetrics.drafter_prefill_ratio`).
    """

    prefill_length: int

    def draft(
        self,
        root_position: int,
        config: TreeConfig,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> DraftTree:
        """A draft tree rooted at the last committed token (at ``root_position``)."""

    def accept(self, tokens: list[int], features: torch.Tensor, root_position: int) -> None:
        """The committed ``tokens`` after the old root, with the target's hidden states
        features [m, H] on the accepted path; the last token is the next root."""


@runtime_checkable
class Proposer(Protocol):
    """What proposes draft trees: one :class:`DraftSession` per generation."""

    def begin(
        self, target: TargetModel, prompt: PreparedPrompt, hidden: torch.Tensor, first_token: int
    ) -> DraftSession:
        """Start a generation after the target's prefill: hidden [1, L, H] are its last-layer
        states over the prompt, ``first_token`` the token chosen from the prefill."""
