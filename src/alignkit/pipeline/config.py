"""The declarative run: a YAML file validated into typed settings.

A run names *spaces* (a dataset through an encoder, every layer or some) and *experiments* on pairs of
spaces: an atlas with permutation nulls, aligners fitted at several data sizes and seeds, and their
evaluation. :func:`load_config` reads the YAML with ``yaml.safe_load`` and validates it; every error
names the key (``experiments.bible.fit.sizes.0``) and what is allowed there.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ConfigError(ValueError):
    """A run configuration that does not validate; the message lists every problem with its key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def aligner_classes() -> dict[str, type]:
    """Aligner ``type`` names usable in a config (the aligner registry), and the estimator class each builds."""
    from alignkit.align import ALIGNERS

    return {e.name: e.obj for e in ALIGNERS}


def _check_diagnostics(v: list[str], arity: tuple[int, ...], where: str) -> list[str]:
    """Diagnostic ids: known, valid parameters, taking ``arity`` arrays; no repeats."""
    from alignkit.diagnostics import diagnostic_spec, get

    for d in v:
        info = get(diagnostic_spec(d))
        if len(info.inputs) not in arity:
            kinds = " or ".join({1: "one space", 2: "a row-paired pair of spaces"}[a] for a in arity)
            raise ValueError(
                f"{where}: {d!r} takes {len(info.inputs)} arrays ({', '.join(info.inputs)}); here a diagnostic "
                f"takes {kinds}"
            )
        if info.family == "subspace" or not info.paired_rows:
            raise ValueError(f"{where}: {d!r} compares matrices, not items; call it from Python")
    if len(set(v)) != len(v):
        raise ValueError(f"diagnostics repeat: {v}")
    return v


def _check_boot(v: int) -> int:
    if v == 1:
        raise ValueError("n_boot must be 0 (no interval) or at least 2")
    return v


class SpaceDiagnoseConfig(_Strict):
    """Diagnostics of one space, on every layer (a layer profile); labels come from the space's data."""

    diagnostics: list[str] = Field(min_length=1)
    n_boot: StrictInt = Field(0, ge=0, description="subsamples for a CI per layer (0 = none)")
    sample: StrictInt | None = Field(None, ge=10, description="diagnose this many random items (None = all)")

    @field_validator("diagnostics")
    @classmethod
    def _diagnostics(cls, v: list[str]) -> list[str]:
        return _check_diagnostics(v, (1,), "diagnose.diagnostics")

    @field_validator("n_boot")
    @classmethod
    def _boot(cls, v: int) -> int:
        return _check_boot(v)


class SpaceConfig(_Strict):
    """One space: ``data`` (a dataset spec, see :func:`alignkit.data.dataset_from_spec`) through ``encoder``."""

    data: str = Field(min_length=1)
    encoder: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict, description="encoder options, e.g. input_size, prefix")
    layers: list[str] | None = Field(None, min_length=1, description="layers to keep (None = every layer)")
    diagnose: SpaceDiagnoseConfig | None = None

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        from alignkit.encoders.base import encoder_info

        encoder_info(v)  # did-you-mean on unknown ids
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from alignkit.encoders.base import check_encoder_options

        if "encoder" in info.data:
            check_encoder_options(info.data["encoder"], v)
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        from alignkit.encoders.base import encoder_info

        if v is None:
            return v
        repeated = sorted({layer for layer in v if v.count(layer) > 1})
        if repeated:
            raise ValueError(f"layers repeat: {repeated}; name each layer once")
        if "encoder" not in info.data:
            return v
        known = encoder_info(info.data["encoder"]).layer_names(info.data.get("options"))
        missing = [layer for layer in v if known is not None and layer not in known]
        if missing:
            raise ValueError(
                f"{missing} are not layers of {info.data['encoder']}; its layers: {', '.join(known or [])}"
            )
        return v

    def layer_names(self) -> list[str] | None:
        """The layers this space will hold, when known before embedding (None: only the model knows)."""
        from alignkit.encoders.base import encoder_info

        return list(self.layers) if self.layers is not None else encoder_info(self.encoder).layer_names(self.options)


def _check_measure(v: str) -> str:
    from alignkit.metrics import _registry

    _registry.measure_spec(v)  # unknown names (did-you-mean), unknown parameters, types and ranges
    return v


class AtlasConfig(_Strict):
    """Layer × layer scores of each measure on every paired item, with a max-statistic null."""

    measures: list[str] = Field(default_factory=lambda: ["mutual_knn?k=10", "cka"], min_length=1)
    n_perm: StrictInt = Field(100, ge=0)
    sample: StrictInt | None = Field(None, ge=10, description="score on this many random items (None = all)")
    n_boot: StrictInt = Field(
        0, ge=0, description="subsamples for CIs of the best pair and final × final (0 = none; 200 is a good start)"
    )
    groups: Literal["labels"] | None = Field(
        None,
        description="items are not exchangeable: group them by the data's class labels for the null and the CIs "
        "(e.g. captions made from a class name); None = every item its own group",
    )
    group_mode: Literal["within", "blocks"] = Field(
        "within", description="within: permute items inside their group; blocks: move whole groups (equal sizes)"
    )
    pool_sizes: list[StrictInt] | None = Field(
        None, description="also score the last layers on nested random pools of these sizes (alignkit.curve)"
    )
    pool_repeats: StrictInt = Field(5, ge=2, description="random pool draws per size (intervals over them)")

    @field_validator("pool_sizes")
    @classmethod
    def _pools(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        from alignkit.curves import check_pool_sizes

        return check_pool_sizes(v, 10**12)

    @field_validator("n_boot")
    @classmethod
    def _boot(cls, v: int) -> int:
        return _check_boot(v)

    @field_validator("measures")
    @classmethod
    def _measures(cls, v: list[str]) -> list[str]:
        for m in v:
            _check_measure(m)
        if len(set(v)) != len(v):
            raise ValueError(f"measures repeat: {v}")
        return v


class AlignerConfig(_Strict):
    """``type`` (see :func:`aligner_classes`) and the estimator's hyper-parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str

    @model_validator(mode="after")
    def _params(self) -> AlignerConfig:
        from alignkit.align import ALIGNERS, make_aligner

        ALIGNERS.get(self.type)  # did-you-mean on unknown types
        # unknown parameters, types, ranges, choices, then the estimator's own cross-parameter checks
        model = make_aligner(self.type, **self.params)
        if hasattr(model, "_validate_params"):  # n-way aligners need not derive from Aligner
            model._validate_params()
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FitConfig(_Strict):
    """Aligners fitted on ``sizes`` training pairs for each seed; ``test`` items are held out first.

    ``layers``: "best" selects the layer pair as STRUCTURE does (``select_measure`` on up to
    ``select_sample`` *training* pairs), "last" takes both last layers, or name them ``[layer_a, layer_b]``.
    ``heldout_classes``: classes (names or indices) whose items never enter training, for zero-shot.
    """

    aligners: dict[str, AlignerConfig] = Field(min_length=1)
    sizes: list[StrictInt] = Field(min_length=1)
    seeds: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1)
    test: StrictInt = Field(ge=1)
    layers: Literal["best", "last"] | tuple[str, str] | list[str] = "best"
    select_measure: str = "mutual_knn"
    select_k: Annotated[StrictInt, Field(ge=1)] | Literal["rice", "sqrt", "sturges"] | None = Field(
        None, description="k for select_measure: the id's own k if it has one, else the rice rule"
    )
    select_sample: StrictInt | None = Field(5000, ge=10)
    heldout_classes: list[str | int] = Field(default_factory=list)
    pairs: Literal["paired", "none"] = Field(
        "paired", description="'none': fit unsupervised aligners on unpaired sets (the correspondence thrown away)"
    )
    unpaired: Literal["shuffled", "disjoint"] = Field(
        "shuffled",
        description="with pairs: none, X and Y are the same n training items shuffled apart ('shuffled') or two "
        "disjoint draws of n items ('disjoint')",
    )
    seed_pairs: StrictInt = Field(0, ge=0, description="with pairs: none, this many known pairs given to the fit")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if any(s < 2 for s in v):
            raise ValueError(f"every size must be at least 2 pairs; got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"sizes repeat: {v}")
        return sorted(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @field_validator("aligners")
    @classmethod
    def _names(cls, v: dict[str, AlignerConfig]) -> dict[str, AlignerConfig]:
        bad = [k for k in v if not re.match(NAME_RE, k)]
        if bad:
            raise ValueError(f"aligner names must be letters, digits, '_', '.', '-'; got {bad}")
        return v

    @field_validator("select_measure")
    @classmethod
    def _select(cls, v: str) -> str:
        return _check_measure(v)

    @model_validator(mode="after")
    def _pairs(self) -> FitConfig:
        from alignkit.align import ALIGNERS

        if self.pairs == "paired" and (self.seed_pairs or self.unpaired != "shuffled"):
            raise ValueError("seed_pairs and unpaired apply to pairs: none (unsupervised fits)")
        if self.pairs == "none" and self.layers == "best":
            raise ValueError(
                "layers: best selects layers on paired training items; with pairs: none use last or name them"
            )
        wrong = [m for m, a in self.aligners.items() if ALIGNERS.get(a.type).paired != (self.pairs == "paired")]
        if wrong and self.pairs == "paired":
            raise ValueError(f"aligners {wrong} learn from unpaired sets: set pairs: none for them")
        if wrong:
            paired = ", ".join(e.name for e in ALIGNERS if not e.paired)
            raise ValueError(f"pairs: none, but aligners {wrong} need paired rows; unsupervised types: {paired}")
        return self


class RetrievalEval(_Strict):
    """Retrieval of held-out pairs both ways (Recall@k, MRR, median rank), NN and/or CSLS scoring.

    With ``views`` (n ≥ 3 spaces) every ordered pair is scored so, and each view also queries the items'
    other views together (GRAM's protocol) with each of ``any_scoring``: ``gram`` (minus the volume the query
    and the item's other views span) and ``nn`` (their mean cosine).
    """

    ks: list[Annotated[StrictInt, Field(ge=1)]] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    scoring: list[Literal["nn", "csls"]] = Field(default_factory=lambda: ["nn", "csls"], min_length=1)
    csls_k: StrictInt = Field(10, ge=1)
    any_scoring: list[Literal["gram", "nn"]] = Field(default_factory=lambda: ["gram", "nn"], min_length=1)


class ZeroShotEval(_Strict):
    """Zero-shot classification of held-out items of space A against class prompts in space ``prompts``.

    ``prompts`` names a space of class prompts (``data: prompts:SPEC``) embedded by space B's encoder.
    """

    prompts: str


class BliEval(_Strict):
    """Bilingual lexicon induction (word translation P@k, with coverage), as :func:`alignkit.evaluate.bli`.

    The held-out set is made of whole source words: ``fit.test`` counts distinct items of space A, and every pair
    of a held-out word is held out, so a word's other translations never reach training. Each held-out word
    retrieves among every distinct item of space B (the target vocabulary: all the pairs' B items); it is
    correct at k when any item B pairs it with is in the top k. CSLS's source radius is over the held-out words.
    """

    ks: list[Annotated[StrictInt, Field(ge=1)]] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    scoring: list[Literal["nn", "csls"]] = Field(default_factory=lambda: ["nn", "csls"], min_length=1)
    csls_k: StrictInt = Field(10, ge=1)


class TranslationEval(_Strict):
    """vec2vec's translation metrics (:func:`alignkit.evaluate.translation`) of held-out A items translated into
    B's own coordinates: mean cosine to the true B item, top-k among ``n_candidates`` and mean rank. Only for
    aligners that translate (``translate``)."""

    n_candidates: StrictInt = Field(1024, ge=2)
    ks: list[Annotated[StrictInt, Field(ge=1)]] = Field(default_factory=lambda: [1, 16], min_length=1)


class EvaluateConfig(_Strict):
    retrieval: RetrievalEval | None = None
    zero_shot: ZeroShotEval | None = None
    bli: BliEval | None = None
    translation: TranslationEval | None = None
    diagnose: list[str] | None = Field(
        None,
        min_length=1,
        description="diagnostics of the held-out items before and after alignment: one-space ones on each side, "
        "pair ones on the pair (e.g. modality_gap, paired_cosine, uniformity)",
    )

    @field_validator("diagnose")
    @classmethod
    def _diagnose(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_diagnostics(v, (1, 2), "evaluate.diagnose")


class ExperimentConfig(_Strict):
    """A pair of spaces (``a``, ``b``: names under ``spaces``), or ``views``: n ≥ 3 spaces aligned jointly, and
    what to do with them. An n-view experiment fits n-way aligners and evaluates retrieval; atlases compare two
    spaces (write one experiment per pair)."""

    a: str | None = None
    b: str | None = None
    views: list[str] | None = Field(None, min_length=3, description="n >= 3 spaces aligned jointly (fit, evaluate)")
    atlas: AtlasConfig | None = None
    fit: FitConfig | None = None
    evaluate: EvaluateConfig | None = None

    @property
    def spaces(self) -> list[str]:
        """The experiment's spaces in order: [a, b] or the views."""
        return list(self.views) if self.views is not None else [str(self.a), str(self.b)]

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        pair, nway = self.a is not None and self.b is not None, self.views is not None
        if pair == nway or (nway and (self.a is not None or self.b is not None)):
            raise ValueError("an experiment names two spaces (a, b) or three or more (views), not both")
        if self.atlas is None and self.fit is None:
            raise ValueError("an experiment needs 'atlas' and/or 'fit'")
        if self.evaluate is not None and self.fit is None:
            raise ValueError("'evaluate' needs 'fit' (it evaluates the fitted aligners)")
        if self.views is not None:
            self._check_views()
        elif self.fit is not None:
            from alignkit.align import ALIGNERS

            nway = [m for m, a in self.fit.aligners.items() if ALIGNERS.get(a.type).views != 2]
            if nway:
                raise ValueError(f"aligners {nway} align n spaces jointly: use them in an experiment with views")
            if isinstance(self.fit.layers, list) and len(self.fit.layers) != 2:
                raise ValueError(f"fit.layers names {len(self.fit.layers)} layers; a pair takes [layer_a, layer_b]")
        if self.evaluate is not None and self.evaluate.translation is not None and self.fit is not None:
            from alignkit.align import make_aligner

            aligners = self.fit.aligners.items()
            shared = [m for m, a in aligners if not getattr(make_aligner(a.type, **a.params), "can_translate", bool)()]
            if shared:
                raise ValueError(
                    f"evaluate.translation needs aligners that translate into B's coordinates; {shared} map both "
                    "spaces into a shared space instead (drop them or evaluate them with retrieval)"
                )
        return self

    def _check_views(self) -> None:
        from alignkit.align import ALIGNERS

        assert self.views is not None
        if len(set(self.views)) != len(self.views):
            raise ValueError(f"views repeat: {self.views}")
        if self.atlas is not None:
            raise ValueError("an atlas compares two spaces; with views, write one experiment (a, b) per pair")
        fit, ev = self.fit, self.evaluate
        if fit is not None:
            pairwise = [m for m, a in fit.aligners.items() if ALIGNERS.get(a.type).views == 2]
            if pairwise:
                nway = ", ".join(e.name for e in ALIGNERS if e.views != 2)
                raise ValueError(f"aligners {pairwise} align two spaces; with views use n-way types ({nway})")
            if fit.layers == "best" or (not isinstance(fit.layers, str) and len(fit.layers) != len(self.views)):
                raise ValueError(
                    f"fit.layers: with views, 'last' or one layer per view ({len(self.views)} names); "
                    f"got {fit.layers!r}"
                )
            if fit.pairs != "paired" or fit.heldout_classes:
                raise ValueError("with views, fit takes paired items (pairs: paired) and no heldout_classes")
            from alignkit.align import make_aligner

            for method, a in fit.aligners.items():
                model = make_aligner(a.type, **a.params)
                check = getattr(model, "_validate_params", None)
                try:  # n-way aligners that check their settings against the number of views (a loss's views)
                    if check is not None:
                        check(len(self.views))
                except TypeError:
                    pass
                except ValueError as exc:
                    raise ValueError(f"fit.aligners.{method}: {exc}") from None
        if ev is not None and (ev.zero_shot or ev.bli or ev.translation or ev.diagnose):
            raise ValueError("with views, evaluate runs retrieval only (every pair and each view against the rest)")


class RunConfig(_Strict):
    """A whole run; see the module docstring and ``docs/runs.md``."""

    name: str = Field(pattern=NAME_RE)
    seed: StrictInt = 0
    output: str = "results"
    cache: str | None = Field(None, description="embedding store folder (None: $ALIGNKIT_CACHE or ~/.cache/alignkit)")
    device: str | None = Field(None, description="encoder device (None: CUDA when present)")
    spaces: dict[str, SpaceConfig] = Field(min_length=1)
    experiments: dict[str, ExperimentConfig] = Field(
        default_factory=dict, description="pairs of spaces to compare; may be empty when spaces are only diagnosed"
    )
    report: StrictBool = True
    plugins: list[str] = Field(
        default_factory=list,
        description="Python files (.py) or module names imported first, e.g. to register your own encoders",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"device must be cpu, cuda, cuda:N (N a GPU index) or mps; got {v!r}")
        return v

    @model_validator(mode="after")
    def _references(self) -> RunConfig:
        if not self.experiments and not any(sp.diagnose for sp in self.spaces.values()):
            raise ValueError("a run needs at least one experiment, or a space with 'diagnose'")
        for key in [*self.spaces, *self.experiments]:
            if not re.match(NAME_RE, key):
                raise ValueError(f"space and experiment names must be letters, digits, '_', '.', '-'; got {key!r}")
        known = sorted(self.spaces)
        for name, exp in self.experiments.items():
            sides = ["a", "b"] if exp.views is None else [f"views.{i}" for i in range(len(exp.views))]
            for side, ref in zip(sides, exp.spaces, strict=True):
                if ref not in self.spaces:
                    raise ValueError(f"experiments.{name}.{side}: unknown space {ref!r}; spaces: {known}")
            if exp.fit is not None and not isinstance(exp.fit.layers, str):
                for space, layer in zip(exp.spaces, exp.fit.layers, strict=True):
                    known = self.spaces[space].layer_names()
                    if known is not None and layer not in known:
                        raise ValueError(
                            f"experiments.{name}.fit.layers: {layer!r} is not a layer of space {space!r}; "
                            f"its layers: {', '.join(known)}"
                        )
            zs = exp.evaluate.zero_shot if exp.evaluate else None
            if zs is not None:
                if zs.prompts not in self.spaces:
                    raise ValueError(f"experiments.{name}.evaluate.zero_shot.prompts: unknown space {zs.prompts!r}")
                b = exp.spaces[1]
                if self.spaces[zs.prompts].encoder != self.spaces[b].encoder:
                    raise ValueError(
                        f"experiments.{name}.evaluate.zero_shot.prompts: space {zs.prompts!r} must use space "
                        f"{b!r}'s encoder ({self.spaces[b].encoder}) so prompts land in B's space"
                    )
        return self

    def run_dir(self, base: str | os.PathLike[str] | None = None) -> Path:
        """``<output>/<name>``; a relative output is taken from ``base`` (default: the working folder)."""
        out = Path(self.output).expanduser()
        if not out.is_absolute() and base is not None:
            out = Path(base) / out
        return out / self.name


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "literal[", "union[")))]
    # pydantic adds the union member tried ("list[str]", "tuple[str, str]", ...); keep the path only
    parts = [p for p in parts if not re.match(r"^(list|tuple|dict|int|str|float|bool|none)\b", p)]
    return ".".join(parts) or "<root>"


def _message(err: dict[str, Any], data: Any) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key {err['loc'][-1]!r}"
    return str(err["msg"]).removeprefix("Value error, ")


def load_plugins(plugins: list[str]) -> None:
    """Import each plugin once: a ``.py`` file path or an importable module name.

    Plugins run code (like any Python script you run): they exist so a config can use encoders or
    datasets registered by your own module. Only name files you trust.
    """
    import importlib
    import importlib.util
    import sys

    for item in plugins:
        if item.endswith(".py"):
            path = Path(item).expanduser().resolve()
            name = f"alignkit_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
            if name in sys.modules:
                continue
            if not path.is_file():
                raise ConfigError(f"plugins: {item} does not exist")
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"plugins: cannot import {item}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[name]
                raise
        else:
            try:
                importlib.import_module(item)
            except ImportError as exc:
                raise ConfigError(f"plugins: cannot import module {item!r} ({exc})") from None


def validate_config(data: Any, source: str = "config", base: Path | None = None) -> RunConfig:
    """Validate a parsed mapping; raise :class:`ConfigError` listing ``key: problem`` lines.

    ``base`` is the config file's folder: relative paths in plugins, data specs, ``output`` and ``cache``
    are taken from it and made absolute (see :func:`relative_to_folder`). Without it (a mapping), relative
    plugin paths are taken from the working folder and the other paths stay as written (the working folder).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (name, spaces, experiments, ...)")
    plugins = data.get("plugins") or []
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
        resolved = [str((Path(base or ".") / p).expanduser().resolve()) if p.endswith(".py") else p for p in plugins]
        data = {**data, "plugins": resolved}
        load_plugins(resolved)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        by_key: dict[str, list[str]] = {}
        for err in exc.errors():
            msg = _message(err, data)
            if err["type"] == "extra_forbidden":
                msg += _allowed_hint(err["loc"])
            msgs = by_key.setdefault(_where(err["loc"]), [])
            if msg not in msgs:
                msgs.append(msg)
        lines = [f"  {m[0]}" if key == "<root>" else f"  {key}: {'; or: '.join(m)}" for key, m in by_key.items()]
        raise ConfigError(f"{source}: {len(lines)} problem(s)\n" + "\n".join(lines)) from None
    return cfg if base is None else relative_to_folder(cfg, base)


#: prefix dataset kinds whose whole argument is a path, and those whose argument is another data spec
_PATH_KINDS = ("lines", "images", "audio")
_NESTED_KINDS = ("captions", "prompts")


def _from_folder(path: str, folder: Path) -> str:
    """``path`` taken from ``folder`` when relative; absolute, ``~`` and empty paths stay as written."""
    if not path.strip() or Path(path.strip()).expanduser().is_absolute():
        return path
    return str(folder / path.strip())


def _idx_from_folder(spec: str, folder: Path) -> str:
    """``PATH[,labels=PATH][,limit=N]``: both paths taken from ``folder``."""
    body, hash_, tail = spec.partition("#")
    head, *options = body.split(",")
    for i, option in enumerate(options):
        key, sep, value = option.partition("=")
        if sep and key.strip() == "labels":
            options[i] = f"{key}={_from_folder(value, folder)}"
    return ",".join([_from_folder(head, folder), *options]) + hash_ + tail


def resolve_data_spec(spec: str, folder: Path) -> str:
    """A data spec with its relative paths taken from ``folder``, for the built-in kinds that hold paths
    (``lines:``, ``images:``, ``audio:``, tables, ``.txt``, IDX files, inside ``captions:``/``prompts:``).

    Kinds without paths (``sample:``, ``hf:``) and kinds registered elsewhere, whose syntax is theirs, stay as
    written; so do absolute and ``~`` paths. Job keys see datasets by content, so this changes no key.
    """
    from alignkit.data.spec import DATASETS

    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind in DATASETS and DATASETS.get(kind).matches is None:
        if kind in _PATH_KINDS:
            return f"{kind}:{_from_folder(rest, folder)}"
        if kind in _NESTED_KINDS:
            return f"{kind}:{resolve_data_spec(rest, folder)}"
        return spec
    entry = next((e for e in DATASETS if e.matches is not None and e.matches(spec)), None)
    if entry is None or entry.name not in ("table", "text", "idx"):
        return spec
    if entry.name == "idx":
        return _idx_from_folder(spec, folder)
    path, hash_, tail = spec.partition("#")
    return _from_folder(path, folder) + hash_ + tail


def _bundled_folder() -> Path:
    return Path(__file__).with_name("configs").resolve()


def relative_to_folder(cfg: RunConfig, folder: Path) -> RunConfig:
    """``cfg`` read from a file in ``folder``: relative data paths, ``output`` and ``cache`` taken from there
    (absolute), so the config runs the same from any working folder. A bundled config (``alignkit demo``)
    keeps ``output`` and ``cache`` relative to the working folder: nothing is written into the package."""
    folder = Path(folder).expanduser().resolve()
    spaces = {n: sp.model_copy(update={"data": resolve_data_spec(sp.data, folder)}) for n, sp in cfg.spaces.items()}
    update: dict[str, Any] = {"spaces": spaces}
    if folder != _bundled_folder():
        update["output"] = _from_folder(cfg.output, folder)
        if cfg.cache is not None:
            update["cache"] = _from_folder(cfg.cache, folder)
    return cfg.model_copy(update=update)


def _allowed_hint(loc: tuple[Any, ...]) -> str:
    """'; allowed: ...' for an unknown key, from the model that owns its parent."""
    model: Any = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return ""
        if part in fields:
            ann = fields[part].annotation
            model = _model_in(ann)
        else:  # a dict key (space or experiment name): the model is the dict's value type
            continue
    fields = getattr(model, "model_fields", None)
    return f"; allowed: {', '.join(fields)}" if fields else ""


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X | None`` or ``dict[str, X]`` annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_config(source: str | os.PathLike[str] | dict[str, Any]) -> RunConfig:
    """Read and validate a run config from a YAML file (``yaml.safe_load``) or a mapping."""
    if isinstance(source, dict):
        return validate_config(source)
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ConfigError(f"config file {path} is empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    return validate_config(data, str(path), path.parent)


def bundled_config(name: str = "demo") -> Path:
    """Path of a config shipped with the package (``demo``: the offline demo run)."""
    path = Path(__file__).with_name("configs") / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"no bundled config {name!r}; bundled: {known}")
    return path
