"""One command-line rule for parameters: a key given twice on the command line is an error naming both;
options override the id's own ``?key=value``; a ``{...}`` or ``[...]`` value is JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import alignkit
from alignkit.align import Aligner
from alignkit.cli import app
from alignkit.cli._console import parse_param, parse_params

runner = CliRunner()


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 8))
    Y = X @ rng.standard_normal((8, 6)) + 0.3 * rng.standard_normal((60, 6))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, X)
    np.save(b, Y)
    return a, b, X, Y


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and "Traceback" not in result.output
    return err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-m", "mutual_knn", "--param", "k=7", "--k", "9"], ("--param k=7", "--k 9")),
        (["-m", "cka", "--clip-quantile", "0.5", "--param", "clip_quantile=0.9"], ("clip_quantile=0.9", "0.5")),
        (["-m", "cka", "--param", "debiased=0", "--param", "debiased=1"], ("debiased=0", "debiased=1")),
        (["-m", "cka", "--center", "--param", "center=false"], ("--param center=false", "--center")),
        (["-m", "cka", "--normalize", "-p", "normalize=1"], ("--param normalize=1", "--normalize")),
    ],
)
def test_a_key_given_twice_on_the_command_line_is_an_error(pair, args, named):
    a, b, _, _ = pair
    err = _error(runner.invoke(app, ["measure", str(a), str(b), *args]))
    assert "given twice on the command line" in err
    for text in named:
        assert text in err


def test_options_override_the_ids_own_parameters(pair):
    a, b, X, Y = pair
    expected = alignkit.measure("mutual_knn", X, Y, k=7)
    for option in (["--k", "7"], ["--param", "k=7"]):
        result = runner.invoke(app, ["measure", str(a), str(b), "-m", "mutual_knn?k=5", *option, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["score"] == expected
    result = runner.invoke(
        app, ["measure", str(a), str(b), "-m", "cka?clip_quantile=0.5", "--clip-quantile", "0.9", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"] == pytest.approx(alignkit.measure("cka", X, Y, clip_quantile=0.9))


def test_parse_param_reads_json_values():
    assert parse_param('loss_kwargs={"temperature": 0.1}') == ("loss_kwargs", {"temperature": 0.1})
    assert parse_param("sizes=[1, 2]") == ("sizes", [1, 2])
    assert parse_param("kernel=rbf_median") == ("kernel", "rbf_median")
    with pytest.raises(ValueError, match="loss_kwargs: a value starting with '\\{' is read as JSON"):
        parse_param("loss_kwargs={temperature: 0.1}")
    with pytest.raises(ValueError, match="given twice"):
        parse_params(["a=1", "a=1"])


def test_fit_head_takes_a_json_mapping(pair, tmp_path):
    a, b, _, _ = pair
    out = tmp_path / "head"
    args = ["fit", str(a), str(b), "-a", "head", "-p", "epochs=1", "-p", "head=linear", "-p", "loss=infonce"]
    result = runner.invoke(app, [*args, "-p", 'loss_kwargs={"init_temperature": 0.1}', "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert Aligner.load(out).get_params()["loss_kwargs"] == {"init_temperature": 0.1}
    err = _error(runner.invoke(app, [*args, "-p", "loss_kwargs={temperature: 0.1}", "-o", str(out)]))
    assert "not valid JSON" in err
    err = _error(runner.invoke(app, [*args, "-p", "epochs=2", "-o", str(out)]))
    assert "epochs is given twice" in err
