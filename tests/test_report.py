"""The run report: sections, missing tables, escaping, atomic and reproducible writes, directions and
labels from the registries, the page as package resources, and a real browser (headless Chromium)
decoding every embedded image."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fixtures_report import N_PERM, make_run_dir

pytest.importorskip("matplotlib")
pytest.importorskip("pyarrow")

from alignkit.pipeline import plots
from alignkit.pipeline.report import build_report, write_report

SECTIONS = (
    "atlas",
    "selection",
    "profiles",
    "sizes",
    "tables",
    "classes",
    "diagnostics",
    "aligned-diagnostics",
    "fits",
)


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run_dir = make_run_dir(tmp_path_factory.mktemp("full"), diagnostics=True)
    path = write_report(run_dir)
    return run_dir, path, path.read_text(encoding="utf-8")


def test_report_has_every_section_and_plot(full_run):
    run_dir, path, text = full_run
    assert path == run_dir / "report.html"
    for anchor in SECTIONS:
        assert f"<section id='{anchor}'>" in text
        assert f"href='#{anchor}'" in text
    assert text.count("How to read this.") == len(SECTIONS)
    assert "Not in this run" not in text
    assert "block_2 × layer_1" in text and "block_3 × layer_2" in text  # chosen pair and the last pair
    # header: name, wall time, job counts, versions, hardware
    assert "demo-run" in text and "6 min 38 s" in text
    assert "15 done" in text and "1 cached" in text
    assert "torch 2.5.1" in text and "16 CPUs" in text and "no CUDA" in text
    # atlas: best pair and an honest calibrated p at the resolution floor
    assert "layer.5 × blocks.8" in text
    assert f"p ≤ {1 / (N_PERM + 1):.2g} ({N_PERM} perms)" in text
    # tables: every method, both directions and scorings, bold best cells, seeds in brackets
    for name in ("procrustes", "ridge", "mlp_contrastive", "en→es", "es→en", "CSLS scoring", "NN scoring"):
        assert name in text
    assert "<b>" in text and "(3)</span>" in text
    assert "median rank" in text and "held-out top-1 (among held-out)" in text
    # PNGs on disk are exactly the embedded ones
    pngs = sorted((run_dir / "plots").glob("*.png"))
    assert [p.name for p in pngs] == sorted(
        [
            "atlas-minilm_vs_vit-cka.png",
            "atlas-minilm_vs_vit-mutual_knn.png",
            "classes-cifar10_zero_shot.png",
            "diagnostics-vit.png",
            "levels-en_es_retrieval-procrustes.png",
            "levels-en_es_retrieval-ridge.png",
            "profiles-minilm_vs_vit.png",
            "sizes-cifar10_zero_shot.png",
            "sizes-en_es_retrieval.png",
        ]
    )
    embedded = _images(text)
    assert sorted(embedded) == sorted(p.read_bytes() for p in pngs)
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in embedded)


def test_report_is_self_contained(full_run):
    _, _, text = full_run
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    assert "<link" not in text
    assert 'data-file="' in text
    assert "document.body.dataset.imagesLoaded" in text


def test_missing_tables_say_not_in_this_run(tmp_path):
    run_dir = make_run_dir(tmp_path, atlas=False, evaluations=False, fits=False, diagnostics=False)
    text = write_report(run_dir).read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f"<section id='{anchor}'>" in text
    # atlas, selection, profiles, sizes, tables, classes, diagnostics, aligned diagnostics, fits
    assert text.count("Not in this run") == 9
    assert "<img" not in text
    assert not (run_dir / "plots").exists()
    # the jobs table still comes from run.json
    assert "All 16 jobs" in text


def test_empty_and_unreadable_tables(tmp_path):
    run_dir = make_run_dir(tmp_path)
    for name in ("atlas", "atlas_summary", "fits"):
        df = pd.read_parquet(run_dir / f"{name}.parquet")
        df.iloc[:0].to_parquet(run_dir / f"{name}.parquet", index=False)
    (run_dir / "evaluations.parquet").write_bytes(b"not parquet")
    (run_dir / "run.json").unlink()
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "run.json is missing" in text
    assert "evaluations.parquet could not be read" in text
    assert text.count("Not in this run") >= 6
    assert "<img" not in text
    assert "<h1>Run report: <span class='runname'>run</span></h1>" in text


def test_atlas_without_summary_or_nulls(tmp_path):
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    (run_dir / "atlas_summary.parquet").unlink()
    cells = pd.read_parquet(run_dir / "atlas.parquet")
    cells[["null_mean", "null_std", "p_value", "p_value_fwer"]] = np.nan
    cells.to_parquet(run_dir / "atlas.parquet", index=False)
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "no permutation null" in text and "No permutation null." in text
    assert "layer.5 × blocks.8" in text  # best pair found from the cells
    assert len(_images(text)) == 3  # two heatmaps and one profile figure


def test_single_seed_has_no_interval(tmp_path):
    run_dir = make_run_dir(tmp_path, atlas=False)
    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev[ev["seed"] == 0].to_parquet(run_dir / "evaluations.parquet", index=False)
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "(1)</span>" in text
    assert "<span class='pm'>" not in text
    assert "over 1 seed(s)" in text


def test_strings_from_data_are_escaped(tmp_path):
    evil = '<script>alert("x")</script> & $a$'
    run_dir = make_run_dir(tmp_path, name=evil)
    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    ev.loc[ev["method"] == "ridge", "method"] = "<img src=x onerror=alert(1)>"
    ev.loc[ev["class"] == "cat", "class"] = "c$at</td>"
    ev.to_parquet(run_dir / "evaluations.parquet", index=False)
    cells = pd.read_parquet(run_dir / "atlas.parquet")
    cells.loc[cells["layer_b"] == "blocks.0", "layer_b"] = "<b>$x$</b>"
    cells.to_parquet(run_dir / "atlas.parquet", index=False)
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert evil not in text and "<img src=x" not in text and "<b>$x$</b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; $a$" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert text.count("<script>") == 1  # only the report's own image-count script


def test_report_regenerates_identically(full_run, tmp_path):
    # same files (in another folder) -> the same HTML and PNG bytes: no timestamps, no paths, no randomness
    run_dir, path, _ = full_run
    text, pngs = build_report(make_run_dir(tmp_path, diagnostics=True))
    assert text.encode("utf-8") == path.read_bytes()
    assert pngs == {p.name: p.read_bytes() for p in (run_dir / "plots").glob("*.png")}


def test_stale_plots_removed_others_kept(tmp_path):
    run_dir = make_run_dir(tmp_path, fits=False)
    write_report(run_dir)
    (run_dir / "plots" / "my_own.png").write_bytes(b"keep")
    (run_dir / "atlas.parquet").unlink()
    write_report(run_dir)
    names = {p.name for p in (run_dir / "plots").iterdir()}
    assert "my_own.png" in names
    assert not any(n.startswith(("atlas-", "profiles-")) for n in names)
    assert "sizes-en_es_retrieval.png" in names


def test_build_report_writes_nothing(tmp_path):
    run_dir = make_run_dir(tmp_path, evaluations=False)
    before = sorted(p.name for p in run_dir.iterdir())
    text, pngs = build_report(run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert set(pngs) == {
        "atlas-minilm_vs_vit-cka.png",
        "atlas-minilm_vs_vit-mutual_knn.png",
        "profiles-minilm_vs_vit.png",
    }
    assert len(_images(text)) == 3


def test_report_written_atomically(tmp_path, monkeypatch):
    import alignkit.io

    run_dir = make_run_dir(tmp_path, atlas=False, fits=False)
    calls = []
    real = alignkit.io.atomic_write_text
    monkeypatch.setattr(alignkit.io, "atomic_write_text", lambda p, t: (calls.append(p), real(p, t)))
    write_report(run_dir)
    assert calls == [run_dir / "report.html"]

    # a failure at the final rename leaves the old report whole and no temporary behind
    old = (run_dir / "report.html").read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst, *a, **k):
        if str(dst).endswith("report.html"):
            raise OSError("disk full")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", failing_replace)
    (run_dir / "run.json").write_text(json.dumps({"name": "changed"}), encoding="utf-8")
    with pytest.raises(OSError, match="disk full"):
        write_report(run_dir)
    assert (run_dir / "report.html").read_bytes() == old
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


def test_write_report_needs_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nope")


def test_no_pyplot_figures_leak(full_run):
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_format_p():
    assert plots.format_p(1 / 101, 100) == "p ≤ 0.0099 (100 perms)"
    assert plots.format_p(0.5, 100) == "p = 0.5 (100 perms)"
    assert plots.format_p(float("nan"), None) == "no permutation null"
    assert plots.format_p(0.03, None) == "p = 0.03"


def test_durations_read_naturally():
    from alignkit.pipeline.report.html import seconds

    assert [seconds(v) for v in (5, 59.96, 119.7, 398.2, 3599.6, 7230, None)] == [
        "5.0 s",
        "1 min 00 s",
        "2 min 00 s",
        "6 min 38 s",
        "1 h 00 min",
        "2 h 00 min",
        "–",
    ]


def _rename_measure(run_dir, old: str, new: str) -> None:
    for name in ("atlas", "atlas_summary", "layer_selection"):
        path = run_dir / f"{name}.parquet"
        if path.exists():
            df = pd.read_parquet(path)
            df.loc[df["measure"] == old, "measure"] = new
            df.to_parquet(path, index=False)


def _atlas_row(text: str, measure_html: str) -> list[str]:
    """The cells of the atlas table's row for one measure."""
    table = text.split("<section id='atlas'>", 1)[1].split("</table>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", table):
        cells = re.findall(r"<td>(.*?)</td>", row)
        if len(cells) > 2 and cells[2] == measure_html:
            return cells
    raise AssertionError(f"no atlas row for {measure_html}")


def test_lower_is_better_measure_takes_its_best_pair_from_the_registry(tmp_path):
    # shape_distance is a distance: without a summary, the best pair is the smallest score (the old
    # report guessed the direction from the summary and, without one, always took the largest)
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    (run_dir / "atlas_summary.parquet").unlink()
    _rename_measure(run_dir, "cka", "shape_distance")
    cells = pd.read_parquet(run_dir / "atlas.parquet")
    dist = cells[cells["measure"] == "shape_distance"]
    low, high = dist.loc[dist["score"].idxmin()], dist.loc[dist["score"].idxmax()]
    text = build_report(run_dir)[0]
    row = _atlas_row(text, "shape_distance")
    assert row[3] == f"{low['layer_a']} × {low['layer_b']}" != f"{high['layer_a']} × {high['layer_b']}"
    assert "direction unknown" not in text


def test_unregistered_measure_is_shown_neutrally(tmp_path, monkeypatch):
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    _rename_measure(run_dir, "cka", "plugin_measure?k=3")
    sel = pd.read_parquet(run_dir / "layer_selection.parquet")
    sel.assign(measure="plugin_measure", chosen=False).to_parquet(run_dir / "layer_selection.parquet", index=False)
    marked, panels = {}, []
    real_heatmap, real_profiles = plots.atlas_heatmap, plots.layer_profiles

    def heatmap(cells, **kw):
        marked[kw["metric"]] = kw["best"]
        return real_heatmap(cells, **kw)

    def profiles(p, **kw):
        panels.extend(x["metric"] for x in p)
        return real_profiles(p, **kw)

    monkeypatch.setattr(plots, "atlas_heatmap", heatmap)
    monkeypatch.setattr(plots, "layer_profiles", profiles)
    text, pngs = build_report(run_dir)
    # the registered measure keeps its outlined best pair; the unknown one gets no marker and no profile
    assert marked == {"mutual_knn": ("layer.5", "blocks.8"), "plugin_measure?k=3": None}
    assert panels == ["mutual_knn"]
    unknown = "plugin_measure?k=3 <span class='small'>(direction unknown)</span>"
    assert _atlas_row(text, unknown)[3] == "layer.5 × blocks.8"  # the pair the run itself recorded
    assert "direction unknown: &#x27;plugin_measure?k=3&#x27; is not a registered measure here" in text
    assert "Not drawn, direction unknown (not a registered measure): plugin_measure?k=3." in text
    # selection: nothing marked chosen and no direction -> no pair is picked
    sel_html = text.split("<section id='selection'>", 1)[1].split("</section>", 1)[0]
    assert "<td>plugin_measure <span class='small'>(direction unknown)</span></td><td>–</td><td>–</td>" in sel_html
    assert "block_3 × layer_2" in sel_html  # the last pair is still shown
    assert len(pngs) == 3


def test_measure_id_with_parameters_is_labelled_and_directed(tmp_path):
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    _rename_measure(run_dir, "mutual_knn", "mutual_knn?k=10")
    text, pngs = build_report(run_dir)
    assert _atlas_row(text, "mutual_knn?k=10")[3] == "layer.5 × blocks.8"
    assert "direction unknown" not in text
    assert "atlas-minilm_vs_vit-mutual_knn_k_10.png" in pngs


def _comparison_blocks(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(column labels, rows of cell HTML) per training-size block of every method-comparison table."""
    section = text.split("<section id='tables'>", 1)[1].split("</section>", 1)[0]
    out = []
    for tbl in re.findall(r"<table class='num cmp'>(.*?)</table>", section):
        labels = re.findall(r"<th>(.*?)</th>", tbl.split("</thead>")[0])[2:]
        for row in re.findall(r"<tr>(.*?)</tr>", tbl.split("<tbody>")[1]):
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row)[1:]
            if "class='size'" in row:
                out.append((labels, []))
            out[-1][1].append(cells)
    return out


def _mean(cell: str) -> float:
    return float(re.sub(r"<[^>]+>", "", cell).split()[0].replace(",", ""))


def test_bold_follows_each_metrics_registered_direction(full_run):
    _, _, text = full_run
    blocks = _comparison_blocks(text)
    assert blocks and any("median rank" in labels for labels, _ in blocks)
    for labels, rows in blocks:
        for j, label in enumerate(labels):
            means = [_mean(r[j]) for r in rows]
            bold = [m for r, m in zip(rows, means, strict=True) if r[j].startswith("<b>")]
            assert bold == [min(means) if label in ("median rank", "mean rank") else max(means)], label


def test_unregistered_evaluation_metric_is_shown_neutrally(tmp_path):
    run_dir = make_run_dir(tmp_path, atlas=False, fits=False)
    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    extra = ev[ev["metric"] == "mrr"].assign(metric="my_score")
    pd.concat([ev, extra]).to_parquet(run_dir / "evaluations.parquet", index=False)
    text = build_report(run_dir)[0]
    blocks = [b for b in _comparison_blocks(text) if "my_score" in b[0]]
    assert blocks
    for labels, rows in blocks:
        assert labels[-1] == "my_score" and labels[:4] == ["R@1", "R@5", "R@10", "MRR"]  # unknown: last
        assert not any(r[-1].startswith("<b>") for r in rows)  # no direction, so no best
        assert sum(r[labels.index("MRR")].startswith("<b>") for r in rows) == 1


def test_page_slots_are_filled_once(tmp_path):
    # a run name that looks like a template slot is shown literally, not replaced by the CSS or the body
    run_dir = make_run_dir(tmp_path, name="@CSS@ @BODY@ @SCRIPT@", atlas=False, evaluations=False, fits=False)
    text = build_report(run_dir)[0]
    assert "<title>alignkit report: @CSS@ @BODY@ @SCRIPT@</title>" in text
    assert text.count("<style>") == 1 and text.count("<main>") == 1 and text.count("<script>") == 1


def test_page_css_and_script_are_package_resources(full_run):
    from importlib import resources

    _, _, text = full_run
    res = resources.files("alignkit.pipeline.report")
    page = res.joinpath("page.html").read_text(encoding="utf-8")
    for slot in ("@TITLE@", "@CSS@", "@SCRIPT@", "@BODY@"):
        assert page.count(slot) == 1
    assert text.startswith(page.split("@TITLE@")[0])
    for name in ("report.css", "report.js"):
        body = res.joinpath(name).read_text(encoding="utf-8")
        assert len(body) > 100 and body in text


def test_method_colors_are_stable():
    a = plots.method_colors(["ridge", "procrustes", "mlp"])
    b = plots.method_colors(["procrustes", "mlp", "ridge", "ridge"])
    assert a == b and len(set(a.values())) == 3


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(full_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium/chrome binary on PATH (CI installs chromium for this test)")
    from PIL import Image

    _, path, text = full_run
    n_img = text.count("<img ")
    assert n_img == 9
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    url = path.resolve().as_uri()
    dom = subprocess.run(
        [*common, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    assert loaded and total, f"load handler did not run: {body.group(0)}"
    assert int(loaded.group(1)) == int(total.group(1)) == n_img > 0

    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,4000", url],
        capture_output=True,
        timeout=120,
        env=env,
        check=True,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape[:2] == (4000, 1280)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 100  # not blank: text, heatmaps, lines
    assert (rgb < 100).all(axis=2).mean() > 0.001  # some dark pixels (text)


def test_size_curves_draw_each_scoring_in_its_own_style():
    """NN, CSLS and GRAM-volume curves of one method differ in line style, and the legend names all three."""
    rows = [
        {"panel": "R@1 · a→rest", "ylabel": "R@1", "method": "m", "style": style, "style_label": label,
         "n_train": n, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        for style, label in (("solid", "NN"), ("dashed", "CSLS"), ("dotted", "GRAM volume"))
        for n in (100, 400)
    ]  # fmt: skip
    fig = plots.size_curves(pd.DataFrame(rows), colors={"m": "#0072B2"})
    styles = {line.get_linestyle() for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 2}
    assert styles - {"None"} == {"-", "--", ":"}  # "None": the error bars' caps
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"NN", "CSLS", "GRAM volume"} <= legend
