"""Item-level progress of a local run, and the executors' shared bookkeeping."""

from __future__ import annotations

from pathlib import Path

from alignkit._progress import progress, report_to
from alignkit.pipeline import load_config, run
from pipeline_helpers import small_config


def test_bars_go_to_the_sink_inside_report_to():
    seen: list[tuple[str, int, int | None]] = []
    with report_to(lambda d, n, t: seen.append((d, n, t))):
        assert list(progress(range(5), desc="draws")) == [0, 1, 2, 3, 4]
        bar = progress(total=3, desc="items")
        bar.update(3)
        bar.close()
        assert list(progress([1, 2], show=False, desc="hidden")) == [1, 2]
    assert seen[0] == ("draws", 0, 5) and ("draws", 5, 5) in seen
    assert seen[-1] == ("items", 3, 3)
    assert not [s for s in seen if s[0] == "hidden"]
    assert list(progress(range(2), show=False)) == [0, 1]  # outside: a (disabled) tqdm bar again


def test_items_report_embedding_and_permutations_of_each_job(tmp_path: Path):
    events: list[tuple[str, str, int, int | None]] = []
    ended: list[tuple[str, str]] = []
    cfg = load_config(small_config(tmp_path, n=300))
    result = run(
        cfg, notify=lambda j, s, t: ended.append((j.id, s)), items=lambda j, d, n, t: events.append((j.id, d, n, t))
    )
    assert result.outcome.ok and len(ended) == len(result.plan.jobs)
    embed = [(n, t) for jid, d, n, t in events if jid == "embed:x" and d.startswith("embedding")]
    assert embed[0] == (0, 300) and embed[-1] == (300, 300)
    perms = [(n, t) for jid, d, n, t in events if jid.startswith("atlas:") and d == "permutations"]
    assert perms and perms[-1] == (9, 9)
    events.clear()
    run(cfg, items=lambda j, d, n, t: events.append((j.id, d, n, t)))
    assert events == []  # every job cached: nothing runs
