"""Datasets named by a short string, for the command line and declarative runs.

=============================  ============================================================
spec                           dataset
=============================  ============================================================
``sample:bible-en``            bundled English verses (World English Bible), ids = verse refs
``sample:bible-es``            the same verses in Spanish (Reina-Valera 1909)
``sample:fashion-mnist``       bundled 1,000 Fashion-MNIST test images with labels
``lines:PATH``                 one text per non-empty line
``PATH.tsv|.csv|.jsonl[.gz]#COLUMN[,id=COL][,label=COL][,key=COL]``  a text column of a table
``PATH-images-idx3-ubyte[.gz]``  IDX (MNIST-format) images; ``,labels=PATH`` adds labels
``images:DIR``                 an image folder (labels from sub-folders)
``audio:DIR``                  a folder of .wav files (labels from sub-folders)
``speech:bible?n=N&voices=V,..&speeds=S,..[&lang=en][&seed=0][&view=text]``  bundled verses spoken by espeak-ng
``hf:NAME#COLUMN[,split=S][,config=C][,label=COL][,id=COL]``  a Hugging Face dataset (online)
``captions:SPEC``              one caption per item of a labelled dataset, from its class name
``prompts:SPEC``               every class name of a labelled dataset in every prompt template
=============================  ============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.audio import AudioFolder
from alignkit.data.base import Dataset
from alignkit.data.hf import HFDataset
from alignkit.data.image import IDXImages, ImageFolder
from alignkit.data.speech import speech_from_spec
from alignkit.data.text import TextLines, TextTable
from alignkit.registry import Entry, Registry

SAMPLES = ("bible-en", "bible-es", "fashion-mnist")
_TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl")


def _options(text: str, spec: str) -> tuple[str, dict[str, str]]:
    """``'COLUMN,key=value,...'`` -> ('COLUMN', {key: value})."""
    head, *rest = text.split(",")
    opts = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"data spec {spec!r}: expected key=value after ',', got {part!r}")
        opts[key.strip()] = value.strip()
    return head.strip(), opts


def _take(opts: dict[str, str], allowed: tuple[str, ...], spec: str) -> dict[str, str]:
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"data spec {spec!r}: unknown option(s) {unknown}; allowed: {list(allowed)}")
    return opts


Builder = Callable[[str, str, str], Dataset]  # (text after the prefix or the whole path, full spec, on_error)


@dataclass(frozen=True)
class DatasetKind(Entry[Builder]):
    """A registered kind of data spec: a ``prefix:`` kind (``lines:PATH``), or a path kind recognised by
    ``matches(path)`` (``texts.tsv#col``, ``train-images-idx3-ubyte.gz``)."""

    syntax: str = ""
    matches: Callable[[str], bool] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "syntax": self.syntax, "description": self.description}


#: Kinds of dataset a spec string can name; register your own with :func:`register_dataset`.
DATASETS: Registry[DatasetKind] = Registry("dataset kind")


def register_dataset(
    name: str,
    builder: Builder,
    *,
    syntax: str,
    description: str,
    matches: Callable[[str], bool] | None = None,
    replace: bool = False,
) -> DatasetKind:
    """Register a dataset kind. Without ``matches`` it is a prefix kind: ``NAME:REST`` calls
    ``builder(REST, spec, on_error)``; with ``matches(path)`` it claims plain paths (``builder(path, spec, ...)``)."""
    return DATASETS.add(DatasetKind(name, builder, description, syntax=syntax, matches=matches), replace=replace)


def _sample(rest: str, spec: str, on_error: str) -> Dataset:
    from alignkit.data import samples

    if rest == "bible-en":
        return samples.bible_pairs()[0]
    if rest == "bible-es":
        return samples.bible_pairs()[1]
    if rest == "fashion-mnist":
        return samples.fashion_mnist_sample()
    raise ValueError(f"unknown sample {rest!r}; bundled samples: {', '.join('sample:' + s for s in SAMPLES)}")


def _derived(kind: str) -> Builder:
    def build(rest: str, spec: str, on_error: str) -> Dataset:
        from alignkit.data.captions import captions_for, class_prompts

        inner = dataset_from_spec(rest, on_error=on_error)
        return captions_for(inner) if kind == "captions" else class_prompts(inner)

    return build


def _hf(rest: str, spec: str, on_error: str) -> Dataset:
    name, _, tail = rest.partition("#")
    column, opts = _options(tail, spec) if tail else ("", {})
    if not column:
        raise ValueError(f"data spec {spec!r}: name the column to embed, e.g. 'hf:{name}#text'")
    o = _take(opts, ("split", "config", "label", "id", "revision"), spec)
    return HFDataset(
        name,
        split=o.get("split", "train"),
        column=column,
        label_column=o.get("label"),
        id_column=o.get("id"),
        config=o.get("config"),
        revision=o.get("revision"),
    )


def _base_suffix(path_text: str) -> str:
    suffixes = Path(path_text).suffixes
    if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _idx(path: str, spec: str, on_error: str) -> Dataset:
    path_only, opts = _options(path.partition("#")[0], spec)
    o = _take(opts, ("labels", "limit"), spec)
    limit: Any = int(o["limit"]) if "limit" in o else None
    return IDXImages(path_only, o.get("labels"), limit=limit)


def _table(path: str, spec: str, on_error: str) -> Dataset:
    path_text, _, tail = path.partition("#")
    column, opts = _options(tail, spec) if tail else ("", {})
    if not column:
        raise ValueError(f"data spec {spec!r}: name the text column after '#', e.g. '{path_text}#text'")
    o = _take(opts, ("id", "label", "key"), spec)
    return TextTable(path_text, column, id_column=o.get("id"), label_column=o.get("label"), key_column=o.get("key"))


register_dataset(
    "sample", _sample, syntax="sample:NAME", description="a sample bundled with alignkit: " + ", ".join(SAMPLES)
)
register_dataset("lines", lambda rest, spec, e: TextLines(rest), syntax="lines:PATH", description="one text per line")
register_dataset(
    "images",
    lambda rest, spec, e: ImageFolder(rest, on_error=e),
    syntax="images:DIR",
    description="an image folder (labels from sub-folders)",
)
register_dataset(
    "audio",
    lambda rest, spec, e: AudioFolder(rest, on_error=e),
    syntax="audio:DIR",
    description="a folder of .wav files (labels from sub-folders)",
)
register_dataset(
    "speech",
    speech_from_spec,
    syntax="speech:bible?n=N&voices=V1,V2&speeds=S1,S2[&lang=en|es][&seed=0][&max_words=60][&view=audio|text]",
    description="bundled Bible verses spoken by espeak-ng (or, view=text, their text), ids = verse refs",
)
register_dataset(
    "hf",
    _hf,
    syntax="hf:NAME#COLUMN[,split=S][,config=C][,label=COL][,id=COL]",
    description="a Hugging Face dataset (online)",
)
register_dataset(
    "captions",
    _derived("captions"),
    syntax="captions:SPEC",
    description="one caption per item of a labelled dataset, from its class name",
)
register_dataset(
    "prompts",
    _derived("prompts"),
    syntax="prompts:SPEC",
    description="every class name of a labelled dataset in every prompt template",
)
register_dataset(
    "idx",
    _idx,
    syntax="PATH-images-idx3-ubyte[.gz][,labels=PATH][,limit=N]",
    description="IDX (MNIST-format) images",
    matches=lambda p: "idx3-ubyte" in Path(p.split(",")[0]).name,
)
register_dataset(
    "table",
    _table,
    syntax="PATH.tsv|.csv|.jsonl[.gz]#COLUMN[,id=COL][,label=COL][,key=COL]",
    description="a text column of a table",
    matches=lambda p: _base_suffix(p.partition("#")[0]) in _TABLE_SUFFIXES,
)
register_dataset(
    "text",
    lambda p, spec, e: TextLines(p.partition("#")[0]),
    syntax="PATH.txt",
    description="one text per line",
    matches=lambda p: _base_suffix(p.partition("#")[0]) == ".txt",
)


def dataset_from_spec(spec: str, *, on_error: str = "raise") -> Dataset:
    """Build the dataset a spec string names (see the module docstring for the grammar).

    A ``prefix:`` naming a registered kind goes to that kind; anything else is a path, claimed by the first
    path kind whose ``matches`` accepts it. on_error : for image and audio folders, "raise" stops at the
    first unreadable file (naming it); "skip" leaves unreadable files out and reports them.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("data spec must be a non-empty string, e.g. 'sample:bible-en' or 'texts.tsv#sentence'")
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind in DATASETS and DATASETS.get(kind).matches is None:
        return DATASETS.get(kind).obj(rest, spec, on_error)
    for entry in DATASETS:
        if entry.matches is not None and entry.matches(spec):
            return entry.obj(spec, spec, on_error)
    raise ValueError(f"cannot tell what dataset {spec!r} is. Use one of: " + ", ".join(e.syntax for e in DATASETS))
