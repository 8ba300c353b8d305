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
``hf:NAME#COLUMN[,split=S][,config=C][,label=COL][,id=COL]``  a Hugging Face dataset (online)
``captions:SPEC``              one caption per item of a labelled dataset, from its class name
``prompts:SPEC``               every class name of a labelled dataset in every prompt template
=============================  ============================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.data.audio import AudioFolder
from alignkit.data.base import Dataset
from alignkit.data.hf import HFDataset
from alignkit.data.image import IDXImages, ImageFolder
from alignkit.data.text import TextLines, TextTable

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


def dataset_from_spec(spec: str, *, on_error: str = "raise") -> Dataset:
    """Build the dataset a spec string names (see the module docstring for the grammar).

    on_error : for image and audio folders, "raise" stops at the first unreadable file (naming it);
        "skip" leaves unreadable files out and reports them.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("data spec must be a non-empty string, e.g. 'sample:bible-en' or 'texts.tsv#sentence'")
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("captions", "prompts"):
        from alignkit.data.captions import captions_for, class_prompts

        inner = dataset_from_spec(rest, on_error=on_error)
        return captions_for(inner) if kind == "captions" else class_prompts(inner)
    if sep and kind == "sample":
        from alignkit.data import samples

        if rest == "bible-en":
            return samples.bible_pairs()[0]
        if rest == "bible-es":
            return samples.bible_pairs()[1]
        if rest == "fashion-mnist":
            return samples.fashion_mnist_sample()
        raise ValueError(f"unknown sample {rest!r}; bundled samples: {', '.join('sample:' + s for s in SAMPLES)}")
    if sep and kind == "lines":
        return TextLines(rest)
    if sep and kind == "images":
        return ImageFolder(rest, on_error=on_error)
    if sep and kind == "audio":
        return AudioFolder(rest, on_error=on_error)
    if sep and kind == "hf":
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
    path_text, _, tail = spec.partition("#")
    if "idx3-ubyte" in Path(path_text.split(",")[0]).name:
        path_only, opts = _options(path_text, spec)
        o = _take(opts, ("labels", "limit"), spec)
        limit: Any = int(o["limit"]) if "limit" in o else None
        return IDXImages(path_only, o.get("labels"), limit=limit)
    suffixes = Path(path_text).suffixes
    base = (
        suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    )
    if base in _TABLE_SUFFIXES:
        column, opts = _options(tail, spec) if tail else ("", {})
        if not column:
            raise ValueError(f"data spec {spec!r}: name the text column after '#', e.g. '{path_text}#text'")
        o = _take(opts, ("id", "label", "key"), spec)
        return TextTable(path_text, column, id_column=o.get("id"), label_column=o.get("label"), key_column=o.get("key"))
    if base == ".txt":
        return TextLines(path_text)
    raise ValueError(
        f"cannot tell what dataset {spec!r} is. Use one of: sample:{{{','.join(SAMPLES)}}}, lines:PATH, "
        "PATH.tsv#COLUMN (also .csv, .jsonl), PATH-images-idx3-ubyte.gz, images:DIR, audio:DIR, hf:NAME#COLUMN, "
        "captions:SPEC, prompts:SPEC"
    )
