"""The HiViS drafter: one decoder layer of the target's kind over fused text features.

Row convention (EAGLE's shift): the drafter row for token position j fuses the token x_j with
the target's last-layer hidden state f_{j-1} of the previous position (which, inside a VLM,
has already attended to the image), at the target's position id p_j:

    h_j = Layer(fc(concat(embed(x_j), f_{j-1}, residual[k])))      k = drafting step

and predicts f_j, so ``lm_head(h_j)`` scores x_{j+1}. ``residual`` is a learned (K, hidden)
table indexed by the drafting step (k = 0 for rows fed with the target's own features, k >= 1
for rows fed with the drafter's own predicted features at tree depth k; k >= K uses row K-1).
The target's embedding and LM head are shared and frozen and are not saved with the drafter.

HiViS (``hide_visual_tokens=True``) feeds only rows whose token is text: every position the
target fills with image features is removed, the remaining rows keep the target's position
ids. ``hide_visual_tokens=False`` gives the EAGLE-style baseline that also gets visual rows.
``use_target_features=False`` gives the text-only ablation: rows fed with the target's features
(step 0) get zeros instead, so the drafter has no implicit visual information; its own
predicted features at later steps are still used.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from hivis.kv_cache import crop, growing_cache
from hivis.lean_layer import LeanDecoderLayer, lean_layer_for
from hivis.protocols import TargetModel
from hivis.targets.base import HFTarget, PreparedPrompt, additive_tree_mask
from hivis.targets.kwargs import cache_kwargs
from hivis.tree import DraftTree, TreeConfig, expand_tree

FORMAT_VERSION = 1
_WEIGHTS, _CONFIG = "drafter.safetensors", "config.json"


@dataclass(frozen=True)
class DrafterConfig:
    """What a saved drafter is, checked against the target on load."""

    family: str
    hidden_size: int
    vocab_size: int
    num_steps: int = 4
    hide_visual_tokens: bool = True
    use_target_features: bool = True
    text_config: dict | None = None
    format_version: int = FORMAT_VERSION
    target_fingerprint: dict | None = None  # see target_fingerprint(); None: not recorded


class DrafterMismatchError(ValueError):
    """The drafter was made for a different target."""


class DrafterFileError(ValueError):
    """A drafter directory whose files are missing, truncated or corrupt."""


# Text-config fields that say nothing about the weights (paths, dtypes, generation flags).
_NOT_ARCHITECTURE = frozenset(
    {
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "transformers_version",
        "architectures",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_cache",
        "id2label",
        "label2id",
        "problem_type",
        "chunk_size_feed_forward",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
    }
)
_SAMPLES = 64  # entries of the embedding and of the LM head recorded in a fingerprint
_SAMPLE_RTOL = 2e-2  # bfloat16 keeps 8 mantissa bits: a dtype cast moves entries < 0.4 %


def target_fingerprint(target: HFTarget) -> dict:
    """What identifies the target a drafter is trained on: its text config (architecture
    fields, :data:`_NOT_ARCHITECTURE` left out) and 64 fixed entries of its embedding and LM
    head (rows spread over the vocabulary). Entries, not a hash, so that the same target
    loaded in another dtype still matches (within :data:`_SAMPLE_RTOL`)."""
    config = json.loads(target.text_config.to_json_string(use_diff=False))
    text = {k: v for k, v in sorted(config.items()) if k not in _NOT_ARCHITECTURE}
    return {
        "text_config": text,
        "embedding": _weight_sample(target.embed_tokens.weight),
        "lm_head": _weight_sample(_head_weight(target.lm_head)),
    }


def _head_weight(head) -> torch.Tensor:
    weight = head.weight
    return weight() if callable(weight) else weight  # dynamic-quantised Linear: a method


def _weight_sample(weight: torch.Tensor) -> list[float]:
    """[V, H] -> 64 entries at rows spread over V and columns scattered over H."""
    if weight.is_quantized:
        weight = weight.dequantize()
    rows, cols = weight.shape
    index = torch.arange(_SAMPLES)
    row = index * (rows - 1) // (_SAMPLES - 1)
    col = (index * 7919 + row) % cols
    return [float(v) for v in weight.detach()[row, col].float().cpu()]


def fingerprint_differences(recorded: dict, current: dict) -> list[str]:
    """What differs between two :func:`target_fingerprint` s, in words (empty: the same)."""
    problems = []
    old, new = recorded.get("text_config", {}), current.get("text_config", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            problems.append(
                f"text config {key}: drafter's target {old.get(key)!r}, this {new.get(key)!r}"
            )
    for part in ("embedding", "lm_head"):
        a = torch.tensor(recorded.get(part, []), dtype=torch.float64)
        b = torch.tensor(current.get(part, []), dtype=torch.float64)
        if a.shape != b.shape or not torch.allclose(a, b, rtol=_SAMPLE_RTOL, atol=1e-6):
            problems.append(f"{part} weights differ from those the drafter was trained with")
    return problems


class HiViSDrafter(nn.Module):
    """HiViS drafter bound to a target (which supplies the layer kind, embedding, LM head);
    a :class:`~hivis.protocols.Proposer` whose sessions are :class:`DrafterSession`."""

    def __init__(
        self,
        target: HFTarget,
        num_steps: int = 4,
        hide_visual_tokens: bool = True,
        use_target_features: bool = True,
    ):
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        text_config = copy.deepcopy(target.text_config)
        text_config._attn_implementation = "sdpa"
        self.config = DrafterConfig(
            family=target.family.value,
            hidden_size=target.hidden_size,
            vocab_size=target.vocab_size,
            num_steps=num_steps,
            hide_visual_tokens=hide_visual_tokens,
            use_target_features=use_target_features,
            text_config=_config_dict(text_config),
            target_fingerprint=target_fingerprint(target),
        )
        hidden = target.hidden_size
        self.fc = nn.Linear(3 * hidden, hidden, bias=False)
        self.residual = nn.Parameter(torch.randn(num_steps, hidden) * 0.02)
        layer_cls = type(target.language_model.layers[0])
        self.layer = layer_cls(text_config, layer_idx=0)
        self.rotary = type(target.language_model.rotary_emb)(config=text_config)
        self.mrope = target.mrope
        # A plain tuple keeps the shared modules out of parameters() and state_dict().
        self._shared = (target.embed_tokens, target.lm_head)
        self._target = target
        self.to(device=target.device, dtype=target.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        target_hidden: torch.Tensor,
        positions: torch.Tensor,
        step: int | torch.Tensor = 0,
        attention_mask: torch.Tensor | None = None,
        cache=None,
        lean: LeanDecoderLayer | None = None,
    ) -> torch.Tensor:
        """Drafter hidden states.

        input_ids: [b, s] tokens x_j. target_hidden: [b, s, H] features f_{j-1} (target's, or
        the drafter's own at later steps). positions: [R, b, s] target position ids (R = 3
        for M-RoPE families, else 1). step: drafting step k, an int or [b, s] long tensor.
        attention_mask: None (causal) or [b, 1, s, past + s] additive. lean: an inference copy
        of the layer (``lean_layer_for``) to run instead of the HF module. Returns [b, s, H].
        """
        embed = self._shared[0](input_ids).detach()
        steps = torch.as_tensor(step, device=input_ids.device)
        if not self.config.use_target_features:  # text-only ablation: no target features
            target_hidden = target_hidden * (steps != 0).to(target_hidden.dtype)[..., None]
        steps = steps.clamp(max=self.config.num_steps - 1)
        residual = self.residual[steps].expand(*input_ids.shape, -1)
        fused = self.fc(torch.cat([embed, target_hidden, residual], dim=-1))
        native = positions if self.mrope else positions[0]
        rope = self.rotary(fused, native)
        if lean is not None:
            return lean(fused, attention_mask, rope, cache)
        return self.layer(
            fused,
            attention_mask=attention_mask,
            position_ids=native if not self.mrope else native[0],
            use_cache=cache is not None,
            position_embeddings=rope,
            **cache_kwargs(self.layer, cache),
        )

    @property
    def target(self) -> HFTarget:
        """The target this drafter was built or loaded for (it shares its embedding and head)."""
        return self._target

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., V] through the target's frozen LM head."""
        head = self._shared[1]
        if type(head) is not nn.Linear:  # e.g. a dynamic-int8 head: its own forward, 2-D
            rows = head(hidden.reshape(-1, hidden.shape[-1]))
            return rows.reshape(*hidden.shape[:-1], rows.shape[-1])
        bias = None if head.bias is None else head.bias.detach()
        return F.linear(hidden, head.weight.detach(), bias)

    def begin(
        self, target: TargetModel, prompt: PreparedPrompt, hidden: torch.Tensor, first_token: int
    ) -> DrafterSession:
        """Start drafting for one generation (see :class:`DrafterSession`); hidden:
        [1, L, H] the target's last-layer states over the prompt."""
        return DrafterSession(self, prompt, hidden, first_token)

    def save(self, directory: str | Path) -> Path:
        """Write ``drafter.safetensors`` and ``config.json`` (shared weights excluded)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / _WEIGHTS), metadata={"format": "hivis-drafter"})
        (directory / _CONFIG).write_text(json.dumps(asdict(self.config), indent=2))
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, target: HFTarget, allow_other_target: bool = False
    ) -> HiViSDrafter:
        """Load a saved drafter for ``target``. Refused, with what differs: a drafter of
        another shape, or one trained on another target (its recorded
        :func:`target_fingerprint`; ``allow_other_target`` skips that check, for
        experiments). Missing, truncated or corrupt files are named."""
        directory = Path(directory)
        config = read_config(directory)
        check_fits(config, target)
        if config.target_fingerprint is not None and not allow_other_target:
            problems = fingerprint_differences(
                config.target_fingerprint, target_fingerprint(target)
            )
            if problems:
                raise DrafterMismatchError(
                    f"the drafter in {directory} was trained on another target ("
                    + "; ".join(problems[:4])
                    + "); pass allow_other_target=True (CLI: --allow-other-target) to use it "
                    "anyway"
                )
        drafter = cls(
            target, config.num_steps, config.hide_visual_tokens, config.use_target_features
        )
        weights = directory / _WEIGHTS
        try:
            state = load_file(str(weights))
        except Exception as err:  # safetensors raises its own SafetensorError
            raise DrafterFileError(
                f"{weights} is unreadable (truncated or corrupt?): {err}"
            ) from None
        try:
            drafter.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise DrafterFileError(
                f"{weights} does not hold this drafter's weights: {first}"
            ) from None
        return drafter.eval()


def read_config(directory: Path) -> DrafterConfig:
    """The :class:`DrafterConfig` saved in ``directory``, or an error naming the file."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} holds no hivis drafter (no such directory)")
    missing = [name for name in (_CONFIG, _WEIGHTS) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory} holds no hivis drafter (missing {', '.join(missing)})"
        )
    path = directory / _CONFIG
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DrafterFileError(f"{path} is not valid JSON (truncated or corrupt?): {err}") from None
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        version = raw.get("format_version") if isinstance(raw, dict) else None
        raise DrafterMismatchError(
            f"{path}: drafter format version {version!r} is not the supported version "
            f"{FORMAT_VERSION}"
        )
    try:
        return DrafterConfig(**raw)
    except TypeError as err:
        raise DrafterFileError(f"{path} is not a hivis drafter config: {err}") from None


_LAYER_SHAPE = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)


def check_fits(config: DrafterConfig, target: HFTarget) -> None:
    """Raise :class:`DrafterMismatchError` naming every field that differs from the target
    (family, sizes, and the layer shape its text config gives)."""
    wanted = {
        "family": target.family.value,
        "hidden_size": target.hidden_size,
        "vocab_size": target.vocab_size,
    }
    bad = [
        f"{k}: drafter {getattr(config, k)!r} vs target {v!r}"
        for k, v in wanted.items()
        if getattr(config, k) != v
    ]
    mine, theirs = config.text_config or {}, target.text_config.to_dict()
    bad += [
        f"{k}: drafter {mine.get(k)!r} vs target {theirs.get(k)!r}"
        for k in _LAYER_SHAPE
        if k in mine and mine.get(k) != theirs.get(k)
    ]
    if bad:
        raise DrafterMismatchError("the drafter does not fit this target (" + "; ".join(bad) + ")")


def _config_dict(text_config) -> dict:
    data = text_config.to_dict()
    return {k: v for k, v in data.items() if not k.startswith("_")}


def drafter_rows(
    prompt: PreparedPrompt, hidden: torch.Tensor, hide_visual_tokens: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The drafter's prefill rows for a prompt (row j = (x_j, f_{j-1}, p_j), j = 1..L-1).

    hidden: [1, L, H] target last-layer hidden states. With ``hide_visual_tokens`` every row
    whose token is visual is dropped. Returns (tokens [1, r], features [1, r, H],
    positions [R, 1, r]). Also used by feature generation for training.
    """
    keep = torch.ones(prompt.length, dtype=torch.bool)
    keep[0] = False
    if hide_visual_tokens:
        keep &= ~prompt.visual_mask.cpu()
    index = torch.nonzero(keep).squeeze(-1).to(hidden.device)
    tokens = prompt.input_ids.to(hidden.device)[:, index]
    features = hidden[:, index - 1]
    positions = prompt.positions.to(hidden.device)[:, index][:, None, :]
    return tokens, features, positions


class DrafterSession:
    """Per-generation drafter state (a :class:`~hivis.protocols.DraftSession`): its KV cache
    (committed rows only) and pending rows.

    Pending rows are committed tokens not yet fed to the drafter, each with the target's
    feature of the previous position; the last pending token is the tree root.
    """

    def __init__(self, drafter: HiViSDrafter, prompt: PreparedPrompt, hidden, first_token: int):
        self.drafter = drafter
        self.cache = growing_cache(1)
        self.lean = lean_layer_for(drafter.layer)  # None: the HF layer runs
        tokens, features, positions = drafter_rows(
            prompt, hidden, drafter.config.hide_visual_tokens
        )
        self.prefill_length = int(tokens.shape[1])
        device = hidden.device
        root = torch.tensor([[first_token]], device=device)
        root_pos = torch.full((positions.shape[0], 1, 1), prompt.next_position, device=device)
        self.rope_rows = positions.shape[0]
        self.pending = (
            torch.cat([tokens, root], dim=1),
            torch.cat([features, hidden[:, -1:]], dim=1),
            torch.cat([positions, root_pos], dim=2),
        )

    def accept(self, tokens: list[int], features: torch.Tensor, root_position: int) -> None:
        """Queue committed ``tokens`` (after the old root) with target features [m, H]."""
        device = features.device
        count = len(tokens)
        positions = torch.arange(root_position + 1, root_position + 1 + count, device=device)
        rows = positions.view(1, 1, -1).expand(self.rope_rows, 1, -1)
        new = (torch.tensor([tokens], device=device), features[None], rows)
        if self.pending is not None:  # drafting was skipped: rows accumulate
            old = self.pending
            new = (
                torch.cat([old[0], new[0]], dim=1),
                torch.cat([old[1], new[1]], dim=1),
                torch.cat([old[2], new[2]], dim=2),
            )
        self.pending = new

    def draft(
        self, root_position: int, config: TreeConfig, temperature: float, generator=None
    ) -> DraftTree:
        """Feed pending rows (step 0), then expand a tree; the cache keeps committed rows only."""
        tokens, features, positions = self.pending
        self.pending = None
        committed = self.cache.get_seq_length()
        causal = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).tril()
        mask = additive_tree_mask(causal.to(tokens.device), committed, features.dtype)
        out = self.drafter(tokens, features, positions, 0, mask, self.cache, self.lean)[0]
        base = committed + tokens.shape[1]
        grower = _TreeFeeder(self, out[-1], root_position, base)
        root_logits = self.drafter.logits(out[-1])
        tree = expand_tree(grower, int(tokens[0, -1]), root_logits, config, temperature, generator)
        crop(self.cache, base)  # drop the tree rows: views, no copy
        return tree


class _TreeFeeder:
    """Callback for :func:`expand_tree`: runs the drafter on a level of tree nodes."""

    def __init__(self, session: DrafterSession, root_feature, root_position: int, base: int):
        self.session = session
        self.outputs = {0: root_feature}
        self.rows: dict[int, int] = {}
        self.root_position = root_position
        self.base = base

    def __call__(self, nodes: list[int], tokens: list[int], parents: list[int], depth: int):
        drafter, cache = self.session.drafter, self.session.cache
        device = self.outputs[0].device
        fed = len(self.rows)
        allowed = torch.zeros(len(nodes), fed + len(nodes), dtype=torch.bool)
        for row, node in enumerate(nodes):
            allowed[row, fed + row] = True
            parent = parents[node]
            while parent > 0:
                allowed[row, self.rows[parent]] = True
                parent = parents[parent]
        features = torch.stack([self.outputs[parents[n]] for n in nodes])[None]
        ids = torch.tensor([[tokens[n] for n in nodes]], device=device)
        pos = torch.full((self.session.rope_rows, 1, len(nodes)), 0, device=device)
        pos += self.root_position + depth
        mask = additive_tree_mask(allowed.to(device), self.base, features.dtype)
        out = drafter(ids, features, pos, depth, mask, cache, self.session.lean)[0]
        for row, node in enumerate(nodes):
            self.outputs[node] = out[row]
            self.rows[node] = fed + row
        return drafter.logits(out)
