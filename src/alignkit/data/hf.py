"""Hugging Face ``datasets`` by name (needs the network the first time, or a local ``datasets`` cache)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alignkit._common import optional_import
from alignkit.data.audio import wav_to_float
from alignkit.data.base import MODALITIES, Dataset, update_str
from alignkit.data.image import to_rgb_or_l


def _import_datasets() -> Any:
    # The Hub is also needed (network access) the first time a dataset is used.
    return optional_import("datasets", "hf", what="HFDataset (Hugging Face datasets)")


def _feature_kind(feature: Any) -> str:
    """ "text" / "image" / "audio" / "label" / "other" from a datasets feature (by type name, version-proof)."""
    kind = type(feature).__name__
    if kind == "Image":
        return "image"
    if kind == "Audio":
        return "audio"
    if kind == "ClassLabel":
        return "label"
    if kind == "Value" and getattr(feature, "dtype", None) in ("string", "large_string"):
        return "text"
    return "other"


class HFDataset(Dataset):
    """One column of a Hugging Face dataset split: ``datasets.load_dataset(name, config, split=..., revision=...)``.

    column : the text, image or audio column (the modality follows its feature type: ``Value("string")``
    → text, ``Image`` → image, ``Audio`` → audio; pass ``modality=`` for anything else).
    label_column : integer / ``ClassLabel`` labels (class names from the ClassLabel), or strings.
    id_column : unique ids (default: the row index). Remote code runs only when ``trust_remote_code=True``
    is passed explicitly. The fingerprint combines the name, config, split, revision and column with
    ``datasets``' own content fingerprint of the split.
    """

    def __init__(
        self,
        name: str,
        split: str = "train",
        column: str = "text",
        label_column: str | None = None,
        id_column: str | None = None,
        config: str | None = None,
        revision: str | None = None,
        *,
        modality: str | None = None,
        trust_remote_code: bool = False,
        **load_options: Any,
    ) -> None:
        super().__init__()
        datasets = _import_datasets()
        kwargs: dict[str, Any] = dict(load_options)
        if revision is not None:
            kwargs["revision"] = revision
        if trust_remote_code:  # never passed unless the user asks for it
            kwargs["trust_remote_code"] = True
        where = f"Hugging Face dataset {name!r}" + (f" (config {config!r})" if config else "") + f", split {split!r}"
        try:
            ds = datasets.load_dataset(name, config, split=split, **kwargs)
        except FileNotFoundError as exc:  # datasets' DatasetNotFoundError derives from it
            raise FileNotFoundError(
                f"could not find {where}: {exc}. Check the name, config and split; loading by name also needs "
                "network access to the Hugging Face Hub the first time"
            ) from exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise ConnectionError(
                f"could not load {where}: {type(exc).__name__}: {exc}. Loading by name needs network access to "
                "the Hugging Face Hub the first time (or HF_DATASETS_OFFLINE=1 with the dataset already cached)"
            ) from exc
        except Exception as exc:  # DatasetNotFoundError, bad config/split, ... : keep the library's message
            raise ValueError(f"could not load {where}: {type(exc).__name__}: {exc}") from exc
        self.hf_name, self.split, self.column, self.config, self.revision = name, split, column, config, revision
        self.name = f"{name}" + (f"/{config}" if config else "") + f":{split}:{column}"
        self._ds = ds
        features = getattr(ds, "features", None) or {}
        names = list(getattr(ds, "column_names", None) or features)
        for what, col in (("column", column), ("label_column", label_column), ("id_column", id_column)):
            if col is not None and col not in names:
                raise ValueError(f"{where} has no {what} {col!r}; its columns: {', '.join(names)}")
        kind = _feature_kind(features[column]) if column in features else "other"
        if modality is None:
            if kind not in MODALITIES:
                raise ValueError(
                    f"{where}: cannot tell the modality of column {column!r} ({features.get(column)!r}); "
                    f"pass modality= one of {MODALITIES}"
                )
            modality = kind
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")
        self.modality = modality
        n = len(ds)
        if n == 0:
            raise ValueError(f"no items found in {where}: the split is empty")
        self._set_ids(ds[id_column] if id_column is not None else range(n), where)
        if label_column is not None:
            feat = features.get(label_column)
            class_names = list(feat.names) if feat is not None and _feature_kind(feat) == "label" else None
            self._set_labels(ds[label_column], class_names)

    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        start, stop = self._range(start, stop)
        values = self._ds[start:stop][self.column]
        if self.modality == "text":
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise ValueError(f"{self.name}: row {start + bad} holds {type(values[bad]).__name__}, not text")
            return list(values)
        if self.modality == "image":
            out = []
            for v in values:
                if isinstance(v, np.ndarray):
                    out.append(v)
                else:
                    v.load()
                    out.append(to_rgb_or_l(v))
            return out
        return [_audio_item(v, self.name) for v in values]

    def _content_hash(self, h: Any) -> None:
        update_str(h, "hf")
        for part in (self.hf_name, self.config, self.split, self.revision, self.column):
            update_str(h, str(part))
        fp = getattr(self._ds, "_fingerprint", None)
        if fp:
            update_str(h, str(fp))
        else:  # no library fingerprint: hash the items themselves
            from alignkit.data.base import hash_item

            for start in range(0, len(self), 1024):
                for item in self.items(start, min(start + 1024, len(self))):
                    hash_item(h, item)


def _audio_item(v: Any, name: str) -> tuple[np.ndarray, int]:
    """A decoded ``Audio`` value (a dict with array + sampling_rate, or a torchcodec decoder) as (mono f32, rate)."""
    if isinstance(v, dict) and "array" in v:
        arr, rate = np.asarray(v["array"]), int(v["sampling_rate"])
        if arr.ndim == 2:  # channels first in datasets
            arr = arr.mean(axis=0)
    elif hasattr(v, "get_all_samples"):
        samples = v.get_all_samples()
        arr, rate = np.asarray(samples.data).mean(axis=0), int(samples.sample_rate)
    else:
        raise ValueError(f"{name}: cannot read an audio value of type {type(v).__name__}")
    return wav_to_float(arr.astype(np.float32)), rate
