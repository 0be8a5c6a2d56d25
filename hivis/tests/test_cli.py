"""The command line: ``hivis generate`` and ``hivis verify lossless``."""

from __future__ import annotations

import json

import torch

import hivis
from hivis.cli import main
from hivis.selfcheck.inputs import random_image
from hivis.targets import Family


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
