"""The command line: ``hivis generate`` and ``hivis verify lossless``."""

from __future__ import annotations

import io
import json

import pytest
import torch

import hivis
from hivis.cli import main
from hivis.selfcheck.inputs import random_image
from hivis.targets import Family
from hivis.world.drafters.shipped import DrafterKind, load_world


def test_cli_generate_matches_api(tiny_target, target_dir, tmp_path, capsys):
    target = tiny_target(Family.QWEN2_5_VL)
    torch.manual_seed(0)
    drafter = hivis.HiViSDrafter(target)
    drafter.save(tmp_path / "drafter")
    image = tmp_path / "scene.png"
    random_image(4).save(image)
    prompt = "<|vision_start|><|image_pad|><|vision_end|> how many red objects"
    code = main(
        [
            "generate",
            "--target",
            str(target_dir(Family.QWEN2_5_VL)),
            "--drafter",
            str(tmp_path / "drafter"),
            "--image",
            str(image),
            "--prompt",
            prompt,
            "--max-new-tokens",
            "9",
            "--chain",
            "2",
            "--json",
            "--raw-prompt",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    api = hivis.generate(
        target, drafter, [str(image)], prompt, max_new_tokens=9, tree=hivis.TreeConfig.chain(2)
    )
    assert out["token_ids"] == api.token_ids
    assert out["text"] == api.text
    assert out["metrics"]["new_tokens"] == len(api.token_ids)
    assert 0 < out["metrics"]["drafter_prefill_ratio"] < 1


def test_cli_verify_lossless_json(capsys):
    code = main(["verify", "lossless", "--cases", "1", "--family", "llava", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"cases": [{"family": "llava", "identical": 1, "total": 1}]}


@pytest.fixture(scope="module")
def shipped():
    return load_world(kinds=(DrafterKind.HIVIS,))


def _count_case(tmp_path):
    from hivis.world.data.tasks import TaskType
    from hivis.world.drafters.shipped import test_cases

    case = test_cases(1, (TaskType.COUNT_COLOUR,))[0]
    path = tmp_path / "scene.png"
    case.image.save(path)
    return case, path


def test_cli_defaults_to_shipped_models_with_chat_template_and_streams(shipped, tmp_path, capsys):
    case, image = _count_case(tmp_path)
    code = main(["generate", "--image", str(image), "--prompt", case.question, "--stream"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "shipped world models" in captured.err
    assert captured.out.strip() == case.reference  # the chat template makes it right
    api = hivis.generate(
        shipped.target, shipped.drafters[DrafterKind.HIVIS], [image], messages=case.question
    )
    assert api.text.strip() == case.reference
    raw = hivis.generate(
        shipped.target,
        shipped.drafters[DrafterKind.HIVIS],
        [image],
        prompt=case.prompt,
        max_new_tokens=64,
    )
    assert raw.token_ids == api.token_ids  # the world's prompt is what its template writes


def test_cli_device_dtype_threads(tmp_path, capsys):
    case, image = _count_case(tmp_path)
    base = ["generate", "--image", str(image), "--prompt", case.question, "--json"]
    assert main(base + ["--dtype", "bfloat16", "--threads", "1", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["new_tokens"] > 0
    for extra, message in (
        (["--device", "cuda:7"], "CUDA"),
        (["--device", "nonsense"], "not a torch device"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--target", str(tmp_path)], "both --target and --drafter"),
        (["--image", str(tmp_path / "absent.png")], "cannot read image"),
    ):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_cli_refuses_a_damaged_drafter_without_traceback(tiny_target, target_dir, tmp_path, capsys):
    target = tiny_target(Family.LLAVA)
    directory = hivis.HiViSDrafter(target).save(tmp_path / "drafter")
    weights = directory / "drafter.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    image = tmp_path / "i.png"
    random_image(0).save(image)
    args = ["generate", "--target", str(target_dir(Family.LLAVA)), "--drafter", str(directory)]
    code = main(args + ["--image", str(image), "--prompt", "<image> what", "--raw-prompt"])
    err = capsys.readouterr().err
    assert code == 2
    assert "drafter.safetensors" in err and "truncated or corrupt" in err
    assert err.count("\n") == 1  # one message, no traceback


def test_cli_world_assets_export_hf_and_chat(shipped, tmp_path, capsys, monkeypatch):
    assert main(["world", "assets", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert set(paths) >= {"target", "hivis", "eagle", "text-only"}
    assert main(["export-hf", paths["hivis"], str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "custom_generate" / "generate.py").is_file()
    capsys.readouterr()
    case, image = _count_case(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{case.question}\nWhat colour is it?\n\n"))
    assert main(["chat", "--image", str(image), "--max-new-tokens", "40"]) == 0
    captured = capsys.readouterr()
    answers = [line for line in captured.out.splitlines() if line.strip()]
    assert answers[0].strip() == case.reference
    assert len(answers) == 2
    assert captured.err.count("acceptance length") == 2


def test_cli_foreign_drafter_needs_allow_other_target_and_damaged_target_is_named(
    tiny_target, target_dir, tmp_path, capsys
):
    import shutil

    from hivis.selfcheck.zoo import TinySpec

    other = tiny_target(Family.LLAVA, TinySpec(seed=1))
    directory = hivis.HiViSDrafter(other).save(tmp_path / "drafter")
    image = tmp_path / "i.png"
    random_image(0).save(image)
    args = ["generate", "--target", str(target_dir(Family.LLAVA)), "--drafter", str(directory)]
    args += ["--image", str(image), "--prompt", "<image> what", "--raw-prompt", "--json"]
    assert main(args) == 2
    assert "trained on another target" in capsys.readouterr().err
    assert main(args + ["--allow-other-target"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["new_tokens"] > 0
    broken = tmp_path / "target"
    shutil.copytree(target_dir(Family.LLAVA), broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    args[2] = str(broken)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot load the model weights in {broken}" in err and "Traceback" not in err
