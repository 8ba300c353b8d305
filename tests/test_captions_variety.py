"""Captions from class labels: one of 16 templates drawn per item (seeded), so a class has many distinct captions."""

from collections import Counter

from alignkit.data.captions import CAPTION_TEMPLATES, CAPTION_VARIANTS, captions_for, class_prompts
from alignkit.data.spec import dataset_from_spec


def test_demo_captions_vary_within_each_class_and_are_seeded():
    images = dataset_from_spec("sample:fashion-mnist")
    caps = dataset_from_spec("captions:sample:fashion-mnist")
    texts = [caps[i] for i in range(len(caps))]
    assert len(texts) == len(images) == 1000 and list(caps.ids) == list(images.ids)
    assert list(caps.labels) == list(images.labels)
    names = images.class_names
    assert all(names[lab].lower() in t for t, lab in zip(texts, caps.labels, strict=True))
    assert len(set(texts)) >= 80  # 160 here: ~6 copies of each, so few rows have >= k = 10 identical copies
    assert max(Counter(texts).values()) <= 20
    per_class = Counter(lab for lab, _ in {(lab, t) for t, lab in zip(texts, caps.labels, strict=True)})
    assert min(per_class.values()) >= 12  # of 16 templates
    again = captions_for(images)
    assert [again[i] for i in range(len(again))] == texts  # seeded: the same captions every run
    other = captions_for(images, seed=1)
    assert [other[i] for i in range(len(other))] != texts
    assert len(CAPTION_VARIANTS) == 16 and CAPTION_VARIANTS[:5] == CAPTION_TEMPLATES


def test_zero_shot_prompts_keep_the_five_clip_templates():
    prompts = class_prompts(dataset_from_spec("sample:fashion-mnist"))
    assert len(prompts) == 10 * len(CAPTION_TEMPLATES) == 50
