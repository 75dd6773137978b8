import numpy as np

from sei_core.reliability import class_reliability, reliability_note, what_would_help


def test_agreement_per_class_and_the_unreliable_ones():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    suggested = np.array([0, 0, 0, 1, 0, 0, 1, -1])
    flagged = np.array([False, False, False, True, True, True, False, False])
    rel = class_reliability(labels, suggested, flagged, ["nevus", "vascular lesion", "dermatofibroma"])
    assert [r.images for r in rel] == [4, 3, 1]
    assert [r.flagged for r in rel] == [1, 2, 0]
    np.testing.assert_allclose([r.agreement for r in rel], [0.75, 1 / 3, 0.0])
    assert [r.reliable for r in rel] == [True, False, False]
    # unscored samples do not count; a class without scored images has nothing to flag
    rel = class_reliability(labels, suggested, flagged, ["a", "b", "c"], scored=labels != 2)
    assert rel[2].images == 0 and np.isnan(rel[2].agreement) and rel[2].reliable
    assert class_reliability(labels, suggested, flagged, ["a", "b", "c"], min_agreement=0.3)[1].reliable


def test_what_would_help_follows_the_run_settings():
    weak = class_reliability(np.array([1] * 30), np.zeros(30, int), np.ones(30, bool), ["nevus", "vasc"])
    cpu = {"weights": None, "image_size": 32, "epochs": 20, "weights_loaded": {"source": "random"}}
    helps = what_would_help(cpu, [r for r in weak if not r.reliable])
    assert helps[0] == "more images of vasc" and any("pretrained" in h for h in helps)
    assert any("GPU" in h for h in helps) and any("epochs (this run trained 20)" in h for h in helps)
    paper = {"weights": "openai", "image_size": 224, "epochs": 150, "weights_loaded": {"source": "pretrained"}}
    assert what_would_help(paper, []) == []
    note = reliability_note(weak, cpu)
    assert "**vasc** (0% of 30)" in note and "unreliable" in note and "more epochs" in note
    assert "nevus" not in note
    assert reliability_note([r for r in weak if r.reliable], cpu) is None


def test_the_note_calls_a_class_by_its_name_with_its_code_beside_it():
    """HAM10000's codes (``df``, ``vasc``) are named as the run's data set names them: those it
    was trained with, overridden by names saved since (prompts.json, the Data page)."""
    rel = class_reliability(np.array([1] * 30 + [2] * 20), np.zeros(50, int), np.ones(50, bool), ["nv", "vasc", "df"])
    cfg = {"weights": None, "epochs": 20, "class_names": {"vasc": "vascular lesion", "nv": "melanocytic nevus"}}
    note = reliability_note(rel, cfg, names={"df": "dermatofibroma"})
    assert "**vascular lesion** (vasc: 0% of 30)" in note and "**dermatofibroma** (df: 0% of 20)" in note
    assert "more images of vascular lesion, dermatofibroma" in note
    assert "**vasc**" not in note and "nevus" not in note
    assert "**df** (0% of 20)" in reliability_note(rel, {"epochs": 20})  # no names: the codes, as before
