"""Datasets: items with stable ids, optional labels and pairing keys, and a content fingerprint.

Adapters: :class:`TextLines`, :class:`TextTable` (.tsv/.csv/.jsonl), :class:`ParallelCorpus`,
:class:`ImageFolder`, :class:`IDXImages`, :class:`AudioFolder`, :class:`SpokenTexts` (speech made with
espeak-ng), :class:`HFDataset` (online) and :class:`InMemory`; the small real samples shipped with the
package are in :mod:`alignkit.data.samples`.
"""

from alignkit.data.audio import AudioFolder
from alignkit.data.base import MODALITIES, Dataset, InMemory, Subset, align_keys
from alignkit.data.hf import HFDataset
from alignkit.data.image import IDXImages, ImageFolder, read_idx, write_idx
from alignkit.data.speech import SpokenTexts, spoken_bible
from alignkit.data.text import ParallelCorpus, TextLines, TextTable

__all__ = [
    "MODALITIES",
    "AudioFolder",
    "Dataset",
    "HFDataset",
    "IDXImages",
    "ImageFolder",
    "InMemory",
    "ParallelCorpus",
    "SpokenTexts",
    "Subset",
    "TextLines",
    "TextTable",
    "align_keys",
    "read_idx",
    "spoken_bible",
    "write_idx",
]
