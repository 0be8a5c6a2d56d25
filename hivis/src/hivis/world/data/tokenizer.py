"""A small byte-level BPE tokenizer trained on the world's text, in Hugging Face format.

Byte-level BPE decodes every string back exactly (no unknown token), and with a vocabulary of a
few hundred entries every frequent world word becomes a single token. Special tokens: ``<pad>``,
``<s>`` (bos), ``</s>`` (eos) and the image placeholder ``<image>``. The tokenizer adds no special
token by itself: the chat template writes ``<s>`` explicitly, so prompts built from the template
and prompts built by ``prompt_text`` are the same token sequence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from hivis.world.data.dataset import Split, iter_samples
from hivis.world.data.long_form import long_form_vocabulary
from hivis.world.data.scenes import WorldConfig

PAD, BOS, EOS, IMAGE = "<pad>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, BOS, EOS, IMAGE)
USER_PREFIX = "USER: "
ASSISTANT_TAG = " ASSISTANT:"

# LLaVA-1.5 conversation layout: "<s>USER: <image>\n{question} ASSISTANT: {answer}</s>".
# Message content may be a plain string or a list of {"type": "image"} / {"type": "text"} items.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if not loop.last or add_generation_prompt %} ASSISTANT:{% endif %}"
    "{% else %} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)


def prompt_text(question: str) -> str:
    """The target's prompt for one question about one image (what the chat template writes)."""
    return f"{BOS}{USER_PREFIX}{IMAGE}\n{question}{ASSISTANT_TAG}"


def answer_text(answer: str) -> str:
    """The text the target is trained to produce after ``prompt_text``."""
    return f" {answer}{EOS}"


def world_corpus(scenes: int, seed: int = 0, long_form: bool = False) -> Iterator[str]:
    """Questions and answers of ``scenes`` training scenes (with ``long_form`` their
    long-form questions too), plus the conversation tags."""
    yield USER_PREFIX + ASSISTANT_TAG
    for sample in iter_samples(seed, Split.TRAIN, scenes, WorldConfig(), long_form=long_form):
        for task in sample.tasks:
            yield task.question
            yield " " + task.answer
    if long_form:
        yield from long_form_vocabulary()


def train_tokenizer(
    vocab_size: int = 640, scenes: int = 3000, seed: int = 0, long_form: bool = False
):
    """Train the byte-level BPE on the world's text; return a ``PreTrainedTokenizerFast``.
    ``long_form`` adds the long-form questions to the corpus (their words then become single
    tokens too; the token ids of every word change, so a target trained with one tokenizer
    cannot use the other)."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(world_corpus(scenes, seed, long_form), trainer=trainer)
    return wrap_tokenizer(core)


def extend_tokenizer(base: PreTrainedTokenizerFast, texts) -> PreTrainedTokenizerFast:
    """``base`` with merges appended so that every piece of the byte-level pre-tokenizer in
    ``texts`` becomes one token. Every token of ``base`` keeps its id and every text ``base``
    spelled one token per piece keeps its encoding (the new merges rank last and pair tokens
    that no such text holds side by side), so a target trained with ``base`` still reads its
    own questions the same way (``target.grow`` starts a deeper target from it)."""
    state = json.loads(base.backend_tokenizer.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    core = Tokenizer.from_str(json.dumps(state))
    for text in texts:
        for piece, _ in core.pre_tokenizer.pre_tokenize_str(text):
            tokens = core.model.tokenize(piece)
            while len(tokens) > 1:
                # Merge the first two tokens: ranked last, this merge fires only where all
                # earlier merges are done, i.e. in this piece (and pieces built like it).
                left, right = tokens[0].value, tokens[1].value
                merges.append([left, right])
                vocab.setdefault(left + right, max(vocab.values()) + 1)
                core = Tokenizer.from_str(json.dumps(state))
                tokens = core.model.tokenize(piece)
    return wrap_tokenizer(core)


def wrap_tokenizer(core: Tokenizer) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)


NO_LONG_FORM = (
    "the target's tokenizer was not trained with the long-form questions (`hivis world "
    "tokenizer --long-form`), so the target never learnt them"
)


def one_token_per_word(tokenizer, text: str) -> bool:
    """Whether ``text`` is encoded as one token per word or punctuation mark (per piece of the
    byte-level pre-tokenizer): how the world tokenizer encodes the text it was trained on."""
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) == len(pieces)


def expresses_long_form(tokenizer) -> bool:
    """Whether ``tokenizer`` was trained with the long-form vocabulary: every word of
    :func:`~hivis.world.data.long_form.long_form_vocabulary` is one token. A tokenizer
    trained without it still encodes any text (byte-level BPE), but spells the new words in
    pieces, and a target trained with it never saw a long-form answer."""
    return all(one_token_per_word(tokenizer, text) for text in long_form_vocabulary())
