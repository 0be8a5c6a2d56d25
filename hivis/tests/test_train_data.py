"""LLaVA-style training records: valid ones are read in order, every bad one is skipped and
counted with its reason."""

import json

import pytest
from PIL import Image

from hivis.train.data import IMAGE_PLACEHOLDER, Role, SkipLog, read_records


def conversation(question: str = f"{IMAGE_PLACEHOLDER}\nWhat is it?", answer: str = "A cat."):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "images" / "ok.png")
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png at all")
    return tmp_path


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_valid_records_are_read_and_placeholder_added(folder):
    write_jsonl(
        folder / "data.jsonl",
        [
            {"id": "a", "image": "images/ok.png", "conversations": conversation()},
            {"id": "b", "image": "images/ok.png", "conversations": conversation("What is it?")},
        ],
    )
    records = list(read_records(folder / "data.jsonl"))
    assert [r.id for r in records] == ["a", "b"]
    assert records[1].turns[0].text == f"{IMAGE_PLACEHOLDER}\nWhat is it?"
    assert records[0].images == ((folder / "images" / "ok.png").resolve(),)
    assert records[0].turns[1].role is Role.ASSISTANT
    regenerated = records[0].with_answer(1, "A red square.")
    assert (
        regenerated.turns[1].text == "A red square." and regenerated.turns[0] == records[0].turns[0]
    )


def test_bad_records_are_skipped_and_counted(folder):
    rows = [
        {"id": "good", "image": "images/ok.png", "conversations": conversation()},
        "{not json",
        {"id": "noimg", "conversations": conversation("hi")},
        {"id": "missing", "image": "images/nope.png", "conversations": conversation()},
        {"id": "broken", "image": "images/broken.png", "conversations": conversation()},
        {
            "id": "two",
            "image": "images/ok.png",
            "conversations": conversation(f"{IMAGE_PLACEHOLDER}{IMAGE_PLACEHOLDER} two?"),
        },
        {"id": "order", "image": "images/ok.png", "conversations": conversation()[::-1]},
        {"id": "noanswer", "image": "images/ok.png", "conversations": conversation()[:1]},
    ]
    write_jsonl(folder / "data.jsonl", rows)
    log = SkipLog()
    records = list(read_records(folder / "data.jsonl", skip_log=log))
    assert [r.id for r in records] == ["good"]
    assert log.total == 7
    assert set(log.counts) == {
        "invalid JSON",
        "no image",
        "missing image",
        "unreadable image",
        "image count mismatch",
        "bad turn order",
        "no answer",
    }
    assert "line 5" in log.examples["unreadable image"]
    assert "skipped 7 records" in log.summary()


def test_text_only_records_allowed_when_asked(folder):
    write_jsonl(folder / "data.jsonl", [{"id": "t", "conversations": conversation("hi")}])
    assert [r.id for r in read_records(folder / "data.jsonl", require_image=False)] == ["t"]


def test_missing_files_are_clear_errors(folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_records(folder / "absent.jsonl"))
    write_jsonl(folder / "data.jsonl", [])
    with pytest.raises(FileNotFoundError, match="image folder"):
        list(read_records(folder / "data.jsonl", image_root=folder / "nowhere"))
