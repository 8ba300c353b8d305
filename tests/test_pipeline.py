"""The declarative run: config validation, the plan, execution, caching, failure isolation, the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from alignkit.align import Procrustes, Ridge
from alignkit.cli import app
from alignkit.evaluate import retrieval
from alignkit.pipeline import ConfigError, RunFailed, bundled_config, load_config, plan_run, run
from alignkit.pipeline.jobs import Split, training_rows
from alignkit.pipeline.runner import TIMING_COLUMNS
from pipeline_helpers import HashEncoder, small_config

runner = CliRunner()


def _errors(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- config
def test_bundled_demo_config_validates() -> None:
    cfg = load_config(bundled_config("demo"))
    assert set(cfg.experiments) == {"bible", "fashion"}
    assert cfg.experiments["bible"].fit.aligners["cca"].params == {"reg": 0.001}


def test_config_errors_name_the_key_and_the_allowed_values(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    bad = copy.deepcopy(cfg)
    bad["experiments"]["e"]["fit"]["layers"] = "middle"
    bad["experiments"]["e"]["fitt"] = {}
    bad["spaces"]["x"]["encoder"] = "offline:minilm"
    bad["experiments"]["e"]["atlas"]["measures"] = ["mutal_knn"]
    bad["experiments"]["e"]["fit"]["aligners"]["ridge"]["alpah"] = 1.0
    bad["experiments"]["e"]["fit"]["sizes"] = [1]
    msg = _errors(bad)
    assert "experiments.e.fit.layers: Input should be 'best' or 'last'" in msg
    assert "experiments.e.fitt: unknown key 'fitt'; allowed: a, b, views, atlas, fit, evaluate" in msg
    assert "spaces.x.encoder: unknown encoder id 'offline:minilm'" in msg and "offline:minilm-l6" in msg
    assert "Did you mean 'mutual_knn'" in msg
    assert "aligner 'ridge': unknown parameter(s) 'alpah' (did you mean 'alpha'?); accepted:" in msg and "alpha" in msg
    assert "experiments.e.fit.sizes: every size must be at least 2 pairs" in msg


def test_config_cross_references_are_checked(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["experiments"]["e"]["b"] = "z"
    assert "experiments.e.b: unknown space 'z'" in _errors(cfg)
    cfg = small_config(tmp_path)
    cfg["experiments"]["e"]["evaluate"]["zero_shot"] = {"prompts": "x"}
    assert "must use space 'y''s encoder" in _errors(cfg)
    cfg = small_config(tmp_path)
    del cfg["experiments"]["e"]["fit"]
    assert "'evaluate' needs 'fit'" in _errors(cfg)
    cfg = small_config(tmp_path)
    cfg["name"] = "../escape"
    assert "name:" in _errors(cfg)


def test_config_files_bad_yaml_and_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("   \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    # YAML is read with safe_load: no Python object construction
    (tmp_path / "obj.yaml").write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "obj.yaml")


def test_sizes_larger_than_the_training_pool_fail_at_plan_time(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["experiments"]["e"]["fit"]["sizes"] = [40, 500]
    with pytest.raises(ValueError, match=r"sizes: \[500\] exceed the 180 training pairs left after holding out 60"):
        plan_run(cfg)


# ---------------------------------------------------------------------------------------------- plan
def test_plan_jobs_dependencies_and_keys(tmp_path: Path) -> None:
    plan = plan_run(small_config(tmp_path))
    kinds = [j.kind for j in plan.jobs]
    assert {k: kinds.count(k) for k in set(kinds)} == {"embed": 2, "atlas": 2, "select": 1, "fit": 8, "evaluate": 8}
    jobs = plan.by_id()
    position = {j.id: i for i, j in enumerate(plan.jobs)}
    for job in plan.jobs:  # topological order
        assert all(position[d] < position[job.id] for d in job.deps)
    fit = jobs["fit:e:ridge:n120:s1"]
    assert set(fit.deps) == {"embed:x", "embed:y", "select:e"}
    assert set(jobs["evaluate:e:ridge:n120:s1"].deps) == {"fit:e:ridge:n120:s1", "embed:x", "embed:y"}
    assert len({j.key for j in plan.jobs}) == len(plan.jobs)
    assert set(plan.status().values()) == {"todo"}


def test_a_changed_input_changes_exactly_the_keys_downstream(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    before = {j.id: j.key for j in plan_run(cfg).jobs}
    cfg["experiments"]["e"]["fit"]["aligners"]["ridge"]["alpha"] = 3.0
    after = {j.id: j.key for j in plan_run(cfg).jobs}
    changed = {jid for jid in before if before[jid] != after[jid]}
    assert changed == {jid for jid in before if ":ridge:" in jid}
    cfg["experiments"]["e"]["atlas"]["n_perm"] = 19
    again = {j.id: j.key for j in plan_run(cfg).jobs}
    assert {jid for jid in after if after[jid] != again[jid]} == {"atlas:e:mutual_knn?k=5", "atlas:e:cka"}


def test_spaces_with_identical_inputs_share_one_embed_job(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["spaces"]["x2"] = dict(cfg["spaces"]["x"])
    cfg["experiments"]["f"] = {"a": "x2", "b": "y", "atlas": {"measures": ["cka"], "n_perm": 0}}
    plan = plan_run(cfg)
    assert [j.id for j in plan.jobs if j.kind == "embed"] == ["embed:x", "embed:y"]
    assert set(plan.by_id()["atlas:f:cka"].deps) == {"embed:x", "embed:y"}


# ---------------------------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = small_config(tmp)
    calls = HashEncoder.calls
    result = run(cfg)
    return tmp, cfg, result, HashEncoder.calls - calls


def test_run_writes_tidy_tables_and_run_json(finished) -> None:
    _, _, result, _ = finished
    t = {name: pd.read_parquet(path) for name, path in result.tables.items()}
    assert set(t) == {"atlas", "atlas_summary", "layer_selection", "fits", "evaluations"}
    assert len(t["atlas"]) == 2 * 3 * 2  # two measures x 3 layers of x x 2 kept layers of y
    assert set(t["atlas"]["layer_b"]) == {"hidden", "output"}
    cka = t["atlas"][t["atlas"]["measure"] == "cka"]
    order = cka.drop_duplicates("layer_a").sort_values("index_a")["layer_a"].tolist()
    assert order == ["input", "hidden", "output"]  # the encoder's order, not alphabetical
    assert t["atlas"]["p_value_fwer"].between(0, 1).all() and (t["atlas"]["n_perm"] == 9).all()
    assert len(t["fits"]) == 8 and set(t["fits"]["n_train"]) == {40, 120}
    chosen = t["layer_selection"][t["layer_selection"]["chosen"]]
    assert len(chosen) == 1
    assert (t["fits"]["layer_a"] == chosen["layer_a"].iloc[0]).all()
    ev = t["evaluations"]
    assert set(ev["direction"]) == {"x->y", "y->x"} and set(ev["scoring"]) == {"nn", "csls"}
    assert ev.loc[ev["metric"].str.startswith("R@"), "value"].between(0, 1).all()
    meta = __import__("json").loads((result.run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["name"] == "t"
    assert {j["status"] for j in meta["jobs"]} == {"done"} and "torch" in meta["versions"]


def test_pipeline_numbers_equal_direct_calls(finished) -> None:
    """The run's retrieval numbers equal fitting and evaluating by hand on the same rows and layers."""
    tmp, _, result, _ = finished
    fits = pd.read_parquet(result.tables["fits"])
    ev = pd.read_parquet(result.tables["evaluations"])
    la, lb = fits["layer_a"].iloc[0], fits["layer_b"].iloc[0]
    items = (tmp / "items.txt").read_text().splitlines()
    X = HashEncoder("alpha").encode(items, [la])[la].numpy()
    Y = HashEncoder("beta").encode(items, [lb])[lb].numpy()
    n, n_test = len(items), 60
    perm = np.random.default_rng([3, 7919]).permutation(n)  # the documented split of seed 3
    test, pool = np.sort(perm[:n_test]), perm[n_test:]
    split = Split(np.arange(n), np.arange(n), test, pool, None, None)
    for method, model in (("procrustes", Procrustes(center=True, normalize=True)), ("ridge", Ridge())):
        train = training_rows(split, 120, 1, 3, "e")
        model.fit(X[train], Y[train])
        rows = retrieval(model.transform_x(X[test]), model.transform_y(Y[test]), ks=(1, 5), scoring="csls", csls_k=5)
        want = {(r["direction"], r["metric"]): r["value"] for r in rows}
        got = ev[(ev.method == method) & (ev.n_train == 120) & (ev.seed == 1) & (ev.scoring == "csls")]
        names = {"q_to_g": "x->y", "g_to_q": "y->x"}
        assert len(got) == len(want)
        for (direction, metric), value in want.items():
            match = got[(got.direction == names[direction]) & (got.metric == metric)]["value"]
            assert match.iloc[0] == pytest.approx(value, abs=1e-12)


def test_training_sizes_are_nested_and_never_touch_the_test_items() -> None:
    perm = np.random.default_rng(0).permutation(100)
    split = Split(np.arange(100), np.arange(100), np.sort(perm[:20]), perm[20:], None, None)
    small, large = training_rows(split, 10, 4, 0, "e"), training_rows(split, 50, 4, 0, "e")
    assert set(small) <= set(large) and not set(large) & set(split.test)
    assert not np.array_equal(training_rows(split, 50, 5, 0, "e"), large)  # another seed, another draw
    with pytest.raises(ValueError, match="exceeds the 80 training pairs"):
        training_rows(split, 81, 0, 0, "e")


def test_rerun_is_a_cache_hit_with_no_encoder_call(finished) -> None:
    _, cfg, first, encoder_calls = finished
    assert encoder_calls > 0
    calls = HashEncoder.calls
    again = run(cfg)
    assert HashEncoder.calls == calls  # nothing re-embedded, nothing recomputed
    assert set(again.outcome.status.values()) == {"cached"}
    meta = __import__("json").loads((again.run_dir / "run.json").read_text())
    assert {j["status"] for j in meta["jobs"]} == {"cached"}
    assert all(j["seconds"] > 0 for j in meta["jobs"] if j["kind"] == "atlas")  # the cost when they ran
    for name, path in first.tables.items():
        a, b = pd.read_parquet(path), pd.read_parquet(again.tables[name])
        pd.testing.assert_frame_equal(a, b)


def test_changing_one_aligner_reruns_only_its_jobs(finished, tmp_path: Path) -> None:
    _, cfg, _, _ = finished
    cfg = copy.deepcopy(cfg)
    cfg["experiments"]["e"]["fit"]["aligners"]["ridge"]["alpha"] = 10.0
    result = run(cfg)
    done = {jid for jid, st in result.outcome.status.items() if st == "done"}
    assert done == {j.id for j in result.plan.jobs if ":ridge:" in j.id}


def test_a_failing_job_skips_its_dependents_and_a_rerun_resumes(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["experiments"]["e"]["fit"]["aligners"]["cca"] = {"type": "cca", "n_components": 500}  # > d: fails
    with pytest.raises(RunFailed) as info:
        run(cfg)
    out = info.value.outcome
    assert {jid for jid, st in out.status.items() if st == "failed"} == {
        f"fit:e:cca:n{n}:s{s}" for n in (40, 120) for s in (0, 1)
    }
    assert {jid for jid, st in out.status.items() if st == "skipped"} == {
        f"evaluate:e:cca:n{n}:s{s}" for n in (40, 120) for s in (0, 1)
    }
    assert out.status["evaluate:e:ridge:n120:s1"] == "done"
    assert "n_components" in str(info.value)
    cfg["experiments"]["e"]["fit"]["aligners"]["cca"]["n_components"] = 4
    calls = HashEncoder.calls
    result = run(cfg)
    assert HashEncoder.calls == calls
    assert {jid for jid, st in result.outcome.status.items() if st == "done"} == {
        j.id for j in result.plan.jobs if ":cca:" in j.id
    }


def test_a_rerun_deletes_what_a_killed_run_left_half_written(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["cache"] = str(tmp_path / "results" / "t" / "store")  # a store inside the run folder keeps its own temporaries
    first = run(cfg)
    job_tmp = next((first.run_dir / "jobs" / "evaluate").iterdir()) / ".result.json.0123456789ab.tmp"
    top_tmp = first.run_dir / ".run.json.0123456789ab.tmp"
    store_tmp = Path(cfg["cache"]) / ".manifest.json.0123456789ab.tmp"
    for p in (job_tmp, top_tmp, store_tmp):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("half")
    second = run(cfg)
    assert second.run_dir == first.run_dir
    assert not job_tmp.exists() and not top_tmp.exists()
    assert store_tmp.exists()


def test_atlas_tables_carry_q_values_and_intervals_when_asked(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    cfg["experiments"]["e"].pop("fit")
    cfg["experiments"]["e"].pop("evaluate", None)
    plain_keys = {j.id: j.key for j in plan_run(cfg).jobs if j.kind == "atlas"}
    cfg["experiments"]["e"]["atlas"]["n_boot"] = 20
    boot_plan = plan_run(cfg)
    assert all(j.key != plain_keys[j.id] for j in boot_plan.jobs if j.kind == "atlas")
    assert _errors({**cfg, "experiments": {"e": {**cfg["experiments"]["e"], "atlas": {"n_boot": 1}}}}).count("n_boot")
    result = run(cfg)
    rows = pd.read_parquet(result.tables["atlas"])
    assert {"q_value_bh", "q_value_by", "ci_low", "ci_high", "n_distinct_a"} <= set(rows.columns)
    tested = rows[np.isfinite(rows["p_value"])]
    from scipy.stats import false_discovery_control

    for _, one in tested.groupby("measure"):
        np.testing.assert_allclose(one["q_value_bh"], false_discovery_control(one["p_value"], method="bh"))
    with_ci = rows[np.isfinite(rows["ci_low"])]
    assert len(with_ci) >= len(rows["measure"].unique())  # the best pair (and final × final) of each measure
    assert (with_ci["ci_low"] <= with_ci["score"]).all() and (with_ci["score"] <= with_ci["ci_high"]).all()


def test_atlas_null_can_permute_within_the_datas_classes(tmp_path: Path) -> None:
    table = tmp_path / "items.tsv"
    lines = [f"item number {i} of the test corpus\tclass{i % 6}" for i in range(120)]
    table.write_text("text\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    nulls = {}
    for groups in (None, "labels"):
        cfg = small_config(tmp_path, n=120, name=f"g-{groups}")
        for sp in cfg["spaces"].values():
            sp["data"] = f"{table}#text,label=label"
        exp = cfg["experiments"]["e"]
        exp.pop("fit"), exp.pop("evaluate", None)
        exp["atlas"] = {"measures": ["cka"], "n_perm": 9, **({"groups": groups} if groups else {})}
        result = run(cfg)
        summary = pd.read_parquet(result.tables["atlas_summary"]).iloc[0]
        assert summary["permutation"] == ("within" if groups else "full")
        nulls[groups] = pd.read_parquet(result.tables["atlas"])["null_mean"].to_numpy()
    assert not np.allclose(nulls[None], nulls["labels"])  # other draws: the job passed the classes on
    cfg = small_config(tmp_path / "nolabels", n=120)
    cfg["experiments"]["e"]["atlas"]["groups"] = "labels"
    with pytest.raises(Exception, match=r"atlas\.groups: 'labels', but neither space's data has labels"):
        run(cfg)


def test_atlas_pool_sizes_give_a_curve_whose_full_pool_is_the_atlas_cell(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, n=200)
    exp = cfg["experiments"]["e"]
    exp.pop("fit"), exp.pop("evaluate", None)
    exp["atlas"] = {"measures": ["mutual_knn?k=5", "cka"], "n_perm": 5, "pool_sizes": [50, 100, 200], "pool_repeats": 3}
    cfg["report"] = True
    result = run(cfg)
    curve = pd.read_parquet(result.tables["pool_curve"])
    atlas = pd.read_parquet(result.tables["atlas"])
    assert len(curve) == 6 and set(curve["pool_size"]) == {50, 100, 200}
    for measure, grp in curve.groupby("measure"):
        full = grp[grp["pool_size"] == 200].iloc[0]
        cell = atlas[(atlas["measure"] == measure) & (atlas["layer_a"] == full["layer_a"])]
        cell = cell[cell["layer_b"] == full["layer_b"]].iloc[0]
        assert full["score"] == pytest.approx(cell["score"], abs=1e-9)  # the pool of every item is the atlas cell
        assert full["score_low"] == pytest.approx(full["score_high"])  # the same set in every draw
        assert np.isfinite(grp["null_mean"]).all()
    assert "Pool-size curve" in result.report.read_text(encoding="utf-8")
    bad = small_config(tmp_path / "bad", n=200)
    bad["experiments"]["e"]["atlas"]["pool_sizes"] = [50, 400]
    with pytest.raises(Exception, match=r"atlas\.pool_sizes: 400 exceeds the 200 paired items"):
        run(bad)
    bad["experiments"]["e"]["atlas"]["pool_sizes"] = [9, 5]
    assert "pool_sizes" in _errors(bad)


def test_last_layers_are_the_encoders_last(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, n=150)
    cfg["experiments"]["e"]["fit"].update(layers="last", sizes=[40], seeds=[0])
    fits = pd.read_parquet(run(cfg).tables["fits"])
    assert set(fits["layer_a"]) == {"output"} and set(fits["layer_b"]) == {"output"}


def test_restart_redoes_every_job_but_keeps_the_embedding_cache(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    run(cfg)
    calls = HashEncoder.calls
    result = run(cfg, resume=False)
    assert set(result.outcome.status.values()) == {"done"}
    assert HashEncoder.calls == calls  # embeddings come from the store


def test_timing_columns_are_the_only_nondeterministic_ones(tmp_path: Path) -> None:
    a = run(small_config(tmp_path / "a"))
    b = run(small_config(tmp_path / "b"))
    for name in a.tables:
        x, y = pd.read_parquet(a.tables[name]), pd.read_parquet(b.tables[name])
        drop = [c for c in (*TIMING_COLUMNS, "path") if c in x]
        pd.testing.assert_frame_equal(x.drop(columns=drop), y.drop(columns=drop))


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_dry_run_lists_the_plan_and_run_prints_the_report(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, report=True)
    cfg["plugins"] = [str(Path(__file__).with_name("pipeline_helpers.py"))]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    dry = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "fit:e:ridge:n120:s1" in dry.stdout and "21 jobs" in dry.stdout and "todo" in dry.stdout
    assert not (tmp_path / "results" / "t" / "jobs").exists()  # a dry run writes nothing
    done = runner.invoke(app, ["run", str(path)])
    assert done.exit_code == 0, done.output
    assert "report:" in done.stdout and (tmp_path / "results" / "t" / "report.html").is_file()
    assert "held-out results" in done.stdout
    again = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert "todo" not in again.stdout.split("jobs —")[0] and "21 cached" not in again.stdout
    rep = runner.invoke(app, ["report", str(tmp_path / "results" / "t")])
    assert rep.exit_code == 0 and "report.html" in rep.stdout


def test_cli_run_reports_config_errors_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nspaces: {}\nexperiments: {}\n")
    res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2
    assert "spaces" in res.output and "Traceback" not in res.output


def test_changed_data_is_re_embedded_and_a_stale_plan_is_refused(tmp_path: Path) -> None:
    from alignkit.pipeline.executors import run_local

    cfg = small_config(tmp_path, n=200)
    run(cfg)
    items = tmp_path / "items.txt"
    items.write_text(items.read_text().replace("item number 7 ", "item number seven "))
    plan = plan_run(cfg)
    assert {j.id for j in plan.jobs if plan.status()[j.id] == "todo"} == {j.id for j in plan.jobs}
    items.write_text(items.read_text().replace("item number 8 ", "item number eight "))  # after planning
    outcome = run_local(plan)
    assert "changed since the run was planned" in outcome.errors["embed:x"]
    assert outcome.status["atlas:e:cka"] == "skipped"


def test_moving_a_data_file_keeps_every_cached_result(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    first = {j.id: j.key for j in plan_run(cfg).jobs}
    moved = tmp_path / "elsewhere.txt"
    (tmp_path / "items.txt").rename(moved)
    for space in cfg["spaces"].values():
        space["data"] = f"lines:{moved}"
    assert {j.id: j.key for j in plan_run(cfg).jobs} == first
