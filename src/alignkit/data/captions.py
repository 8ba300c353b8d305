"""Text derived from a labelled dataset's class names: one caption per item, or prompts per class.

Image–text alignment with only class labels (Fashion-MNIST, ImageNet folders) pairs each image with a
caption of its class, and zero-shot classification embeds every class name in several prompt templates
(Radford et al., "Learning transferable visual models from natural language supervision", ICML 2021).

Captions carry the class and nothing else about their image. With one template per class every caption of a
class is the same row, so a kNN measure's neighbourhoods are decided by ties; :func:`captions_for` therefore
draws one of :data:`CAPTION_VARIANTS` (16 templates) per item, with a seed: about 16 distinct captions per
class. The score then measures how the image space groups the classes; whether the images share anything
beyond their class needs a null that permutes rows only within their class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alignkit.data.base import Dataset, InMemory

#: CLIP-style templates; ``{}`` is the lower-cased class name. The zero-shot prompts of :func:`class_prompts`.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a centered photo of a {}, a piece of clothing.",
    "a close-up photo of the {}.",
)

#: The caption templates of :func:`captions_for`: the CLIP-style five and eleven more product-photo phrasings.
CAPTION_VARIANTS: tuple[str, ...] = (
    *CAPTION_TEMPLATES,
    "a product image of a {}.",
    "a grayscale picture of a {}.",
    "a small picture of a {}.",
    "a cropped photo of the {}.",
    "a blurry photo of a {}.",
    "a catalogue photo of a {}.",
    "a pixelated image of a {}.",
    "a {} on a plain background.",
    "a thumbnail of a {}.",
    "a {} seen from the front.",
    "an item of clothing: a {}.",
)


def _names_and_labels(dataset: Dataset) -> tuple[list[str], list[int]]:
    names, labels = dataset.class_names, dataset.labels
    if names is None or labels is None:
        raise ValueError(f"dataset {dataset.name!r} has no labels/class names to build captions or prompts from")
    return list(names), [int(x) for x in labels]


def _check_templates(templates: Sequence[str]) -> list[str]:
    out = list(templates)
    if not out or any(not isinstance(t, str) or t.count("{}") != 1 for t in out):
        raise ValueError(f"templates must be a non-empty list of strings with exactly one '{{}}'; got {templates!r}")
    return out


def captions_for(dataset: Dataset, templates: Sequence[str] = CAPTION_VARIANTS, *, seed: int = 0) -> InMemory:
    """One caption per item: a template drawn uniformly per item (``numpy.random.default_rng(seed)``) and
    filled with the item's class name, so a class has up to T distinct captions instead of one.

    Ids, labels and pairing keys are the dataset's, so captions pair row-for-row with the items.
    """
    names, labels = _names_and_labels(dataset)
    tpl = _check_templates(templates)
    drawn = np.random.default_rng(seed).integers(len(tpl), size=len(labels))
    texts = [tpl[t].format(names[lab].lower()) for t, lab in zip(drawn, labels, strict=True)]
    return InMemory(
        texts,
        "text",
        ids=dataset.ids,
        labels=labels,
        class_names=names,
        keys=dataset.keys,
        name=f"{dataset.name}-captions",
    )


def class_prompts(dataset: Dataset, templates: Sequence[str] = CAPTION_TEMPLATES) -> InMemory:
    """Every class name in every template, class-major: row ``c·T + t`` is class c in template t.

    Labels are the class indices, so :func:`alignkit.evaluate.zero_shot` averages T rows per class.
    """
    names, _ = _names_and_labels(dataset)
    tpl = _check_templates(templates)
    texts = [t.format(name.lower()) for name in names for t in tpl]
    ids = [f"class{c}-template{t}" for c in range(len(names)) for t in range(len(tpl))]
    labels = [c for c in range(len(names)) for _ in tpl]
    return InMemory(texts, "text", ids=ids, labels=labels, class_names=names, name=f"{dataset.name}-prompts")
