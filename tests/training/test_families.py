"""Held-out families (training/synth/families.py): test data inside a family, training data
outside every held-out one."""

from __future__ import annotations

import pytest

from training.synth import families
from training.synth.spec import meta_from_spec, sample_spec


@pytest.mark.parametrize("name", families.names())
def test_family_spec_is_a_member_and_deterministic(name):
    for k in range(25):
        spec = families.family_spec(sample_spec(101, k), name)
        assert name in families.families_of(spec)
        assert spec == families.family_spec(sample_spec(101, k), name)
        assert meta_from_spec(spec)["family"] == name


def test_family_spec_leaves_the_input_spec_alone():
    spec = sample_spec(3, 4)
    before = repr(spec)
    families.family_spec(spec, "busy_print")
    assert repr(spec) == before


def test_every_family_has_a_role_and_the_roles_are_disjoint():
    test, val = set(families.names("test")), set(families.names("validation"))
    assert test and val and not test & val
    assert test | val == set(families.names())


def test_trainable_specs_belong_to_no_held_out_family():
    kept = [s for s in (sample_spec(1, k) for k in range(300)) if families.trainable(s)]
    assert len(kept) > 20
    for s in kept:
        assert s["background"]["kind"] in ("sweep", "wall")
        assert s["form"]["kind"] != "figure" and s["garment"] != "coat"
        assert s["fabric"]["pattern"] not in ("floral", "camo", "print", "plaid", "checks")
        assert not set(s["difficulty"]) & {"white_on_white", "black_on_black", "similar_colour"}


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        families.family_spec(sample_spec(1, 1), "moon")


def test_synth_cli_keeps_only_trainable_specs_and_counts_them():
    import argparse

    from training.synth.cli import _specs

    args = argparse.Namespace(
        start=0, sequences=12, seed=103, focus=None, family=None, trainable=True
    )
    specs = list(_specs(args, ("ring", "turntable")))
    assert len(specs) == 12 and all(families.trainable(s) for s in specs)
    assert [s["index"] for s in specs] == sorted(s["index"] for s in specs)
    args.trainable, args.family = False, "coat"
    assert all(s["garment"] == "coat" for s in _specs(args, ("ring",)))


def test_validation_data_never_falls_inside_a_test_family():
    import argparse

    from training.synth.cli import _specs

    test = set(families.names("test"))
    for name in families.names("validation"):
        args = argparse.Namespace(
            start=0, sequences=10, seed=102, focus=None, family=name, trainable=False
        )
        specs = list(_specs(args, ("ring", "turntable")))
        assert len(specs) == 10
        assert all(not set(families.families_of(s)) & test for s in specs)
