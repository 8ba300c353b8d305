"""From a validated config to a plan: jobs, their dependencies and their input-derived keys.

Each job's ``key`` hashes everything that determines its output: its own settings and the keys of
the jobs it reads. A job whose ``jobs/<kind>/<key>/result.json`` exists is finished; a changed input
gives a new key, so stale outputs are never reused and unchanged ones are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.pipeline.config import RunConfig

RESULT_FILE = "result.json"


DATA_FIELDS = ("data", "data_a", "data_b")


def _content_view(part: Any) -> Any:
    """A job spec as its key sees it: datasets by content fingerprint, not by path, so moving or
    renaming a data file keeps every cached result (and changing its content invalidates them)."""
    if not isinstance(part, dict) or "fingerprints" not in part:
        return part
    fps = part["fingerprints"]
    out = {k: v for k, v in part.items() if k != "fingerprints"}
    for field_name in DATA_FIELDS:
        if field_name in out:
            value = out[field_name]
            out[field_name] = [fps.get(v, v) for v in value] if isinstance(value, list) else fps.get(value, value)
    return out


def stable_key(*parts: Any) -> str:
    """16 hex chars of sha256 over the JSON of ``parts`` (sorted keys), data specs replaced by content."""
    blob = json.dumps([_content_view(p) for p in parts], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Job:
    """One unit of work. ``spec`` is plain JSON data: a job can be shipped to another process or node."""

    id: str
    kind: str
    key: str
    deps: tuple[str, ...]
    spec: dict[str, Any]
    cpus: float = 1.0
    gpus: float = 0.0
    work: str = ""

    def folder(self, run_dir: Path) -> Path:
        return Path(run_dir) / "jobs" / self.kind / self.key

    def done(self, run_dir: Path) -> bool:
        return (self.folder(run_dir) / RESULT_FILE).is_file()


@dataclass
class Plan:
    config: RunConfig
    run_dir: Path
    jobs: list[Job] = field(default_factory=list)

    def by_id(self) -> dict[str, Job]:
        return {j.id: j for j in self.jobs}

    def status(self) -> dict[str, str]:
        """``"cached"`` for finished jobs, else ``"todo"``."""
        return {j.id: ("cached" if j.done(self.run_dir) else "todo") for j in self.jobs}

    def rows(self) -> list[dict[str, Any]]:
        """The plan as a table (for ``--dry-run``)."""
        st = self.status()
        return [
            {"job": j.id, "kind": j.kind, "status": st[j.id], "after": ", ".join(j.deps), "work": j.work}
            for j in self.jobs
        ]


def _dataset_info(spec: str) -> dict[str, Any]:
    from alignkit.data.spec import dataset_from_spec

    ds = dataset_from_spec(spec)
    return {"fingerprint": ds.fingerprint(), "n": len(ds), "dataset": ds}


def build_plan(config: RunConfig, run_dir: str | Path) -> Plan:
    """Every job of the run, in an order where each job comes after the jobs it reads."""
    from alignkit.data.base import align_keys

    run_dir = Path(run_dir)
    plan = Plan(config, run_dir)
    cpus_embed = 2.0
    gpu = 1.0 if (config.device or "").startswith("cuda") else 0.0
    datasets: dict[str, dict[str, Any]] = {}
    embed_key: dict[str, str] = {}
    seen_embed: dict[str, str] = {}  # key -> job id, so two spaces with the same inputs share a job
    alias: dict[str, str] = {}
    for name, sp in config.spaces.items():
        info = datasets.setdefault(sp.data, _dataset_info(sp.data))
        key = stable_key(
            "embed", sp.encoder, sp.options, sp.layers, config.device, info["fingerprint"], _store_root(config)
        )
        embed_key[name] = key
        if key in seen_embed:
            alias[name] = seen_embed[key]
            continue
        jid = f"embed:{name}"
        seen_embed[key] = jid
        alias[name] = jid
        spec = {
            "space": name,
            "data": sp.data,
            "fingerprints": {sp.data: info["fingerprint"]},
            "encoder": sp.encoder,
            "options": dict(sp.options),
            "layers": sp.layers,
            "device": config.device,
            "store": _store_root(config),
        }
        layers = "every layer" if sp.layers is None else f"{len(sp.layers)} layer(s)"
        plan.jobs.append(Job(jid, "embed", key, (), spec, cpus_embed, gpu, f"{info['n']:,} items, {layers}"))

    _check_data(config, datasets)
    for name, sp in config.spaces.items():
        if sp.diagnose is None:
            continue
        n = datasets[sp.data]["n"]
        for diag in sp.diagnose.diagnostics:
            spec = {
                "space": name,
                "embed": alias[name],
                "data": sp.data,
                "fingerprints": {sp.data: datasets[sp.data]["fingerprint"]},
                "diagnostic": diag,
                "n_boot": sp.diagnose.n_boot,
                "sample": sp.diagnose.sample,
                "seed": config.seed,
            }
            key = stable_key("diagnose", spec, embed_key[name])
            m = min(n, sp.diagnose.sample or n)
            ci = f", {sp.diagnose.n_boot} subsamples" if sp.diagnose.n_boot else ""
            plan.jobs.append(
                Job(
                    f"diagnose:{name}:{diag}",
                    "diagnose",
                    key,
                    (alias[name],),
                    spec,
                    1.0,
                    0.0,
                    f"{m:,} items, every layer{ci}",
                )
            )
    for ename, exp in config.experiments.items():
        if exp.views is not None:
            _plan_views(plan, ename, exp, datasets, alias, embed_key, gpu)
            continue
        da, db = datasets[config.spaces[exp.a].data], datasets[config.spaces[exp.b].data]
        ra, _ = align_keys(da["dataset"], db["dataset"], how="inner")
        n_paired = len(ra)
        base = {
            "experiment": ename,
            "a": exp.a,
            "b": exp.b,
            "embed_a": alias[exp.a],
            "embed_b": alias[exp.b],
            "data_a": config.spaces[exp.a].data,
            "data_b": config.spaces[exp.b].data,
            "fingerprints": {config.spaces[s].data: datasets[config.spaces[s].data]["fingerprint"] for s in _used(exp)},
            "seed": config.seed,
        }
        deps_ab = tuple(dict.fromkeys((alias[exp.a], alias[exp.b])))
        up = (embed_key[exp.a], embed_key[exp.b])
        if exp.atlas is not None:
            for measure in exp.atlas.measures:
                spec = {**base, "measure": measure, "n_perm": exp.atlas.n_perm, "sample": exp.atlas.sample}
                if exp.atlas.n_boot:  # only when asked: existing atlas jobs keep their keys
                    spec["n_boot"] = exp.atlas.n_boot
                if exp.atlas.groups:
                    spec.update(groups=exp.atlas.groups, group_mode=exp.atlas.group_mode)
                if exp.atlas.pool_sizes:
                    spec.update(pool_sizes=list(exp.atlas.pool_sizes), pool_repeats=exp.atlas.pool_repeats)
                key = stable_key("atlas", spec, up)
                n = min(n_paired, exp.atlas.sample or n_paired)
                work = f"{n:,} items, every layer pair, 1 + {exp.atlas.n_perm} scorings"
                if exp.atlas.n_boot:
                    work += f", CIs from {exp.atlas.n_boot} subsamples"
                if exp.atlas.groups:
                    work += f", null permuted {exp.atlas.group_mode} class groups"
                if exp.atlas.pool_sizes:
                    work += f", a pool-size curve over {len(exp.atlas.pool_sizes)} sizes"
                plan.jobs.append(Job(f"atlas:{ename}:{measure}", "atlas", key, deps_ab, spec, 1.0, 0.0, work))
        if exp.fit is None:
            continue
        fit = exp.fit
        pool = n_paired - fit.test
        split: dict[str, Any] = {"test": fit.test, "heldout_classes": list(fit.heldout_classes)}
        if exp.evaluate is not None and exp.evaluate.bli is not None:
            split["split_by"] = "a_item"  # only then: the other experiments' job keys stay as they were
        if fit.pairs == "none":
            split.update(pairs="none", unpaired=fit.unpaired, seed_pairs=fit.seed_pairs)
        layer_dep: tuple[str, ...] = ()
        layer_key: Any = fit.layers
        if fit.layers == "best":
            spec = {
                **base,
                **split,
                "measure": fit.select_measure,
                "k": fit.select_k,
                "sample": fit.select_sample,
            }
            key = stable_key("select", spec, up)
            sid = f"select:{ename}"
            n = min(pool, fit.select_sample or pool)
            plan.jobs.append(
                Job(sid, "select", key, deps_ab, spec, 1.0, 0.0, f"{n:,} training pairs, every layer pair")
            )
            layer_dep, layer_key = (sid,), key
        zs = exp.evaluate.zero_shot if exp.evaluate else None
        for method, acfg in fit.aligners.items():
            for size in fit.sizes:
                for seed in fit.seeds:
                    spec = {
                        **base,
                        **split,
                        "method": method,
                        "aligner": acfg.type,
                        "params": acfg.params,
                        "layers": fit.layers,
                        "select": layer_dep[0] if layer_dep else None,
                        "n_train": size,
                        "fit_seed": seed,
                    }
                    key = stable_key("fit", spec, up, layer_key)
                    fid = f"fit:{ename}:{method}:n{size}:s{seed}"
                    what = f"{size:,} pairs" if fit.pairs == "paired" else f"{size:,} unpaired items ({fit.unpaired})"
                    job = Job(fid, "fit", key, deps_ab + layer_dep, spec, 1.0, gpu, f"{acfg.type} on {what}")
                    plan.jobs.append(job)
                    if exp.evaluate is None:
                        continue
                    ev = exp.evaluate
                    espec = {
                        **spec,
                        "fit": fid,
                        "retrieval": ev.retrieval.model_dump() if ev.retrieval else None,
                        "zero_shot": zs.model_dump() if zs else None,
                        "embed_prompts": alias[zs.prompts] if zs else None,
                        "diagnose": list(ev.diagnose or []),
                    }
                    for task in ("bli", "translation"):  # only when asked: existing evaluate keys stay
                        if getattr(ev, task) is not None:
                            espec[task] = getattr(ev, task).model_dump()
                    deps = (fid, *deps_ab)
                    ekey_parts: list[Any] = ["evaluate", espec, key]
                    if zs:
                        deps = (*deps, alias[zs.prompts])
                        ekey_parts.append(embed_key[zs.prompts])
                    ekey = stable_key(*ekey_parts)
                    plan.jobs.append(
                        Job(
                            f"evaluate:{ename}:{method}:n{size}:s{seed}",
                            "evaluate",
                            ekey,
                            tuple(dict.fromkeys(deps)),
                            espec,
                            1.0,
                            0.0,
                            f"{fit.test:,} held-out items",
                        )
                    )
    return plan


def _plan_views(
    plan: Plan,
    ename: str,
    exp: Any,
    datasets: dict[str, dict[str, Any]],
    alias: dict[str, str],
    embed_key: dict[str, str],
    gpu: float,
) -> None:
    """Fit and evaluate jobs of an n-view experiment (n-way aligners on items paired across every view)."""
    config = plan.config
    data = [config.spaces[v].data for v in exp.views]
    base = {
        "experiment": ename,
        "views": list(exp.views),
        "embeds": [alias[v] for v in exp.views],
        "data": data,
        "fingerprints": {d: datasets[d]["fingerprint"] for d in data},
        "seed": config.seed,
    }
    deps = tuple(dict.fromkeys(alias[v] for v in exp.views))
    up = tuple(embed_key[v] for v in exp.views)
    fit, ev = exp.fit, exp.evaluate
    n_views = len(exp.views)
    for method, acfg in fit.aligners.items():
        for size in fit.sizes:
            for seed in fit.seeds:
                spec = {
                    **base,
                    "test": fit.test,
                    "method": method,
                    "aligner": acfg.type,
                    "params": acfg.params,
                    "layers": fit.layers,
                    "n_train": size,
                    "fit_seed": seed,
                }
                key = stable_key("fit_views", spec, up)
                fid = f"fit:{ename}:{method}:n{size}:s{seed}"
                work = f"{acfg.type} on {size:,} items x {n_views} views"
                plan.jobs.append(Job(fid, "fit", key, deps, spec, 1.0, gpu, work))
                if ev is None or ev.retrieval is None:
                    continue
                espec = {**spec, "fit": fid, "retrieval": ev.retrieval.model_dump()}
                ekey = stable_key("evaluate_views", espec, key)
                work = f"{fit.test:,} held-out items, {n_views} views"
                eid = f"evaluate:{ename}:{method}:n{size}:s{seed}"
                plan.jobs.append(Job(eid, "evaluate", ekey, (fid, *deps), espec, 1.0, 0.0, work))


def _used(exp: Any) -> list[str]:
    """Names of the spaces an experiment reads (A, B and the zero-shot prompts)."""
    out = list(exp.spaces)
    if exp.evaluate is not None and exp.evaluate.zero_shot is not None:
        out.append(exp.evaluate.zero_shot.prompts)
    return out


def _store_root(config: RunConfig) -> str | None:
    return None if config.cache is None else str(Path(config.cache).expanduser())


def class_indices(classes: list[str | int], names: list[str] | None, experiment: str) -> list[int]:
    """Held-out classes (names or indices) as sorted label indices; unknown ones name the key and the classes."""
    out = []
    for c in classes:
        if isinstance(c, int):
            if names is not None and not 0 <= c < len(names):
                raise ValueError(f"experiments.{experiment}.fit.heldout_classes: class index {c} out of range")
            out.append(c)
        elif names is None or c not in names:
            raise ValueError(f"experiments.{experiment}.fit.heldout_classes: unknown class {c!r}; classes: {names}")
        else:
            out.append(names.index(c))
    return sorted(set(out))


def _check_data(config: RunConfig, datasets: dict[str, dict[str, Any]]) -> None:
    """Every check that needs the datasets (cheap) but not the embeddings, all problems in one error."""
    from alignkit.data.base import align_keys

    problems = []
    for sname, sp in config.spaces.items():
        if sp.diagnose is not None and datasets[sp.data]["dataset"].labels is None:
            needing = _label_diagnostics(sp.diagnose.diagnostics)
            if needing:
                problems.append(f"spaces.{sname}.diagnose: {needing} need labels, and {sp.data!r} has none")
    for ename, exp in config.experiments.items():
        if exp.views is not None:
            problems += _check_views(ename, exp, [datasets[config.spaces[v].data]["dataset"] for v in exp.views])
            continue
        da, db = datasets[config.spaces[exp.a].data], datasets[config.spaces[exp.b].data]
        ev = exp.evaluate
        if ev is not None and ev.diagnose and da["dataset"].labels is None and db["dataset"].labels is None:
            needing = _label_diagnostics(ev.diagnose)
            if needing:
                problems.append(f"experiments.{ename}.evaluate.diagnose: {needing} need labels; neither space has any")
        n_paired = len(align_keys(da["dataset"], db["dataset"], how="inner")[0])
        if exp.atlas is not None:
            n = min(n_paired, exp.atlas.sample or n_paired)
            if exp.atlas.groups == "labels" and da["dataset"].labels is None and db["dataset"].labels is None:
                problems.append(f"experiments.{ename}.atlas.groups: 'labels', but neither space's data has labels")
            if exp.atlas.pool_sizes and max(exp.atlas.pool_sizes) > n_paired:
                problems.append(
                    f"experiments.{ename}.atlas.pool_sizes: {max(exp.atlas.pool_sizes)} exceeds the {n_paired} "
                    "paired items"
                )
            for measure in exp.atlas.measures:
                try:
                    _check_measure_k(f"experiments.{ename}.atlas.measures", measure, None, n, "paired items")
                except ValueError as exc:
                    problems.append(str(exc))
        if exp.fit is None:
            continue
        try:
            if exp.evaluate is not None and exp.evaluate.bli is not None:
                _check_words(ename, exp, da["dataset"], db["dataset"])
            else:
                _check_sizes(ename, n_paired, exp.fit.test, [_items_drawn(exp.fit, n) for n in exp.fit.sizes])
            _check_translation(ename, exp)
        except ValueError as exc:
            problems.append(str(exc))
        try:
            _check_against_data(ename, exp, da, db, n_paired)
        except ValueError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        raise ValueError(f"{len(problems)} problem(s) with the data:\n" + "\n".join(f"  {p}" for p in problems))


def _check_views(ename: str, exp: Any, datasets: list[Any]) -> list[str]:
    """Items paired across every view leave training items for each size; ks and csls_k fit the test set."""
    from alignkit.pipeline.jobs import align_views

    n = len(align_views(datasets)[0])
    problems = []
    if exp.fit is not None:
        try:
            _check_sizes(ename, n, exp.fit.test, exp.fit.sizes)
        except ValueError as exc:
            problems.append(str(exc).replace("paired items", f"items paired across the {len(datasets)} views"))
    ret = exp.evaluate.retrieval if exp.evaluate else None
    if ret is not None and max(max(ret.ks), ret.csls_k if "csls" in ret.scoring else 0) > exp.fit.test:
        problems.append(
            f"experiments.{ename}.evaluate.retrieval: ks {ret.ks} and csls_k {ret.csls_k} must not exceed the "
            f"{exp.fit.test} held-out items"
        )
    return problems


def _label_diagnostics(names: list[str]) -> list[str]:
    from alignkit.diagnostics import diagnostic_spec, get

    return [d for d in names if get(diagnostic_spec(d)).needs_labels]


def _check_against_data(ename: str, exp: Any, da: dict[str, Any], db: dict[str, Any], n_paired: int) -> None:
    """Checks that need the datasets (not the embeddings): held-out classes exist, ks and csls_k fit the test
    set, the layer selection's k fits the training pairs it scores."""
    fit = exp.fit
    if fit.heldout_classes:
        src = da["dataset"] if da["dataset"].labels is not None else db["dataset"]
        if src.labels is None:
            raise ValueError(f"experiments.{ename}.fit.heldout_classes: neither space's data has labels")
        names = None if src.class_names is None else list(src.class_names)
        class_indices(list(fit.heldout_classes), names, ename)
    if fit.layers == "best":
        pool = max(n_paired - fit.test, 0)  # an upper bound: held-out classes only shrink it
        n = min(pool, fit.select_sample or pool)
        _check_measure_k(f"experiments.{ename}.fit", fit.select_measure, fit.select_k, n, "training pairs")
    ret = exp.evaluate.retrieval if exp.evaluate else None
    if ret is not None and max(ret.ks) > fit.test:
        raise ValueError(
            f"experiments.{ename}.evaluate.retrieval.ks: {[k for k in ret.ks if k > fit.test]} exceed the "
            f"{fit.test} held-out items retrieved among"
        )
    if ret is not None and "csls" in ret.scoring and ret.csls_k > fit.test:
        raise ValueError(
            f"experiments.{ename}.evaluate.retrieval.csls_k: {ret.csls_k} exceeds the {fit.test} held-out items "
            "the CSLS radius averages over"
        )


def _check_measure_k(where: str, measure: str, select_k: int | str | None, n: int, what: str) -> None:
    """The neighbourhood size a job uses (``select_k``, an int or a rule, else the id's k or the default) fits
    the ``n`` items it scores: k < n for the kNN family (self is excluded), k <= n for any other measure."""
    from alignkit.atlas import k_from_rule
    from alignkit.metrics import _registry

    spec = _registry.measure_spec(measure)
    info = _registry.get(spec)
    if "k" not in info.own or n < 1:
        return
    source = "select_k" if select_k is not None else f"{measure!r}"
    k = k_from_rule(select_k, n) if select_k is not None else spec.resolved["k"]
    if not isinstance(k, int):
        return
    limit = n - 1 if info.family == "knn" else n
    if k > limit:
        rule = f" ({select_k!r} at n={n})" if isinstance(select_k, str) else ""
        bound = "< n (self is excluded)" if info.family == "knn" else "<= n"
        raise ValueError(
            f"{where}: {source} gives k={k}{rule}, but the job scores only {n:,} {what}; {info.name} needs k {bound}"
        )


def _check_words(experiment: str, exp: Any, da: Any, db: Any) -> None:
    """BLI holds out whole source words: the items must be words (strings), and ``test`` words must leave
    training pairs for every size; ks and csls_k must fit the target vocabulary and the held-out words."""
    from alignkit.data.base import align_keys
    from alignkit.pipeline.jobs import pair_words

    where = f"experiments.{experiment}"
    for d, side in ((da, "a"), (db, "b")):
        if len(d) and not isinstance(d.items(0, 1)[0], str):
            raise ValueError(f"{where}.evaluate.bli: the items of space {side!r} must be words (text); got "
                             f"{type(d.items(0, 1)[0]).__name__}")  # fmt: skip
    ra, rb = align_keys(da, db, how="inner")
    src, tgt = pair_words(da, ra), pair_words(db, rb)
    n_words, n_vocab, test = int(src.max()) + 1, int(tgt.max()) + 1, exp.fit.test
    if test >= n_words:
        raise ValueError(f"{where}.fit.test: {test} held-out source words leave none of the {n_words} for training")
    n_pool = int(np.sort(np.bincount(src))[: n_words - test].sum())  # at least this many pairs stay in the pool
    too_big = [s for s in exp.fit.sizes if s > n_pool]
    if too_big:
        raise ValueError(
            f"{where}.fit.sizes: {too_big} may exceed the training pairs left after holding out {test} of "
            f"{n_words} source words (at least {n_pool} are left)"
        )
    b = exp.evaluate.bli
    if max(b.ks) > n_vocab:
        raise ValueError(f"{where}.evaluate.bli.ks: {max(b.ks)} exceeds the {n_vocab} words of the target vocabulary")
    if "csls" in b.scoring and b.csls_k > min(test, n_vocab):
        raise ValueError(
            f"{where}.evaluate.bli.csls_k: {b.csls_k} exceeds the {min(test, n_vocab)} words a CSLS radius "
            "averages over"
        )


def _check_translation(experiment: str, exp: Any) -> None:
    t = exp.evaluate.translation if exp.evaluate else None
    if t is not None and max(t.ks) > min(t.n_candidates, exp.fit.test):
        raise ValueError(
            f"experiments.{experiment}.evaluate.translation.ks: {max(t.ks)} exceeds the "
            f"{min(t.n_candidates, exp.fit.test)} candidates (n_candidates, capped at the {exp.fit.test} held-out "
            "items)"
        )


def _items_drawn(fit: Any, n_train: int) -> int:
    """Training items a fit draws: n (+ seed pairs) when paired or shuffled apart, 2n (+ seed pairs) when disjoint."""
    if fit.pairs == "paired":
        return n_train
    return (2 if fit.unpaired == "disjoint" else 1) * n_train + fit.seed_pairs


def _check_sizes(experiment: str, n_paired: int, test: int, sizes: list[int]) -> int:
    pool = n_paired - test
    if pool < 2:
        raise ValueError(
            f"experiments.{experiment}.fit.test: {test} held-out items leave {max(pool, 0)} of the {n_paired} "
            "paired items for training"
        )
    too_big = [s for s in sizes if s > pool]
    if too_big:
        raise ValueError(
            f"experiments.{experiment}.fit.sizes: {too_big} exceed the {pool} training pairs left after holding "
            f"out {test} of {n_paired}"
        )
    return pool
