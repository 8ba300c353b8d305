"""Every loss in :mod:`alignkit.align.losses`, registered by name with its parameters and the views it takes,
and the one way a loss specification (a name or a weighted combination) becomes what the trainer runs.

``form`` says how a loss is called:

- ``pair``:    ``f(a, b)`` on two row-paired views (InfoNCE, SigLIP, L_align, m²-mix, intra-modal); on n ≥ 2
  views it is the sum over the n(n−1)/2 view pairs (the pairwise baseline), and it can take missing views;
- ``views``:   ``f(V)`` on a stack ``V`` of shape (items, views, d) (MV-InfoNCE, MV-DHEL, triple contrastive);
- ``anchor``:  ``f(anchor, [other, ...])`` (GRAM volume: the anchor view and the tuple of the others); the extra
  parameter ``anchor`` (default 0) says which view is the anchor;
- ``single``:  ``f(x)`` on one view (uniformity);
- ``similarity``: ``f(x, s)``, one view and an item-similarity matrix (CM³ calibrated uniformity);
- ``regulariser``: ``R(x, z)`` of an input space and its mapped image (STRUCTURE), added by the trainer.

A loss specification is a registered name (``"infonce"``, or an id with parameters,
``"infonce?init_temperature=0.05"``) or a mapping from names to a weight or to a mapping of the weight and
parameters::

    {"infonce": 1.0, "structure": 10.0}
    {"infonce": {"weight": 1.0, "init_temperature": 0.05}, "structure": {"weight": 10.0, "levels": 2}}

:func:`build_loss_plan` validates one for a number of views (unknown name with the list, bad weight, a form
or view count that cannot be used, missing views a loss cannot take) and returns a :class:`LossPlan`: the
module the trainer calls as ``loss(*views)`` (``loss(*views, mask=mask)`` with missing views), a
:class:`~alignkit.align.losses.CombinedLoss` when there are several terms or a weight ≠ 1, and the STRUCTURE term
as a :class:`~alignkit.align.losses.StructureRegularizer` with λ = its weight (it needs the frozen inputs, so
the trainer adds it; ``HeadAligner(structure=λ)`` is a shorthand for that same term).

A user's loss registers with :func:`register_loss` and is then reachable from ``HeadAligner(loss=...)``,
``MultiHeadAligner(loss=...)``, ``fit_heads`` and a run config, alone or in a combination, validated like the
built-in ones.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.align import losses as L
from alignkit.registry import Entry, Param, ParamSchema, Registry, parse_id

FORMS = ("pair", "views", "anchor", "single", "similarity", "regulariser")
#: forms a trainer can call on the head outputs of n ≥ 2 views
TRAINABLE_FORMS = ("pair", "views", "anchor")
#: the only regulariser a combination may hold (it is added on the frozen inputs by the trainer)
STRUCTURE = "structure"

LossSpec = str | Mapping[str, Any]


@dataclass(frozen=True)
class LossInfo(Entry[Callable[..., Any]]):
    """A registered loss: the function or module class, its parameters and the views it takes."""

    form: str = "pair"
    min_views: int = 2
    max_views: int | None = 2  # None: any number

    def accepts(self, n_views: int) -> bool:
        """Usable by the trainer on ``n_views`` head outputs."""
        return self.form in TRAINABLE_FORMS and self.min_views <= n_views <= (self.max_views or n_views)

    @property
    def missing_views(self) -> bool:
        """Can train on items with missing views (pair losses: only the pairs where both views are present)."""
        return self.form == "pair"

    def views_text(self) -> str:
        return f"{self.min_views}+" if self.max_views is None else f"{self.min_views}..{self.max_views}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "form": self.form,
            "views": [self.min_views, self.max_views],
            "missing_views": self.missing_views,
            "params": self.schema.describe(),
        }


LOSSES: Registry[LossInfo] = Registry("loss", "losses")

_SKIP = {"pair": 2, "views": 1, "anchor": 2, "single": 1, "similarity": 2, "regulariser": 2}
_ANCHOR = Param("anchor", ("int",), default=0, low=0, doc="index of the anchor view")


def register_loss(
    name: str,
    obj: Callable[..., Any],
    *,
    form: str,
    views: tuple[int, int | None] | None = None,
    constraints: dict[str, dict[str, Any]] | None = None,
    skip: tuple[str, ...] = (),
    description: str | None = None,
    replace: bool = False,
) -> LossInfo:
    """Register a loss: a function ``f(inputs..., **params)`` or an ``nn.Module`` class ``M(**params)``.

    The schema is the parameters after the inputs (for a class, its ``__init__``'s), typed from the
    signature; ``skip`` leaves out parameters that are not settings (generators, fixed mixing weights).
    ``views`` = (fewest, most or None for any): default (2, None) for the ``pair`` form (summed over view pairs),
    (2, 2) otherwise. ``anchor``-form losses get the extra parameter ``anchor`` (the anchor view, default 0).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    if views is None:
        views = (2, None) if form == "pair" else (2, 2)
    lo, hi = views
    if isinstance(lo, bool) or not isinstance(lo, int) or lo < 1 or (hi is not None and hi < lo):
        raise ValueError(f"views must be (min >= 1, max >= min or None); got {views!r}")
    extra = (_ANCHOR,) if form == "anchor" else ()
    if isinstance(obj, type):
        schema = ParamSchema.from_callable(obj.__init__, skip=skip, extra=extra, **(constraints or {}))
    else:
        inputs = _input_names(obj, _SKIP[form])
        schema = ParamSchema.from_callable(obj, skip=(*inputs, *skip), extra=extra, **(constraints or {}))
    doc = (description or (obj.__doc__ or "").strip().splitlines()[0] if (description or obj.__doc__) else "").strip()
    info = LossInfo(name, obj, doc, schema, {}, form, lo, hi)
    return LOSSES.add(info, replace=replace)


def _input_names(func: Callable[..., Any], count: int) -> tuple[str, ...]:
    import inspect

    return tuple(list(inspect.signature(func).parameters)[:count])


# ----------------------------------------------------------------------------------------- adapters


def _pairwise(fn: Callable[..., Tensor], views: Sequence[Tensor], mask: Tensor | None) -> Tensor:
    """``Σ_{a<b} f(V_a, V_b)``; with ``mask`` (items × views) each pair uses the rows where both views are
    present, and a pair with fewer than 2 such rows is left out (0 when none is left)."""
    total: Tensor | None = None
    for a, b in itertools.combinations(range(len(views)), 2):
        va, vb = views[a], views[b]
        if mask is not None:
            rows = mask[:, a] & mask[:, b]
            if int(rows.sum()) < 2:
                continue
            va, vb = va[rows], vb[rows]
        value = fn(va, vb)
        total = value if total is None else total + value
    if total is None:  # no pair had two rows: a zero that still belongs to the graph
        return sum(v.sum() for v in views) * 0.0  # type: ignore[return-value]
    return total


def _call(fn: Callable[..., Tensor], form: str, views: Sequence[Tensor], mask: Tensor | None, anchor: int) -> Tensor:
    if form == "pair":
        return _pairwise(fn, views, mask)
    if mask is not None:
        raise ValueError(f"a {form}-form loss cannot take missing views (mask); use a pair-form loss")
    if form == "views":
        return fn(torch.stack(list(views), dim=1))
    return fn(views[anchor], [v for k, v in enumerate(views) if k != anchor])  # anchor


class _FunctionLoss(nn.Module):
    """A loss function with fixed parameters, called on n views according to its form."""

    def __init__(
        self, name: str, func: Callable[..., Tensor], form: str, params: dict[str, Any], anchor: int = 0
    ) -> None:
        super().__init__()
        self.name = name
        self.fn = functools.partial(func, **params)
        self.form = form
        self.anchor = anchor
        self.accepts_mask = form == "pair"

    def forward(self, *views: Tensor, mask: Tensor | None = None) -> Tensor:
        return _call(self.fn, self.form, views, mask, self.anchor)


class _ModuleLoss(nn.Module):
    """A loss module called on n views according to its form (a pair module on more than two views, or with
    missing views, is summed over view pairs)."""

    def __init__(self, inner: nn.Module, form: str, anchor: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.form = form
        self.anchor = anchor
        self.accepts_mask = form == "pair"

    def forward(self, *views: Tensor, mask: Tensor | None = None) -> Tensor:
        return _call(self.inner, self.form, views, mask, self.anchor)

    def clamp_(self) -> None:
        if hasattr(self.inner, "clamp_"):
            self.inner.clamp_()


# --------------------------------------------------------------------------------------- validation


def _usable(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _check_usable(info: LossInfo, n_views: int, missing: bool, owner: str) -> None:
    """A clear error when ``info`` cannot train heads on ``n_views`` views (or on missing views)."""
    if info.form == "regulariser":
        raise ValueError(
            f"{owner}: {info.name!r} is a regulariser on the frozen inputs, not a loss on the head outputs; give it "
            f"a weight next to a loss ({{'infonce': 1.0, {info.name!r}: 10.0}})"
        )
    if not info.accepts(n_views):
        usable = [e.name for e in LOSSES if e.accepts(n_views)]
        why = (
            f"a {info.form}-form loss, which cannot train heads on row-paired views"
            if info.form not in TRAINABLE_FORMS
            else f"it takes {info.views_text()} views"
        )
        raise ValueError(
            f"{owner}: loss {info.name!r} cannot be used with {n_views} views ({why}); losses for {n_views} "
            f"views: {_usable(usable)}"
        )
    if missing and not info.missing_views:
        usable = [e.name for e in LOSSES if e.accepts(n_views) and e.missing_views]
        raise ValueError(
            f"{owner}: loss {info.name!r} ({info.form} form) cannot take missing views (a mask); losses that can "
            f"(pair losses, summed over the view pairs where both are present): {_usable(usable)}"
        )


def build_loss(name: str, n_views: int = 2, missing: bool = False, **params: Any) -> nn.Module:
    """A registered loss as a module ``loss(*views)`` on ``n_views`` head outputs, its parameters validated.

    ``name`` may be an id (``"infonce?init_temperature=0.05"``); ``params`` override the id's. ``missing=True``
    builds the module for the missing-views protocol ``loss(*views, mask=mask)`` (pair losses only). On two
    complete views a pair-form module class is returned as it is (``loss(a, b)``).
    """
    spec = LOSSES.spec(name, **params)
    info = LOSSES.get(spec.name)
    _check_usable(info, n_views, missing, f"loss {spec.name!r}")
    checked = spec.kwargs
    anchor = int(checked.pop("anchor", 0))
    if info.form == "anchor" and anchor >= n_views:
        raise ValueError(f"loss {spec.name!r}: anchor must be a view index < {n_views}; got {anchor}")
    if isinstance(info.obj, type):
        module = info.obj(**checked)
        if info.form == "pair" and n_views == 2 and not missing:
            return module
        return _ModuleLoss(module, info.form, anchor)
    return _FunctionLoss(spec.name, info.obj, info.form, checked, anchor)


def losses_for(n_views: int, missing: bool = False) -> list[str]:
    """Names of the registered losses that can train heads on ``n_views`` views (with missing views)."""
    return [e.name for e in LOSSES if e.accepts(n_views) and (e.missing_views or not missing)]


# ----------------------------------------------------------------------------------- combinations


@dataclass(frozen=True)
class LossTerm:
    """One validated term of a loss specification: registered name, weight and explicit parameters."""

    name: str
    weight: float
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "params": dict(self.params)}


@dataclass
class LossPlan:
    """What the trainer runs for a loss specification: ``loss`` on the head outputs (called
    ``loss(*views)``, or ``loss(*views, mask=mask)``) and the STRUCTURE term (None without one)."""

    terms: tuple[LossTerm, ...]
    loss: nn.Module
    structure: L.StructureRegularizer | None = None


_WEIGHT = Param("weight", ("float",), low=0.0)


def _term_value(key: str, value: Any, owner: str) -> tuple[float, dict[str, Any]]:
    if isinstance(value, Mapping):
        params = dict(value)
        weight = params.pop("weight", 1.0)
    else:
        weight, params = value, {}
    return float(_WEIGHT.check(weight, f"{owner}[{key!r}]")), params


def parse_loss(
    spec: Any,
    n_views: int = 2,
    *,
    missing: bool = False,
    loss_kwargs: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    owner: str = "loss",
) -> tuple[LossTerm, ...]:
    """Validate a loss specification for ``n_views`` views and return its terms (in the given order).

    ``spec``: a registered name or id, or a mapping ``{name: weight}`` / ``{name: {"weight": w, param: value}}``
    (weight ≥ 0, default 1). ``loss_kwargs`` are the parameters of a single named loss (not allowed with a
    mapping: give each loss its own). ``defaults`` are per-loss parameters used where the spec does not set
    them (``HeadAligner`` sets SigLIP's ``reduction``). Errors name ``owner``.
    """
    if isinstance(spec, str):
        items: list[tuple[str, float, dict[str, Any]]] = [(spec, 1.0, dict(loss_kwargs or {}))]
    elif isinstance(spec, Mapping):
        if loss_kwargs:
            raise ValueError(
                f"loss_kwargs applies to a single loss name; in a combination give each loss its parameters, "
                f"e.g. {owner}={{'infonce': {{'weight': 1.0, 'init_temperature': 0.05}}}}"
            )
        if not spec:
            raise ValueError(f"{owner} is an empty mapping; name at least one loss, e.g. {{'infonce': 1.0}}")
        items = []
        for key, value in spec.items():
            if not isinstance(key, str):
                raise TypeError(f"{owner}: loss names must be strings; got {key!r}")
            items.append((key, *_term_value(key, value, owner)))
    else:
        raise TypeError(
            f"{owner} must be a loss name or a mapping {{name: weight}} / {{name: {{'weight': w, param: value}}}}; "
            f"got {type(spec).__name__}"
        )
    terms: list[LossTerm] = []
    for key, weight, params in items:
        name = LOSSES.get(key).name  # the did-you-mean error with the list of losses
        _, given = parse_id(key, "loss")
        # precedence: explicit parameters > the id's > the estimator's defaults
        merged = {**dict((defaults or {}).get(name, {})), **given, **params}
        typed = LOSSES.spec(name, **merged).kwargs
        info = LOSSES.get(name)
        if info.form == "regulariser":
            if name != STRUCTURE:
                raise ValueError(
                    f"{owner}: regulariser {name!r} is not supported in a combination; only {STRUCTURE!r} is"
                )
        else:
            _check_usable(info, n_views, missing, owner)
        if info.form == "anchor" and typed.get("anchor", 0) >= n_views:
            raise ValueError(f"{owner}: loss {name!r}: anchor must be a view index < {n_views}; got {typed['anchor']}")
        if any(t.name == name for t in terms):
            raise ValueError(f"{owner}: loss {name!r} is given twice")
        terms.append(LossTerm(name, weight, typed))
    if all(LOSSES.get(t.name).form == "regulariser" for t in terms):
        raise ValueError(f"{owner}: a combination needs a loss next to {STRUCTURE!r}, e.g. {{'infonce': 1.0}}")
    return tuple(terms)


def build_loss_plan(
    spec: Any,
    n_views: int = 2,
    *,
    missing: bool = False,
    loss_kwargs: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
    owner: str = "loss",
) -> LossPlan:
    """Validate a loss specification (see :func:`parse_loss`) and build what the trainer runs.

    One term of weight 1 is its module itself (so ``"infonce"`` and ``{"infonce": 1.0}`` train identically);
    several terms, or a weight ≠ 1, form a :class:`~alignkit.align.losses.CombinedLoss` (history logs each term
    unweighted as ``loss/<name>``). The ``structure`` term becomes ``StructureRegularizer(λ=weight, **params)``.
    """
    terms = parse_loss(spec, n_views, missing=missing, loss_kwargs=loss_kwargs, defaults=defaults, owner=owner)
    structure = None
    built: dict[str, tuple[nn.Module, float]] = {}
    for t in terms:
        if t.name == STRUCTURE:
            structure = L.StructureRegularizer(t.weight, **t.params)
        else:
            built[t.name] = (build_loss(t.name, n_views, missing, **t.params), t.weight)
    if len(built) == 1 and next(iter(built.values()))[1] == 1.0:
        module = next(iter(built.values()))[0]
    else:
        module = L.CombinedLoss(built)  # type: ignore[arg-type]
    return LossPlan(terms, module, structure)


def structure_term(lam: float, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The combination entry of the ``structure=λ, structure_kwargs=...`` shorthand: ``{"weight": λ, **kwargs}``."""
    return {"weight": lam, **dict(kwargs or {})}


_POSITIVE = {"low": 0.0, "low_open": True}

register_loss("infonce", L.InfoNCE, form="pair", constraints={"init_temperature": _POSITIVE})
register_loss(
    "pairwise_infonce",
    L.InfoNCE,
    form="pair",
    constraints={"init_temperature": _POSITIVE},
    description="Symmetric InfoNCE summed over all view pairs, one learnable temperature (the n-view baseline; "
    "the same loss as 'infonce', which is also summed over view pairs on n views).",
)
register_loss(
    "siglip",
    L.SigLIP,
    form="pair",
    constraints={
        "reduction": {"choices": ("mean", "sum_rows")},
        "impl": {"choices": L.SIGLIP_IMPLS},
        "block_size": {"low": 1},
    },
)
register_loss("alignment", L.alignment_loss, form="pair", constraints={"alpha": _POSITIVE})
register_loss(
    "mixup_negatives",
    L.mixup_negatives_loss,
    form="pair",
    skip=("generator", "lam"),
    constraints={"beta": _POSITIVE, "temperature": _POSITIVE},
)
register_loss("intra_modal", L.intra_modal_loss, form="pair", constraints={"temperature": _POSITIVE})
register_loss(
    "gram",
    L.GramVolumeLoss,
    form="anchor",
    views=(2, None),
    constraints={"init_temperature": _POSITIVE, "label_smoothing": {"low": 0.0, "high": 1.0, "high_open": True}},
)
register_loss("mv_infonce", L.mv_info_nce, form="views", views=(2, None), constraints={"temperature": _POSITIVE})
register_loss("mv_dhel", L.mv_dhel, form="views", views=(2, None), constraints={"temperature": _POSITIVE})
register_loss(
    "triple",
    L.triple_contrastive,
    form="views",
    views=(2, None),
    constraints={"temperature": _POSITIVE, "intra_weight": {"low": 0.0}},
)
register_loss("uniformity", L.uniformity_loss, form="single", views=(1, 1), constraints={"t": _POSITIVE})
register_loss(
    "calibrated_uniformity", L.calibrated_uniformity, form="similarity", views=(1, 1), constraints={"t": _POSITIVE}
)
register_loss(
    STRUCTURE,
    L.StructureRegularizer,
    form="regulariser",
    views=(1, 1),
    skip=("lam",),
    constraints={
        "levels": {"low": 1},
        "tau": _POSITIVE,
        "margin": {"low": 0.0},
        "weighting": {"choices": ("none", "inverse")},
        "divergence": {"choices": ("code", "js")},
        "warmup_steps": {"low": 0},
        "warmup_fraction": {"low": 0.0, "high": 1.0},
    },
    description="STRUCTURE regulariser R_S(x, z) between each input space and its image, averaged over the views; "
    "its weight is λ (with the warm-up λ_t = λ·min(1, t/warmup)): {'infonce': 1.0, 'structure': 10.0}, or "
    "HeadAligner(structure=λ).",
)

__all__ = [
    "FORMS",
    "LOSSES",
    "STRUCTURE",
    "TRAINABLE_FORMS",
    "LossInfo",
    "LossPlan",
    "LossTerm",
    "build_loss",
    "build_loss_plan",
    "losses_for",
    "parse_loss",
    "register_loss",
    "structure_term",
]
