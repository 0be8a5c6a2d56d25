"""The generation loop: prefill, then {draft -> the target's tree pass -> accept -> keep the
accepted path} until a stop. The target and the proposer are used only through their
contracts (:mod:`hivis.protocols`); acceptance is :mod:`hivis.acceptance`.

Adaptive drafting (``GenerationConfig.adaptive``, on by default): an exponential average of
accepted draft tokens per step is kept; when it falls below :data:`MIN_ACCEPT` the engine
stops drafting for a back-off period (doubling up to :data:`MAX_BACKOFF` steps) and verifies
a root-only tree - a plain decode step - then probes the drafter again. Committed rows are
queued for the drafter meanwhile and fed in one batch at the next probe. A drafter that
knows nothing then costs little more than autoregressive decoding. Correctness never depends
on what is drafted.

Stopping follows the target's own ``generate``: the output ends right after the first EOS
(which is kept), after the token that completes a stop string, or at ``max_new_tokens``,
whichever comes first - also when that token lies inside an accepted run of draft tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from hivis.acceptance import accept_greedy, accept_sampling, check_finite
from hivis.metrics import GenerationMetrics
from hivis.prefix import PrefixCache, prefill_with_cache
from hivis.protocols import DraftSession, Proposer, TargetModel
from hivis.targets.base import PreparedPrompt
from hivis.tree import DraftTree, TreeConfig, build_tree


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. ``eos_token_ids`` None = the model's generation_config EOS."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    tree: TreeConfig = field(default_factory=TreeConfig)
    stop_strings: tuple[str, ...] = ()
    eos_token_ids: tuple[int, ...] | None = None
    seed: int | None = None
    adaptive: bool = True

    def __post_init__(self):
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise TypeError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        t = self.temperature
        if not isinstance(t, (int, float)) or math.isnan(t) or math.isinf(t) or t < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {t!r}")
        if not isinstance(self.tree, TreeConfig):
            raise TypeError("tree must be a hivis.TreeConfig")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError("stop strings must be non-empty strings")


@dataclass
class GenerationResult:
    """text: decoded new tokens; token_ids: the new token ids; metrics: see metrics.py."""

    text: str
    token_ids: list[int]
    metrics: GenerationMetrics


class StopRule:
    """Decides how many of a run of new tokens to keep, and whether generation ends."""

    def __init__(self, target: TargetModel, config: GenerationConfig):
        eos = config.eos_token_ids
        if eos is None:
            eos = target.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.eos = frozenset(int(e) for e in eos)
        self.max_new = config.max_new_tokens
        self.stop_strings = config.stop_strings
        self.tokenizer = target.tokenizer

    def extend(self, generated: list[int], new: list[int]) -> bool:
        """Append ``new`` to ``generated`` up to the first stop; True if generation ended."""
        for token in new:
            generated.append(token)
            if len(generated) >= self.max_new or token in self.eos:
                return True
            if self.stop_strings:
                text = self.tokenizer.decode(generated)
                if any(s in text for s in self.stop_strings):
                    return True
        return False


MIN_ACCEPT = 0.3
MAX_BACKOFF = 16


class DraftPolicy:
    """When to draft (see module docstring)."""

    def __init__(self, adaptive: bool):
        self.adaptive = adaptive
        self.average = 0.5
        self.backoff = 0
        self.wait = 0
        self.probing = False

    def should_draft(self) -> bool:
        if self.wait > 0:
            self.wait -= 1
            return False
        return True

    def tree(self, config: TreeConfig) -> TreeConfig:
        """The tree for this step: a cheap chain of depth <= 2 when probing after back-off."""
        if not self.probing:
            return config
        return TreeConfig.chain(min(2, config.depth), config.min_prob)

    def record(self, accepted: int) -> None:
        if not self.adaptive:
            return
        self.average = 0.5 * self.average + 0.5 * accepted
        if self.average >= MIN_ACCEPT:
            self.backoff, self.probing = 0, False
            return
        self.backoff = min(MAX_BACKOFF, max(4, 2 * self.backoff))
        self.wait, self.probing = self.backoff, True
        self.average = MIN_ACCEPT  # a probe that succeeds lifts it back at once


def _choose(logits: torch.Tensor, temperature: float, generator) -> int:
    """Token from [V] logits: argmax at T = 0, else a sample of softmax(logits / T)."""
    if temperature == 0.0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def _generator(seed: int | None, device) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _prefill(target: TargetModel, prompt: PreparedPrompt, config, stop, generator, metrics, reuse):
    """Prefill the target (reusing the :class:`~hivis.prefix.PrefixCache` ``reuse`` if not
    None) and choose the first new token (timed as the prefill).

    Returns (cache, hidden [1, L, H], generated tokens [1], whether generation already ended).
    """
    start = time.perf_counter()
    cache = target.new_cache()
    logits, hidden, metrics.reused_prefix_length = prefill_with_cache(target, prompt, cache, reuse)
    check_finite(logits)
    generated: list[int] = []
    done = stop.extend(generated, [_choose(logits[0], config.temperature, generator)])
    metrics.prefill_s = time.perf_counter() - start
    return cache, hidden, generated, done


def _result(target: TargetModel, generated: list[int], metrics, start: float) -> GenerationResult:
    """Close the metrics (total time from ``start``) and decode the new tokens."""
    metrics.new_tokens = len(generated)
    metrics.total_s = time.perf_counter() - start
    text = target.tokenizer.decode(generated, skip_special_tokens=True)
    return GenerationResult(text, generated, metrics)


def speculative_generate(
    target: TargetModel,
    proposer: Proposer,
    prompt: PreparedPrompt,
    config: GenerationConfig,
    prefix_cache: PrefixCache | None = None,
) -> GenerationResult:
    """Speculative decoding of ``prompt`` with ``proposer`` (a drafter or test proposer)."""
    metrics = GenerationMetrics(target_prefill_length=prompt.length)
    generator = _generator(config.seed, "cpu")
    stop = StopRule(target, config)
    start = time.perf_counter()
    cache, hidden, generated, done = _prefill(
        target, prompt, config, stop, generator, metrics, prefix_cache
    )
    session = proposer.begin(target, prompt, hidden, generated[0])
    metrics.drafter_prefill_length = session.prefill_length
    run = _Run(target, session, cache, generated, stop, config, generator, metrics)
    run.root_position = prompt.next_position
    while not done:
        done = _step(run)
    return _result(target, generated, metrics, start)


@dataclass
class _Run:
    """Mutable state of one speculative generation (batch size 1)."""

    target: TargetModel
    session: DraftSession
    cache: DynamicCache
    generated: list[int]
    stop: StopRule
    config: GenerationConfig
    generator: torch.Generator | None
    metrics: GenerationMetrics
    root_position: int = 0
    policy: DraftPolicy = field(init=False)

    def __post_init__(self):
        self.policy = DraftPolicy(self.config.adaptive)


def _step(run: _Run) -> bool:
    """One draft/verify/commit round; returns True when generation has ended."""
    config, metrics = run.config, run.metrics
    t0 = time.perf_counter()
    drafting = run.policy.should_draft()
    if drafting:
        tree_config = run.policy.tree(config.tree)
        tree = run.session.draft(run.root_position, tree_config, config.temperature, run.generator)
    else:
        tree = root_only(run.generated[-1], run.target.device)
    t1 = time.perf_counter()
    prefix_len = run.cache.get_seq_length()
    logits, hidden = run.target.forward_tree(
        tree.tokens, tree.depths, tree.ancestor_mask, run.root_position, run.cache
    )
    if config.temperature == 0.0:
        verdict = accept_greedy(tree, logits)  # also rejects NaN logits
    else:
        check_finite(logits)
        verdict = accept_sampling(tree, logits, config.temperature, run.generator)
    path = torch.tensor(verdict.path, device=logits.device)
    run.target.keep_path(run.cache, prefix_len, path)
    before = len(run.generated)
    done = run.stop.extend(run.generated, verdict.tokens)
    metrics.verify_s += time.perf_counter() - t1
    metrics.draft_s += t1 - t0
    metrics.verify_steps += 1
    metrics.accepted_per_step.append(verdict.accepted)
    metrics.committed_in_steps += len(run.generated) - before
    if drafting:
        run.policy.record(verdict.accepted)
    if not done:
        run.session.accept(verdict.tokens, hidden[path], run.root_position)
    run.root_position += len(verdict.tokens)
    return done


def root_only(token: int, device) -> DraftTree:
    """A tree with no draft: verifying it is a plain decode step."""
    tree = build_tree([token], [-1])
    return DraftTree(
        tree.tokens.to(device),
        tree.parents.to(device),
        tree.depths.to(device),
        tree.ancestor_mask.to(device),
        tree.children,
    )


def autoregressive_generate(
    target: TargetModel,
    prompt: PreparedPrompt,
    config: GenerationConfig,
    prefix_cache: PrefixCache | None = None,
) -> GenerationResult:
    """Baseline: plain decoding with the target's KV cache, one forward per token."""
    metrics = GenerationMetrics(target_prefill_length=prompt.length)
    generator = _generator(config.seed, "cpu")
    stop = StopRule(target, config)
    start = time.perf_counter()
    cache, _, generated, done = _prefill(
        target, prompt, config, stop, generator, metrics, prefix_cache
    )
    position = prompt.next_position
    while not done:
        t1 = time.perf_counter()
        logits = target.decode_one(generated[-1], position, cache)
        check_finite(logits)
        done = stop.extend(generated, [_choose(logits, config.temperature, generator)])
        position += 1
        metrics.verify_s += time.perf_counter() - t1
        metrics.verify_steps += 1
        metrics.accepted_per_step.append(0)
        metrics.committed_in_steps += 1
    return _result(target, generated, metrics, start)
