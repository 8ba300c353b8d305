"""One registry contract: typed parameters, one precedence rule, clear errors, plugins registered the same way.

Each fact here was a defect before the registry rework (the comment says what happened then).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alignkit
from alignkit import metrics
from alignkit.align import ALIGNERS, HEADS, LOSSES, HeadAligner, Procrustes, build_loss, make_aligner
from alignkit.data.spec import DATASETS
from alignkit.encoders.base import ENCODERS, check_encoder_options
from alignkit.metrics.prepared import GenericMeasure, PreparedMeasure, prepared_measure
from alignkit.registry import Entry, Param, ParamSchema, Registry, Spec, parse_id


@pytest.fixture
def pair(rng):
    X = rng.standard_normal((80, 6))
    return X, X @ rng.standard_normal((6, 5)) + 0.3 * rng.standard_normal((80, 5))


# --------------------------------------------------------------------------------------- precedence


def test_keyword_overrides_the_id_everywhere(pair):
    """Before: measure() used the keyword, the CLI used the id's value."""
    X, Y = pair
    at7 = metrics.mutual_knn(X, Y, k=7)
    assert alignkit.measure("mutual_knn?k=5", X, Y, k=7) == at7
    assert alignkit.permutation_test("mutual_knn?k=5", X, Y, n_perm=3, k=7).score == at7
    assert alignkit.bootstrap_ci("mutual_knn?k=5", X, Y, n_boot=2, k=7).score == at7
    assert alignkit.atlas({"a": X}, {"b": Y}, "mutual_knn?k=5", k=7).scores[0, 0] == at7
    assert metrics.measure_spec("mutual_knn?k=5", k=7).id == "mutual_knn?k=7"
    assert alignkit.atlas({"a": X}, {"b": Y}, "mutual_knn?k=5", k=7).measure == "mutual_knn?k=7"
    assert alignkit.permutation_test("mutual_knn?k=5", X, Y, n_perm=2, k=7).measure == "mutual_knn?k=7"
    # select_layers' own default k (the rice rule) does not override the id's k
    assert alignkit.select_layers({"a": X}, {"b": Y}, measure="mutual_knn?k=5")[2].measure == "mutual_knn?k=5"


def test_cli_uses_the_same_precedence(pair, tmp_path):
    from typer.testing import CliRunner

    from alignkit.cli import app

    X, Y = pair
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    res = CliRunner().invoke(
        app,
        ["measure", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "mutual_knn?k=5", "-p", "k=7", "--json"],
    )
    assert res.exit_code == 0, res.output
    import json

    row = json.loads(res.output)[0] if isinstance(json.loads(res.output), list) else json.loads(res.output)
    rows = row.get("rows", [row]) if isinstance(row, dict) else row
    assert rows[0]["score"] == pytest.approx(metrics.mutual_knn(X, Y, k=7))


# --------------------------------------------------------------------------------------- typed params


@pytest.mark.parametrize("bad", ["cka?debiased=no", "cka?debiased=maybe", "mutual_knn?k=0", "mutual_knn?k=2.5"])
def test_bad_values_in_ids_are_errors(pair, bad):
    """Before: any string was True for a bool, and k=0 failed only deep inside."""
    X, Y = pair
    with pytest.raises(ValueError, match="must be"):
        alignkit.measure(bad, X, Y)
    with pytest.raises(ValueError, match="must be"):
        alignkit.permutation_test(bad, X, Y, n_perm=2)


def test_bool_keywords_are_parsed_not_truthy(pair):
    X, Y = pair
    biased = metrics.cka(X, Y, debiased=False)
    assert metrics.cka(X, Y, debiased="false") == biased
    assert alignkit.measure("cka", X, Y, debiased="0") == biased
    assert alignkit.measure("cka?debiased=false", X, Y) == biased
    with pytest.raises(ValueError, match="debiased must be a boolean"):
        metrics.cka(X, Y, debiased="maybe")
    with pytest.raises(ValueError, match="StreamingCKA: debiased must be a boolean"):
        alignkit.StreamingCKA(debiased="maybe")
    with pytest.raises(ValueError, match="n_perm must be a positive integer; got True"):
        alignkit.permutation_test("cka", X, Y, n_perm=True)


def test_unknown_parameter_is_the_same_clear_error_everywhere(pair):
    """Before: TypeError from measure(), ValueError from permutation_test()."""
    X, Y = pair
    for call in (
        lambda: alignkit.measure("cka", X, Y, kernal="linear"),
        lambda: alignkit.permutation_test("cka", X, Y, n_perm=2, kernal="linear"),
        lambda: alignkit.bootstrap_ci("cka", X, Y, n_boot=2, kernal="linear"),
        lambda: alignkit.atlas([X], [Y], "cka", kernal="linear"),
    ):
        with pytest.raises(
            ValueError, match=r"measure 'cka': unknown parameter\(s\) 'kernal' \(did you mean 'kernel'\?\)"
        ):
            call()


def test_atlas_metric_keyword_is_the_distance(pair):
    """Before: TypeError 'got multiple values for argument metric'."""
    X, Y = pair
    res = alignkit.atlas({"a": X}, {"b": Y}, "mutual_knn", metric="ip", k=5)
    assert res.scores[0, 0] == metrics.mutual_knn(X, Y, k=5, metric="ip")
    assert res.measure == "mutual_knn?k=5&metric=ip"  # results are labelled with the canonical id used


@pytest.mark.parametrize(
    ("ref", "error", "match"),
    [
        (None, TypeError, "must be a string"),
        ("cka?&", ValueError, "bad parameter ''"),
        ("cka?", ValueError, "ends in '\\?'"),
        ("?k=3", ValueError, "has no name"),
        ("cka?k=1&k=2", ValueError, "given twice"),
        ("cka?debiased", ValueError, "bad parameter 'debiased'"),
    ],
)
def test_odd_ids_give_clear_errors(pair, ref, error, match):
    X, Y = pair
    with pytest.raises(error, match=match):
        alignkit.measure(ref, X, Y)


def test_rsa_hint_names_its_own_parameter(rng):
    X = np.ones((10, 4))
    X[1:] += rng.standard_normal((9, 4))
    with pytest.raises(ValueError, match="rdm_metric='euclidean'"):
        metrics.rsa(X, rng.standard_normal((10, 3)))


def test_spec_is_canonical():
    a = metrics.measure_spec("cka?debiased=0&kernel=linear")
    b = metrics.measure_spec("cka?kernel=linear&debiased=false")
    assert a == b and hash(a) == hash(b) and a.id == "cka?debiased=false&kernel=linear"
    assert a.resolved["form"] == "auto" and a.kwargs == {"debiased": False, "kernel": "linear"}
    assert metrics.measure_spec(a, debiased=True).id == "cka?debiased=true&kernel=linear"


# -------------------------------------------------------------------------------------- the contract


def test_param_typing_rules():
    assert Param("b", ("bool",)).check("TRUE") is True
    assert Param("b", ("bool",)).check(0) is False
    with pytest.raises(TypeError):
        Param("b", ("bool",)).check(2)
    with pytest.raises(TypeError):
        Param("n", ("int",)).check(True)
    assert Param("x", ("int", "float")).check("3") == 3 and isinstance(Param("x", ("int", "float")).check(3), int)
    assert Param("x", ("int", "float")).check(0.5) == 0.5
    with pytest.raises(ValueError, match="finite"):
        Param("x", ("float",)).check(float("nan"))
    with pytest.raises(ValueError, match="> 0"):
        Param("x", ("float",), low=0.0, low_open=True).check("0")
    assert Param("x", ("float",), nullable=True).check("none") is None
    assert Param("s", ("str",), choices=("a", "b")).check("a") == "a"
    with pytest.raises(ValueError, match="one of a, b"):
        Param("s", ("str",), choices=("a", "b")).check("c")


def test_registry_duplicates_did_you_mean_describe_and_remove():
    reg: Registry[Entry[int]] = Registry("widget")
    reg.add(Entry("alpha", 1, "first"))
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        reg.add(Entry("alpha", 2))
    reg.add(Entry("alpha", 2), replace=True)
    assert reg.get("alpha").obj == 2
    with pytest.raises(ValueError, match=r"unknown widget 'alpah'\. Did you mean 'alpha'"):
        reg.get("alpah")
    assert reg.describe("alpha")["name"] == "alpha" and [d["name"] for d in reg.describe()] == ["alpha"]
    reg.remove("alpha")
    assert "alpha" not in reg and len(reg) == 0
    assert parse_id("x?a=1&b= two ") == ("x", {"a": "1", "b": "two"})


@pytest.mark.parametrize(
    ("registry", "names"),
    [
        (metrics.MEASURES, {"mutual_knn", "cka", "procrustes", "cknna"}),
        (ALIGNERS, {"procrustes", "vecmap", "cca", "ridge", "asif", "head"}),
        (HEADS, {"linear", "mlp", "star", "reslowrank"}),
        (LOSSES, {"infonce", "siglip", "gram", "mv_infonce", "mv_dhel", "structure", "uniformity"}),
        (ENCODERS, {"offline:minilm-l6", "offline:e5-small", "hf", "timm", "zoo"}),
        (DATASETS, {"sample", "lines", "table", "idx", "captions", "prompts"}),
    ],
)
def test_every_family_uses_the_contract(registry, names):
    assert isinstance(registry, Registry) and names <= set(registry.names())
    for entry in registry:
        d = entry.as_dict()
        assert isinstance(d, dict) and d
        assert isinstance(entry.schema, ParamSchema)
    with pytest.raises(ValueError, match="Did you mean"):
        registry.get(sorted(names)[0] + "x")


def test_job_kinds_are_a_registry():
    from alignkit.pipeline.jobs import JOB_KINDS

    assert JOB_KINDS.names() == ["atlas", "diagnose", "embed", "evaluate", "fit", "select"]


# ----------------------------------------------------------------------------------------- plugins


def test_a_measure_with_a_fast_null_path_is_one_registration(pair):
    """The worked example of docs/architecture.md: a plugin measure declares its prepared form."""

    class _Centroid(PreparedMeasure):
        name = "centroid_cosine"

        def prepare(self, x: torch.Tensor) -> torch.Tensor:
            return x.double() - x.double().mean(0)

        def permute(self, p: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
            return p[perm]

        def score(self, pa: torch.Tensor, pb: torch.Tensor) -> float:
            return float(torch.nn.functional.cosine_similarity(pa.norm(dim=1), pb.norm(dim=1), dim=0))

    calls = []

    def prepare(info, params, **_):
        calls.append(params)
        return _Centroid()

    @metrics.register(
        "centroid_cosine",
        family="plugin",
        range=(-1.0, 1.0),
        cost="O(n·d)",
        description="cosine of the two spaces' distances to their centroids",
        prepare=prepare,
    )
    def centroid_cosine(X, Y):
        x, y = torch.as_tensor(np.asarray(X)).double(), torch.as_tensor(np.asarray(Y)).double()
        return _Centroid().score(_Centroid().prepare(x), _Centroid().prepare(y))

    try:
        X, Y = pair
        direct = alignkit.measure("centroid_cosine", X, Y)
        res = alignkit.permutation_test("centroid_cosine", X, Y, n_perm=5)
        assert res.score == pytest.approx(direct) and calls  # the declared fast path was used
        assert not isinstance(prepared_measure("centroid_cosine"), GenericMeasure)
        assert alignkit.atlas([X], [Y], "centroid_cosine").scores[0, 0] == pytest.approx(direct)
        with pytest.raises(ValueError, match="already registered"):
            metrics.register("centroid_cosine", family="x", range=(0, 1), cost="", description="")(centroid_cosine)
    finally:
        metrics.MEASURES.remove("centroid_cosine")


def test_a_user_loss_and_head_register_the_same_way(rng):
    from torch import nn

    from alignkit.align import register_head, register_loss

    def cosine_pull(a, b, margin: float = 0.0):
        """Pull positive pairs together: mean (1 − cos) beyond a margin."""
        return torch.relu(1 - torch.nn.functional.cosine_similarity(a, b) - margin).mean()

    class TinyHead(nn.Module):
        """A bias-free linear map."""

        def __init__(self, d_in: int, d_out: int, gain: float = 1.0) -> None:
            super().__init__()
            self.lin = nn.Linear(d_in, d_out, bias=False)
            with torch.no_grad():
                self.lin.weight.mul_(gain)

        def forward(self, x):
            return self.lin(x)

    register_loss("cosine_pull", cosine_pull, form="pair", constraints={"margin": {"low": 0.0}})
    register_head("tiny", TinyHead, constraints={"gain": {"low": 0.0, "low_open": True}})
    try:
        X = rng.standard_normal((64, 5))
        Y = X @ rng.standard_normal((5, 4))
        est = HeadAligner(head="tiny", loss="cosine_pull", d_out=3, epochs=2, progress=False).fit(X, Y)
        assert est.transform_x(X).shape == (64, 3)
        with pytest.raises(ValueError, match="loss 'cosine_pull': margin must be a number >= 0"):
            build_loss("cosine_pull", margin=-1)
        with pytest.raises(ValueError, match="HeadAligner: head: unknown head 'tinyy'"):
            HeadAligner(head="tinyy").fit(X, Y)
    finally:
        LOSSES.remove("cosine_pull")
        HEADS.remove("tiny")


def test_a_user_aligner_registers_and_round_trips(rng, tmp_path):
    from alignkit.align import Aligner, register_aligner

    @register_aligner("mean_shift", constraints={"shrink": {"low": 0.0, "high": 1.0}})
    class MeanShift(Aligner):
        """Translate X by the difference of the means (a toy aligner for the registry test)."""

        _arrays = ("shift_",)

        def __init__(self, shrink: float = 0.0) -> None:
            self.shrink = shrink

        def _fit(self, x, y, *, input_dtype):
            self.shift_ = ((y.mean(0) - x.mean(0)) * (1 - self._hp["shrink"])).cpu().numpy()

        def _transform_x(self, x):
            return x + torch.as_tensor(self.shift_, dtype=x.dtype)

        def _transform_y(self, y):
            return y

    try:
        X = rng.standard_normal((30, 3))
        est = make_aligner("mean_shift", shrink="0.5").fit(X, X + 2.0)
        assert est.get_params() == {"shrink": 0.5}
        again = Aligner.load(est.save(tmp_path / "m"))
        np.testing.assert_allclose(again.transform_x(X), est.transform_x(X))
        with pytest.raises(ValueError, match=r"MeanShift: shrink must be a number >= 0\.0 and <= 1\.0"):
            MeanShift(shrink=2).fit(X, X)
    finally:
        ALIGNERS.remove("mean_shift")


def test_make_aligner_types_cli_strings():
    est = make_aligner("procrustes", center="true", solver="svd")
    assert isinstance(est, Procrustes) and est.center is True
    with pytest.raises(ValueError, match="aligner 'procrustes': center must be a boolean"):
        make_aligner("procrustes", center="no")


def test_encoder_options_are_checked_without_loading_the_model():
    assert check_encoder_options("offline:minilm-l6", {"max_length": "64"}) == {"max_length": 64}
    with pytest.raises(ValueError, match=r"unknown parameter.*'prefx' \(did you mean 'prefix'\?\)"):
        check_encoder_options("offline:minilm-l6", {"prefx": "q"})
    assert ENCODERS.get("offline:e5-small").layer_names()[-1] == "final"


def test_spec_kind_is_checked():
    with pytest.raises(ValueError, match="expected a measure spec"):
        metrics.measure_spec(Spec("aligner", "procrustes"))
