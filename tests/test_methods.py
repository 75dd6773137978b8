"""The methods registry (sei_core.methods): names, rules, variants, order."""

import pytest

from sei_core import methods
from sei_core.methods import (DEFAULT_METHOD, DEFAULT_RULE, METHODS, OUT_OF_SAMPLE_METHODS, PAPER_METHOD, RULES,
                              describe_methods, display_name, method_names, method_order, split_variant,
                              threshold_text, variant)


def test_default_and_paper_methods_are_registered():
    assert DEFAULT_METHOD in METHODS and PAPER_METHOD == "sei" and DEFAULT_RULE in RULES
    assert methods.COUNT_METHOD in METHODS and methods.COUNT_ESTIMATOR in ("bbe", "mixture", "cleanlab")


def test_variants_round_trip():
    assert variant("sei") == "sei" and variant("sei", "count") == "sei@count"
    assert split_variant("sei@count") == ("sei", "count") and split_variant("aum") == ("aum", "own")
    with pytest.raises(ValueError, match="rule"):
        variant("sei", "magic")


def test_method_names_and_order():
    names = method_names(("own", "count"))
    assert names[: len(METHODS)] == list(METHODS)
    assert {f"{m}@count" for m in METHODS} <= set(names) and names[-1] in OUT_OF_SAMPLE_METHODS
    assert method_names() == list(METHODS) + list(OUT_OF_SAMPLE_METHODS)
    assert method_order(["zzz", "aum@count", "confident_learning", "sei", "aum", "sei@count"]) == [
        "sei", "sei@count", "aum", "aum@count", "confident_learning", "zzz"]


def test_descriptions_and_rule_texts():
    d = describe_methods(("own", "count"))
    assert set(d) == set(method_names(("own", "count")))
    assert "k̂ lowest" in d["sei@count"] and "auxiliary" in d["sei"]
    assert threshold_text("aum_p99") == METHODS["aum_p99"].threshold_rule
    assert threshold_text("sei", "count") == threshold_text("sei@count") == RULES["count"]
    assert threshold_text("confident_learning").startswith("cleanlab")
    assert display_name("sei") == "SEI" and display_name("se_last") == "se_last"
