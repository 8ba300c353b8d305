"""A run config is validated before anything runs, through the same registries as the library.

Each case used to validate, then fail after minutes of embedding (or, for the booleans, run wrongly).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from alignkit.pipeline.config import ConfigError, load_config
from alignkit.pipeline.runner import plan_run
from pipeline_helpers import small_config


def _errors(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return str(info.value)


def _offline(tmp: Path) -> dict[str, Any]:
    """The demo's shape on bundled data: real encoder ids (never loaded here), declared layers."""
    return {
        "name": "v",
        "spaces": {
            "en": {"data": "sample:bible-en", "encoder": "offline:minilm-l6"},
            "es": {"data": "sample:bible-es", "encoder": "offline:e5-small", "layers": ["layer_12", "final"]},
        },
        "experiments": {
            "bible": {
                "a": "en",
                "b": "es",
                "fit": {
                    "layers": ["final", "final"],
                    "test": 100,
                    "sizes": [50],
                    "aligners": {"p": {"type": "procrustes"}},
                },
            }
        },
        "report": False,
        "output": str(tmp / "out"),
    }


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["experiments"]["e"]["atlas"].update(measures=["mutual_knn?k=0"]), "k must be an integer >= 1"),
        (
            lambda c: c["experiments"]["e"]["atlas"].update(measures=["cka?debiased=maybe"]),
            "debiased must be a boolean",
        ),
        (lambda c: c["experiments"]["e"]["atlas"].update(n_perm=True), "experiments.e.atlas.n_perm"),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"]["procrustes"].update(center="no"),
            "center must be a boolean",
        ),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"].update(h={"type": "head", "epochs": 0}),
            "epochs must be an integer >= 1",
        ),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"].update(h={"type": "head", "head": "nope"}),
            "unknown head 'nope'",
        ),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"].update(h={"type": "head", "loss": "triplet"}),
            "unknown loss",
        ),
        (lambda c: c["experiments"]["e"]["evaluate"]["retrieval"].update(ks=[0, 5]), "retrieval.ks.0"),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"].update(
                h={"type": "head", "head": "linear", "head_kwargs": {"rank": 3}}
            ),
            "head_kwargs for head 'linear': unknown parameter(s) 'rank'",
        ),
        (
            lambda c: c["experiments"]["e"]["fit"]["aligners"].update(
                h={"type": "head", "loss": "siglip", "loss_kwargs": {"reduction": "max"}}
            ),
            "loss_kwargs for loss 'siglip': reduction must be one of mean, sum_rows",
        ),
        (lambda c: c["experiments"]["e"]["fit"].update(select_measure="cka?form=fast"), "form must be one of"),
        (lambda c: c.update(report="yes"), "report"),
    ],
)
def test_static_errors(tmp_path, edit, expected):
    cfg = small_config(tmp_path)
    edit(cfg)
    assert expected in _errors(cfg)


def test_layers_and_encoder_options_checked_against_the_registry(tmp_path):
    cfg = _offline(tmp_path)
    load_config(cfg)  # valid as it stands
    bad = copy.deepcopy(cfg)
    bad["spaces"]["es"]["layers"] = ["layer_99"]
    assert "spaces.es.layers: ['layer_99'] are not layers of offline:e5-small" in _errors(bad)
    bad = copy.deepcopy(cfg)
    bad["spaces"]["en"]["options"] = {"max_lenght": 64}
    assert "spaces.en.options: encoder 'offline:minilm-l6' option: unknown parameter(s) 'max_lenght'" in _errors(bad)
    bad = copy.deepcopy(cfg)
    bad["spaces"]["en"]["options"] = {"max_length": "long"}
    assert "max_length must be an integer" in _errors(bad)
    bad = copy.deepcopy(cfg)
    bad["experiments"]["bible"]["fit"]["layers"] = ["final", "layer_3"]  # es keeps only layer_12 and final
    assert "experiments.bible.fit.layers: 'layer_3' is not a layer of space 'es'" in _errors(bad)


def test_data_dependent_checks_fail_in_the_dry_run(tmp_path):
    """Held-out classes and retrieval ks need the datasets (cheap), not the embeddings."""
    cfg = {
        "name": "z",
        "spaces": {
            "img": {"data": "sample:fashion-mnist", "encoder": "offline:mobilenet-v2", "layers": ["final"]},
            "cap": {"data": "captions:sample:fashion-mnist", "encoder": "offline:minilm-l6", "layers": ["final"]},
        },
        "experiments": {
            "fm": {
                "a": "img",
                "b": "cap",
                "fit": {
                    "layers": "last",
                    "test": 100,
                    "sizes": [50],
                    "aligners": {"p": {"type": "procrustes"}},
                    "heldout_classes": ["Sneaker", "Unicorn"],
                },
                "evaluate": {"retrieval": {"ks": [1, 1000]}},
            }
        },
        "report": False,
        "output": str(tmp_path / "out"),
    }
    with pytest.raises(ValueError, match="heldout_classes: unknown class 'Unicorn'") as err:
        plan_run(cfg)
    assert "retrieval.ks" not in str(err.value)  # one check per experiment stops at its first problem...
    cfg["experiments"]["fm2"] = {
        **cfg["experiments"]["fm"],
        "fit": {**cfg["experiments"]["fm"]["fit"], "sizes": [5000]},
    }
    with pytest.raises(ValueError, match=r"3 problem\(s\) with the data") as err:
        plan_run(cfg)  # ...but every experiment is checked and reported together
    assert "experiments.fm2.fit.sizes: [5000] exceed" in str(err.value)
    del cfg["experiments"]["fm2"]
    cfg["experiments"]["fm"]["fit"]["heldout_classes"] = ["Sneaker"]
    with pytest.raises(ValueError, match=r"retrieval.ks: \[1000\] exceed the 100 held-out items"):
        plan_run(cfg)
    cfg["experiments"]["fm"]["evaluate"]["retrieval"]["ks"] = [1, 10]
    assert plan_run(cfg).jobs  # and nothing was embedded to find out


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["spaces"]["en"].update(options={"batch_size": 0}), "batch_size must be an integer >= 1"),
        (lambda c: c["spaces"]["en"].update(options={"batch_size": -4}), "batch_size must be an integer >= 1"),
        (lambda c: c["spaces"]["en"].update(options={"max_length": 0}), "max_length must be an integer >= 1"),
        (lambda c: c["spaces"]["es"].update(options={"variant": "bogus"}), "variant must be one of original, enpt"),
        (
            lambda c: c["spaces"]["en"].update(encoder="hf:bert-base-uncased", options={"pooling": "bogus"}),
            "pooling must be one of mean, cls, last",
        ),
        (lambda c: c["spaces"]["en"].update(layers=["final", "final"]), "spaces.en.layers: layers repeat: ['final']"),
        (lambda c: c.update(device="tpu"), "device must be cpu, cuda, cuda:N"),
        (lambda c: c.update(device="cuda:x"), "device must be cpu, cuda, cuda:N"),
        (lambda c: c.update(device="CPU "), "device must be cpu, cuda, cuda:N"),
    ],
)
def test_encoder_options_layers_and_device_are_checked(tmp_path, edit, expected):
    cfg = _offline(tmp_path)
    edit(cfg)
    assert expected in _errors(cfg)


@pytest.mark.parametrize("device", [None, "cpu", "cuda", "cuda:1", "mps"])
def test_good_devices_pass(tmp_path, device):
    cfg = _offline(tmp_path)
    cfg["device"] = device
    assert load_config(cfg).device == device


def test_encoder_constraints_declared_at_registration():
    from alignkit.encoders.base import ENCODERS, check_encoder_options, register_named

    @register_named("test-constrained", "a test encoder", constraints={"width": {"low": 2}})
    def _make(width: int = 4) -> Any:  # pragma: no cover - never built
        raise AssertionError

    try:
        assert check_encoder_options("test-constrained", {"width": "3"}) == {"width": 3}
        with pytest.raises(ValueError, match="width must be an integer >= 2"):
            check_encoder_options("test-constrained", {"width": 1})
    finally:
        ENCODERS.remove("test-constrained")


def test_k_is_checked_against_the_items_each_job_scores(tmp_path):
    """A neighbourhood size no smaller than the items a job scores, or a csls_k above the held-out items,
    fails in the dry run, not after the embeddings."""
    cfg = small_config(tmp_path)  # 240 paired lines, 60 held out: 180 training pairs
    cfg["experiments"]["e"]["atlas"].update(measures=["mutual_knn?k=100"], sample=100)
    with pytest.raises(ValueError, match=r"atlas.measures: 'mutual_knn\?k=100' gives k=100, but the job scores only"):
        plan_run(cfg)
    cfg["experiments"]["e"]["atlas"].update(measures=["mutual_knn?k=99"])
    plan_run(cfg)  # k = n - 1 is fine
    cfg["experiments"]["e"]["atlas"].update(measures=["retrieval_alignment?k=101", "cknna?k=100"])
    with pytest.raises(ValueError, match=r"2 problem\(s\)") as err:
        plan_run(cfg)
    assert "retrieval_alignment needs k <= n" in str(err.value) and "cknna needs k < n" in str(err.value)
    cfg["experiments"]["e"]["atlas"].update(measures=["retrieval_alignment?k=100", "cka"], sample=None)
    plan_run(cfg)

    cfg["experiments"]["e"]["fit"]["select_k"] = 180
    with pytest.raises(ValueError, match="fit: select_k gives k=180, but the job scores only 180 training pairs"):
        plan_run(cfg)
    cfg["experiments"]["e"]["fit"]["select_k"] = "sqrt"
    cfg["experiments"]["e"]["fit"]["select_measure"] = "mutual_knn?k=500"  # select_k wins over the id
    plan_run(cfg)
    cfg["experiments"]["e"]["fit"].update(select_k=5000, select_measure="cka")  # cka takes no k
    plan_run(cfg)

    cfg["experiments"]["e"]["evaluate"]["retrieval"]["csls_k"] = 61
    with pytest.raises(ValueError, match=r"retrieval\.csls_k: 61 exceeds the 60 held-out items"):
        plan_run(cfg)
    cfg["experiments"]["e"]["evaluate"]["retrieval"]["scoring"] = ["nn"]  # csls_k unused
    plan_run(cfg)
