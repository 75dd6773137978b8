"""The run configuration, the one preset table, the choice for this machine, and the early ETA."""

import dataclasses
import json

import pytest
import torch

from sei_core import cli
from sei_core.config import PRESETS, TrainConfig, choose_preset, preset_settings
from sei_core.dataset import Prompts


def test_the_paper_preset_is_clip_rn50_from_openai_weights_at_224px():
    p = preset_settings("paper")
    assert p == dict(model="RN50", weights="openai", image_size=224, epochs=150, batch_size=128, lr=1e-3)
    cpu = preset_settings("cpu")
    assert cpu["model"] == "SEI-Tiny-RN" and cpu["weights"] is None and cpu["image_size"] <= 64
    assert {f.name for f in dataclasses.fields(TrainConfig)} >= set().union(*(q.settings for q in PRESETS.values()))
    preset_settings("paper")["model"] = "changed"  # a copy: the table stays as it is
    assert PRESETS["paper"].settings["model"] == "RN50"
    with pytest.raises(ValueError, match="unknown preset"):
        preset_settings("fast")


def test_a_cpu_gets_the_cpu_preset_and_is_told_why_and_how_to_override():
    c = choose_preset("cpu")
    assert c.preset == "cpu" and c.device == "cpu"
    msg = c.message()
    assert "--device cpu is a CPU" in msg and "--preset paper" in msg and "RN50" in msg and "SEI-Tiny-RN" in msg
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert choose_preset().preset == "cpu" and "found no GPU" in choose_preset().reason


def _parsed(*argv):
    argv = ["train", "data.csv", "--out", "runs/x", *argv]
    a = cli.build_parser().parse_args(argv)
    note = cli._apply_preset(a, argv)
    return a, note


def test_cli_fills_in_the_preset_and_never_overrides_a_typed_option():
    a, note = _parsed("--device", "cpu")
    assert (a.preset, a.model, a.image_size, a.weights) == ("cpu", "SEI-Tiny-RN", 32, None)
    assert "cpu" in note
    a, note = _parsed("--preset", "paper", "--epochs", "7")
    assert (a.model, a.weights, a.image_size, a.epochs) == ("RN50", "openai", 224, 7) and note is None
    a, _ = _parsed("--preset", "paper", "--model", "ViT-B-16")  # the preset's weights go with its model
    assert (a.model, a.weights) == ("ViT-B-16", None)
    a, _ = _parsed("--preset", "paper", "--model", "ViT-B-16", "--weights", "openai")
    assert a.weights == "openai"
    a, _ = _parsed("--preset", "paper", "--model", "RN50")
    assert a.weights == "openai"


def test_prompts_are_resolved_in_one_place():
    base = Prompts(template="A photo of {}.", aux_prompt="Something else.", per_class={"cat": "A cat."})
    p = TrainConfig(data="", per_class_prompts={"dog": "A dog."}).resolve_prompts(base)
    assert p.for_classes(["cat", "dog", "fox"]) == ["A cat.", "A dog.", "A photo of fox.", "Something else."]
    p = TrainConfig(data="", template="Skin: {}.", aux_prompt="Other.").resolve_prompts(base)
    assert p.for_classes(["fox"]) == ["Skin: fox.", "Other."]


def test_early_estimate_waits_for_the_first_batches_then_extrapolates():
    from sei_core.train import EarlyEstimate

    e = EarlyEstimate(batches_left=100, measure=3)
    assert [e.batch_done() for _ in range(3)] == [None, None, None]
    eta = e.batch_done()  # batches 2–4 measured
    assert eta is not None and eta >= 0 and e.done
    assert EarlyEstimate(batches_left=1).done  # nothing to extrapolate: the epoch's own time will tell


@pytest.mark.slow
def test_sei_train_without_options_says_what_it_chose_estimates_and_records_weights(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    # the machine's choice, with the schedule shortened so that the test takes seconds
    assert cli.main(["train", str(tiny_data), "--out", str(out), "--no-progress", "--epochs", "1",
                     "--batch-size", "4", "--single-run", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "'cpu' preset" in err and "--preset paper" in err
    assert "estimated training time" in err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model"], cfg["image_size"], cfg["weights"]) == ("SEI-Tiny-RN", 32, None)
    assert cfg["weights_loaded"] == {"source": "random"}
    st = json.loads((out / "status.json").read_text())
    assert st["weights_loaded"] == {"source": "random"} and st["state"] == "finished"
    log = (out / "log.txt").read_text()
    assert "estimated training time" in log and "random weights" in log


@pytest.mark.slow
def test_a_run_records_the_checkpoint_it_started_from(tiny_data, tmp_path, tiny_train):
    import hashlib

    from sei_core.models import build_model
    from sei_core.train import train

    ckpt = tmp_path / "tiny_rn.pt"
    torch.save(build_model("SEI-Tiny-RN", ["a {}", "b"], image_size=32).clip.state_dict(), ckpt)
    cfg = TrainConfig(data=str(tiny_data), **{**tiny_train, "epochs": 1}, runs=1, weights=str(ckpt))
    run = train(cfg, tmp_path / "run", progress_bar=False, log=lambda m: None)
    info = run.config()["weights_loaded"]
    assert info == {"source": "file", "tag": None, "file": str(ckpt),
                    "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]}
    assert run.status()["weights_loaded"] == info


def test_the_paper_preset_offline_fails_at_once_with_the_way_out(tiny_data, tmp_path, capsys):
    assert cli.main(["train", str(tiny_data), "--out", str(tmp_path / "run"), "--preset", "paper"]) == 1
    err = capsys.readouterr().err
    assert "RN50/openai.bin" in err and "--weights none" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing started


def test_device_choices_offer_auto_and_the_cpu_first():
    from sei_core.config import device_choices, pick_device

    choices = device_choices()
    assert choices[:2] == ["auto", "cpu"]
    for name in choices[1:]:  # every choice is one pick_device accepts on this machine
        assert pick_device(name).type == name.split(":")[0]
