"""Training records in the LLaVA conversation format: JSONL + an image folder.

One record per line::

    {"id": "0001", "image": "images/0001.png",
     "conversations": [{"from": "human", "value": "<image>\\nHow many red objects?"},
                       {"from": "gpt", "value": "There are 2 red objects."}]}

``image`` may also be a list of paths (several images) or absent (text only). Paths are
relative to the image folder. Turns alternate human / gpt starting with human; each image is
referenced by one ``<image>`` placeholder (LLaVA's convention: when a record has one image and
no placeholder, it is put in front of the first human turn).

Bad records never stop a run and never pass silently: :func:`read_records` skips them and counts
the reason in a :class:`SkipLog`, which the caller reports.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_PLACEHOLDER = "<image>"


class Role(Enum):
    USER = "human"
    ASSISTANT = "gpt"


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


@dataclass(frozen=True)
class Record:
    """One validated conversation: ``images`` are absolute paths that decode."""

    id: str
    images: tuple[Path, ...]
    turns: tuple[Turn, ...]
    line: int

    def with_answer(self, turn: int, text: str) -> Record:
        """The same record with assistant turn ``turn`` (an index into ``turns``) replaced,
        as target regeneration does."""
        if self.turns[turn].role is not Role.ASSISTANT:
            raise ValueError(f"turn {turn} of record {self.id} is not an assistant turn")
        turns = list(self.turns)
        turns[turn] = Turn(Role.ASSISTANT, text)
        return Record(self.id, self.images, tuple(turns), self.line)


class RecordError(ValueError):
    """A record that cannot be used; ``reason`` is a short category for the skip log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class SkipLog:
    """Counts of skipped records by reason, with the first example of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, line: int, error: RecordError) -> None:
        self.counts[error.reason] += 1
        self.examples.setdefault(error.reason, f"line {line}: {error}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "no records skipped"
        parts = [
            f"{n} {reason} (e.g. {self.examples[reason]})" for reason, n in self.counts.items()
        ]
        return f"skipped {self.total} records: " + "; ".join(parts)


def read_records(
    jsonl: str | Path,
    image_root: str | Path | None = None,
    require_image: bool = True,
    skip_log: SkipLog | None = None,
) -> Iterator[Record]:
    """Yield the valid records of ``jsonl`` in file order; invalid ones go to ``skip_log``.

    image_root: folder the image paths are relative to (default: the JSONL's folder).
    require_image: a record without an image is skipped (the target needs one).
    """
    path = Path(jsonl)
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    log = skip_log if skip_log is not None else SkipLog()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield parse_record(line, number, root, require_image)
            except RecordError as err:
                log.add(number, err)


def parse_record(line: str, number: int, root: Path, require_image: bool) -> Record:
    """Parse and validate one JSONL line; raises :class:`RecordError` with the reason."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordError("invalid JSON", str(err)) from err
    if not isinstance(raw, dict) or not isinstance(raw.get("conversations"), list):
        raise RecordError("no conversations", "a record needs a 'conversations' list")
    images = _image_paths(raw.get("image"), root)
    if require_image and not images:
        raise RecordError("no image", f"record {raw.get('id', number)} has no image")
    turns = _turns(raw["conversations"])
    turns = _place_image_tokens(turns, len(images))
    for image in images:
        _check_image(image)
    return Record(str(raw.get("id", number)), images, turns, number)


def _image_paths(value: object, root: Path) -> tuple[Path, ...]:
    if value is None:
        return ()
    names = value if isinstance(value, list) else [value]
    if not all(isinstance(n, str) and n for n in names):
        raise RecordError(
            "bad image field", f"'image' must be a path or a list of paths: {value!r}"
        )
    return tuple((root / n).resolve() for n in names)


def _turns(conversations: list) -> tuple[Turn, ...]:
    turns = []
    for i, message in enumerate(conversations):
        if not isinstance(message, dict) or not isinstance(message.get("value"), str):
            raise RecordError("bad turn", f"turn {i} needs 'from' and a string 'value'")
        try:
            role = Role(message.get("from"))
        except ValueError as err:
            raise RecordError("bad turn", f"turn {i} is from {message.get('from')!r}") from err
        expected = Role.USER if i % 2 == 0 else Role.ASSISTANT
        if role is not expected:
            raise RecordError("bad turn order", f"turn {i} should be from {expected.value!r}")
        turns.append(Turn(role, message["value"]))
    if len(turns) < 2 or turns[-1].role is not Role.ASSISTANT:
        raise RecordError("no answer", "a conversation needs at least one gpt turn, last")
    return tuple(turns)


def _place_image_tokens(turns: tuple[Turn, ...], n_images: int) -> tuple[Turn, ...]:
    count = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns)
    if count == n_images:
        return turns
    if count == 0 and n_images == 1:
        first = Turn(Role.USER, f"{IMAGE_PLACEHOLDER}\n{turns[0].text}")
        return (first, *turns[1:])
    raise RecordError(
        "image count mismatch",
        f"{n_images} image(s) but {count} {IMAGE_PLACEHOLDER} placeholder(s)",
    )


def _check_image(path: Path) -> None:
    if not path.is_file():
        raise RecordError("missing image", str(path))
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise RecordError("unreadable image", f"{path}: {err}") from err
