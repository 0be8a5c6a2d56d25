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


class DrafterMismatchError(ValueError):
    """The drafter was made for a different target."""


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

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., H] -> [..., V] through the target's frozen LM head."""
        head = self._shared[1]
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
    def load(cls, directory: str | Path, target: HFTarget) -> HiViSDrafter:
        """Load a saved drafter for ``target``; refuse one made for another target."""
        directory = Path(directory)
        if not (directory / _CONFIG).is_file() or not (directory / _WEIGHTS).is_file():
            raise FileNotFoundError(f"{directory} holds no hivis drafter ({_CONFIG}, {_WEIGHTS})")
        raw = json.loads((directory / _CONFIG).read_text())
        if raw.get("format_version") != FORMAT_VERSION:
            raise DrafterMismatchError(
                f"drafter format version {raw.get('format_version')!r} is not the supported "
                f"version {FORMAT_VERSION}"
            )
        config = DrafterConfig(**raw)
        check_fits(config, target)
        drafter = cls(
            target, config.num_steps, config.hide_visual_tokens, config.use_target_features
        )
        drafter.load_state_dict(load_file(str(directory / _WEIGHTS)))
        return drafter.eval()


def check_fits(config: DrafterConfig, target: HFTarget) -> None:
    """Raise :class:`DrafterMismatchError` naming every field that differs from the target."""
    wanted = {
        "family": target.family.value,
        "hidden_size": target.hidden_size,
        "vocab_size": target.vocab_size,
    }
    bad = [f"{k}: drafter {getattr(config, k)!r} vs target {v!r}" for k, v in wanted.items()]
    bad = [b for b, (k, v) in zip(bad, wanted.items(), strict=True) if getattr(config, k) != v]
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
