"""Every loss in :mod:`alignkit.align.losses`, registered by name with its parameters and the views it takes.

``form`` says how a loss is called:

- ``pair``:    ``f(a, b)`` on two row-paired views (InfoNCE, SigLIP, L_align, m²-mix, intra-modal);
- ``views``:   ``f(V)`` on a stack ``V`` of shape (items, views, d) (MV-InfoNCE, MV-DHEL);
- ``anchor``:  ``f(anchor, [other, ...])`` (GRAM volume: the anchor and the tuple of the other views);
- ``single``:  ``f(x)`` on one view (uniformity);
- ``similarity``: ``f(x, s)``, one view and an item-similarity matrix (CM³ calibrated uniformity);
- ``regulariser``: ``R(x, z)`` of an input space and its mapped image (STRUCTURE), added by the trainer.

:func:`build_loss` turns a name into a module ``loss(a, b) -> scalar`` for the two-view trainer: pair
losses as they are, ``views`` losses on the stack of the two views, ``anchor`` losses with ``a`` as anchor.
A user's loss registers with :func:`register_loss` and is then reachable from ``HeadAligner(loss=...)``
and a run config, validated like the built-in ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.align import losses as L
from alignkit.registry import Entry, ParamSchema, Registry

FORMS = ("pair", "views", "anchor", "single", "similarity", "regulariser")
TWO_VIEW_FORMS = ("pair", "views", "anchor")


@dataclass(frozen=True)
class LossInfo(Entry[Callable[..., Any]]):
    """A registered loss: the function or module class, its parameters and the views it takes."""

    form: str = "pair"
    min_views: int = 2
    max_views: int | None = 2  # None: any number

    @property
    def two_view(self) -> bool:
        """Usable by the two-view trainer (``HeadAligner``)."""
        return self.form in TWO_VIEW_FORMS and self.min_views <= 2 and (self.max_views or 2) >= 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "form": self.form,
            "views": [self.min_views, self.max_views],
            "params": self.schema.describe(),
        }


LOSSES: Registry[LossInfo] = Registry("loss", "losses")

_SKIP = {"pair": 2, "views": 1, "anchor": 2, "single": 1, "similarity": 2, "regulariser": 2}


def register_loss(
    name: str,
    obj: Callable[..., Any],
    *,
    form: str,
    views: tuple[int, int | None] = (2, 2),
    constraints: dict[str, dict[str, Any]] | None = None,
    skip: tuple[str, ...] = (),
    description: str | None = None,
    replace: bool = False,
) -> LossInfo:
    """Register a loss: a function ``f(inputs..., **params)`` or an ``nn.Module`` class ``M(**params)``.

    The schema is the parameters after the inputs (for a class, its ``__init__``'s), typed from the
    signature; ``skip`` leaves out parameters that are not settings (generators, fixed mixing weights).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    if isinstance(obj, type):
        schema = ParamSchema.from_callable(obj.__init__, skip=skip, **(constraints or {}))
    else:
        schema = ParamSchema.from_callable(obj, skip=(*_input_names(obj, _SKIP[form]), *skip), **(constraints or {}))
    doc = (description or (obj.__doc__ or "").strip().splitlines()[0] if (description or obj.__doc__) else "").strip()
    info = LossInfo(name, obj, doc, schema, {}, form, views[0], views[1])
    return LOSSES.add(info, replace=replace)


def _input_names(func: Callable[..., Any], count: int) -> tuple[str, ...]:
    import inspect

    return tuple(list(inspect.signature(func).parameters)[:count])


class _FunctionLoss(nn.Module):
    """A loss function with fixed parameters, called on two views according to its form."""

    def __init__(self, name: str, func: Callable[..., Tensor], form: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.fn = functools.partial(func, **params)
        self.form = form

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return _call(self.fn, self.form, a, b)


class _ModuleLoss(nn.Module):
    """A loss module whose forward takes another form, adapted to ``(a, b)``."""

    def __init__(self, inner: nn.Module, form: str) -> None:
        super().__init__()
        self.inner = inner
        self.form = form

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return _call(self.inner, self.form, a, b)

    def clamp_(self) -> None:
        if hasattr(self.inner, "clamp_"):
            self.inner.clamp_()


def _call(fn: Callable[..., Tensor], form: str, a: Tensor, b: Tensor) -> Tensor:
    if form == "pair":
        return fn(a, b)
    if form == "views":
        return fn(torch.stack([a, b], dim=1))
    return fn(a, [b])  # anchor


def build_loss(name: str, **params: Any) -> nn.Module:
    """A registered two-view loss as a module ``loss(a, b) -> scalar``, its parameters validated."""
    info = LOSSES.get(name)
    if not info.two_view:
        usable = ", ".join(e.name for e in LOSSES if e.two_view)
        raise ValueError(
            f"loss {name!r} ({info.form} form, {info.min_views}..{info.max_views or 'n'} views) cannot train two "
            f"heads on paired rows; two-view losses: {usable}"
        )
    checked = info.schema.validate(params, f"loss {name!r}")
    if isinstance(info.obj, type):
        module = info.obj(**checked)
        return module if info.form == "pair" else _ModuleLoss(module, info.form)
    return _FunctionLoss(name, info.obj, info.form, checked)


def two_view_losses() -> list[str]:
    """Names of the registered losses the two-view trainer can use."""
    return [e.name for e in LOSSES if e.two_view]


_POSITIVE = {"low": 0.0, "low_open": True}

register_loss("infonce", L.InfoNCE, form="pair", constraints={"init_temperature": _POSITIVE})
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
register_loss("uniformity", L.uniformity_loss, form="single", views=(1, 1), constraints={"t": _POSITIVE})
register_loss(
    "calibrated_uniformity", L.calibrated_uniformity, form="similarity", views=(1, 1), constraints={"t": _POSITIVE}
)
register_loss(
    "structure",
    L.structure_reg,
    form="regulariser",
    views=(1, 1),
    constraints={
        "levels": {"low": 1},
        "tau": _POSITIVE,
        "margin": {"low": 0.0},
        "weighting": {"choices": ("none", "inverse")},
        "divergence": {"choices": ("code", "js")},
    },
    description="STRUCTURE regulariser R_S(x, z) between an input space and its image "
    "(add it with HeadAligner(structure=λ)).",
)

__all__ = ["FORMS", "LOSSES", "LossInfo", "build_loss", "register_loss", "two_view_losses"]
