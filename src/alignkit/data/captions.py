"""Text derived from a labelled dataset's class names: one caption per item, or prompts per class.

Image–text alignment with only class labels (Fashion-MNIST, ImageNet folders) pairs each image with a
caption of its class, and zero-shot classification embeds every class name in several prompt templates
(Radford et al., "Learning transferable visual models from natural language supervision", ICML 2021).
"""

from __future__ import annotations

from collections.abc import Sequence

from alignkit.data.base import Dataset, InMemory

#: CLIP-style templates; ``{}`` is the lower-cased class name.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a centered photo of a {}, a piece of clothing.",
    "a close-up photo of the {}.",
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


def captions_for(dataset: Dataset, templates: Sequence[str] = CAPTION_TEMPLATES) -> InMemory:
    """One caption per item: template ``i mod T`` filled with item i's class name.

    Ids, labels and pairing keys are the dataset's, so captions pair row-for-row with the items.
    """
    names, labels = _names_and_labels(dataset)
    tpl = _check_templates(templates)
    texts = [tpl[i % len(tpl)].format(names[lab].lower()) for i, lab in enumerate(labels)]
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
