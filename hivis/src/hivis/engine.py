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
(which is kept), after the token that completes a stop string (Hugging Face's own
``StopStringCriteria`` on the whole sequence, so leading spaces and strings that begin in the
prompt match as they do there), after a token where any extra stopping criterion says so, or at
``max_new_tokens``, whichever comes first - also when that token lies inside an accepted run of
draft tokens.

Scores: at T = 0 the next token is the argmax of ``warp(logits)``; at T > 0 the target's
distribution is ``softmax(warp(logits / T))``. ``warp`` (identity by default) is a row-wise
logits transform such as Hugging Face's top-k / top-p warpers (:mod:`hivis.hf` builds it).

Streaming: a Hugging Face streamer (``put(ids)``, ``end()``) receives every committed token
once, in order, right after the step that verified it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache
from transformers.generation.stopping_criteria import StopStringCriteria

from hivis.acceptance import accept_greedy, accept_sampling, check_finite
from hivis.metrics import GenerationMetrics
from hivis.prefix import PrefixCache, prefill_with_cache
from hivis.protocols import DraftSession, Proposer, TargetModel
from hivis.targets.base import PreparedPrompt
from hivis.tree import DraftTree, TreeConfig, build_tree


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. ``eos_token_ids`` None = the model's generation_config EOS.

    warp: a row-wise logits transform [n, V] -> [n, V] applied after the temperature (see
    the module docstring); None = identity. stopping_criteria: extra Hugging Face-style
    criteria, each called as ``criterion(ids [1, prompt + generated], None)`` after every
    new token and stopping generation where it returns True.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    tree: TreeConfig = field(default_factory=TreeConfig)
    stop_strings: tuple[str, ...] = ()
    eos_token_ids: tuple[int, ...] | None = None
    seed: int | None = None
    adaptive: bool = True
    warp: Callable[[torch.Tensor], torch.Tensor] | None = None
    stopping_criteria: tuple = ()

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
    """Decides how many of a run of new tokens to keep, and whether generation ends.

    prompt_ids: [1, L] the prompt, which stop strings and criteria see before the new tokens.
    """

    def __init__(self, target: TargetModel, config: GenerationConfig, prompt_ids: torch.Tensor):
        eos = config.eos_token_ids
        if eos is None:
            eos = target.model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        self.eos = frozenset(int(e) for e in eos)
        self.max_new = config.max_new_tokens
        self.criteria = list(config.stopping_criteria)
        if config.stop_strings:
            self.criteria.append(StopStringCriteria(target.tokenizer, list(config.stop_strings)))
        self.prompt_length = int(prompt_ids.shape[1])
        self.sequence = None
        if self.criteria:  # the whole sequence, prompt first, filled as tokens are committed
            self.sequence = torch.empty((1, self.prompt_length + self.max_new), dtype=torch.long)
            self.sequence[:, : self.prompt_length] = prompt_ids.cpu()

    def extend(self, generated: list[int], new: list[int]) -> bool:
        """Append ``new`` to ``generated`` up to the first stop; True if generation ended."""
        for token in new:
            generated.append(token)
            if len(generated) >= self.max_new or token in self.eos:
                return True
            if self.sequence is not None and self._criteria_met(token, len(generated)):
                return True
        return False

    def _criteria_met(self, token: int, count: int) -> bool:
        end = self.prompt_length + count
        self.sequence[0, end - 1] = token
        ids = self.sequence[:, :end]
        return any(bool(criterion(ids, None).any()) for criterion in self.criteria)


def stream(streamer, tokens: list[int]) -> None:
    """Hand committed ``tokens`` to a Hugging Face streamer (None: nothing to do)."""
    if streamer is not None and tokens:
        streamer.put(torch.tensor(tokens, dtype=torch.long))


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


def target_scores(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """[n, V] or [V] raw logits -> the scores acceptance uses: ``warp(logits)`` at T = 0
    (argmax), ``warp(logits / T)`` at T > 0 (softmax = the target's distribution)."""
    if config.temperature > 0.0:
        logits = logits.float() / config.temperature
    if config.warp is None:
        return logits
    check_finite(logits)  # before the warp's -inf entries
    return config.warp(logits)


def _choose(scores: torch.Tensor, config: GenerationConfig, generator) -> int:
    """Token from [V] scores (:func:`target_scores`): argmax at T = 0, else a sample."""
    if config.temperature == 0.0:
        return int(scores.argmax())
    probs = torch.softmax(scores.float(), dim=-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def _generator(seed: int | None, device) -> torch.Generator | None:
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _prefill(target: TargetModel, prompt: PreparedPrompt, run_config, reuse):
    """Prefill the target (reusing the :class:`~hivis.prefix.PrefixCache` ``reuse`` if not
    None) and choose the first new token (timed as the prefill); ``run_config`` is the
    run's :class:`_Common`.

    Returns (cache, hidden [1, L, H], generated tokens [1], whether generation already ended).
    """
    config, metrics = run_config.config, run_config.metrics
    start = time.perf_counter()
    cache = target.new_cache()
    logits, hidden, metrics.reused_prefix_length = prefill_with_cache(target, prompt, cache, reuse)
    check_finite(logits)
    generated: list[int] = []
    first = _choose(target_scores(logits[0], config), config, run_config.generator)
    done = run_config.stop.extend(generated, [first])
    stream(run_config.streamer, generated)
    metrics.prefill_s = time.perf_counter() - start
    return cache, hidden, generated, done


@dataclass
class _Common:
    """What both loops share: settings, stop rule, random generator, streamer, metrics."""

    config: GenerationConfig
    stop: StopRule
    generator: torch.Generator | None
    streamer: object
    metrics: GenerationMetrics


def _common(target, prompt: PreparedPrompt, config: GenerationConfig, streamer) -> _Common:
    metrics = GenerationMetrics(target_prefill_length=prompt.length)
    stop = StopRule(target, config, prompt.input_ids)
    return _Common(config, stop, _generator(config.seed, "cpu"), streamer, metrics)


def _result(target: TargetModel, generated: list[int], common: _Common, start: float):
    """Close the metrics (total time from ``start``), end the stream, decode the new tokens."""
    metrics = common.metrics
    metrics.new_tokens = len(generated)
    metrics.total_s = time.perf_counter() - start
    if common.streamer is not None:
        common.streamer.end()
    tokenizer = target.tokenizer
    text = "" if tokenizer is None else tokenizer.decode(generated, skip_special_tokens=True)
    return GenerationResult(text, generated, metrics)


def speculative_generate(
    target: TargetModel,
    proposer: Proposer,
    prompt: PreparedPrompt,
    config: GenerationConfig,
    prefix_cache: PrefixCache | None = None,
    streamer=None,
) -> GenerationResult:
    """Speculative decoding of ``prompt`` with ``proposer`` (a drafter or test proposer);
    ``streamer``: a Hugging Face streamer for the new tokens (None: none)."""
    common = _common(target, prompt, config, streamer)
    start = time.perf_counter()
    cache, hidden, generated, done = _prefill(target, prompt, common, prefix_cache)
    session = proposer.begin(target, prompt, hidden, generated[0])
    common.metrics.drafter_prefill_length = session.prefill_length
    run = _Run(target, session, cache, generated, common)
    run.root_position = prompt.next_position
    while not done:
        done = _step(run)
    return _result(target, generated, common, start)


@dataclass
class _Run:
    """Mutable state of one speculative generation (batch size 1)."""

    target: TargetModel
    session: DraftSession
    cache: DynamicCache
    generated: list[int]
    common: _Common
    root_position: int = 0
    policy: DraftPolicy = field(init=False)

    def __post_init__(self):
        self.policy = DraftPolicy(self.common.config.adaptive)


def _step(run: _Run) -> bool:
    """One draft/verify/commit round; returns True when generation has ended."""
    common = run.common
    config, metrics, generator = common.config, common.metrics, common.generator
    t0 = time.perf_counter()
    drafting = run.policy.should_draft()
    if drafting:
        tree_config = run.policy.tree(config.tree)
        tree = run.session.draft(run.root_position, tree_config, config.temperature, generator)
    else:
        tree = root_only(run.generated[-1], run.target.device)
    t1 = time.perf_counter()
    prefix_len = run.cache.get_seq_length()
    logits, hidden = run.target.forward_tree(
        tree.tokens, tree.depths, tree.ancestor_mask, run.root_position, run.cache
    )
    verdict = _accept(tree, logits, config, generator)
    path = torch.tensor(verdict.path, device=logits.device)
    run.target.keep_path(run.cache, prefix_len, path)
    before = len(run.generated)
    done = common.stop.extend(run.generated, verdict.tokens)
    stream(common.streamer, run.generated[before:])
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


def _accept(tree: DraftTree, logits: torch.Tensor, config: GenerationConfig, generator):
    """The verdict on ``tree`` from the target's logits [n, V] (:mod:`hivis.acceptance`)."""
    if config.temperature == 0.0:
        return accept_greedy(tree, target_scores(logits, config))  # also rejects NaN
    check_finite(logits)
    return accept_sampling(tree, target_scores(logits, config), 1.0, generator)


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
    streamer=None,
) -> GenerationResult:
    """Baseline: plain decoding with the target's KV cache, one forward per token."""
    common = _common(target, prompt, config, streamer)
    metrics = common.metrics
    start = time.perf_counter()
    cache, _, generated, done = _prefill(target, prompt, common, prefix_cache)
    position = prompt.next_position
    while not done:
        t1 = time.perf_counter()
        logits = target.decode_one(generated[-1], position, cache)
        check_finite(logits)
        token = _choose(target_scores(logits, config), config, common.generator)
        done = common.stop.extend(generated, [token])
        stream(streamer, generated[-1:])
        position += 1
        metrics.verify_s += time.perf_counter() - t1
        metrics.verify_steps += 1
        metrics.accepted_per_step.append(0)
        metrics.committed_in_steps += 1
    return _result(target, generated, common, start)
