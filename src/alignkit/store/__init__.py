"""A crash-safe on-disk embedding cache: extract once, resume after a crash, read memory-mapped.

Layout (one run per encoder × dataset)::

    <root>/<encoder-fingerprint>-<dataset-fingerprint>/
        manifest.json                      shards, consolidated layers, sha256 of every file, provenance
        ids.json                           the dataset's item ids, in row order
        shard-000000-<layers-tag>.safetensors   rows [0, shard_size) of some layers (float32)
        ...
        layer-<safe-name>.npy              one consolidated (n, d) float32 matrix per layer

The cache key is (encoder identity + pooling + dtype, dataset content fingerprint); each layer is a
file of its own. Items are split into fixed shards of ``shard_size`` rows in dataset order; inside a
shard, batches are formed after a stable sort by ``encoder.length_key``, so a resumed run forms exactly
the batches an uninterrupted one would and its embeddings are identical. Every file is written to a
temporary name, fsynced and moved into place with ``os.replace`` (the manifest too), so a crash leaves
either the old or the complete new file. On resume, shards are verified against their recorded sha256
(and their declared rows and layers); missing, corrupt or mismatched ones are re-made with a warning
naming the file. A shard file that reached the disk but not the manifest (a crash between the two
writes) is adopted after its header, rows and layers check out. Consolidated files are checked (size +
sha256, remembered per process) before every read and re-made from the shards when they do not match.
Reading layers that are complete takes no lock and writes nothing, so a read-only cache can be read.

Modules: :mod:`~alignkit.store.manifest` (the typed, versioned manifest), :mod:`~alignkit.store.shards`
(encoding and writing shards), :mod:`~alignkit.store.orphans` (adoption), :mod:`~alignkit.store.verify`,
:mod:`~alignkit.store.consolidate`, :mod:`~alignkit.store.run` (a run folder under its lock),
:mod:`~alignkit.store.cache` (:class:`EmbeddingStore`), :mod:`~alignkit.store.layout` (file names).

Memory: extraction holds one shard of the requested layers (``shard_size × Σ d`` float32, twice
while it is serialised); consolidation copies shard by shard into a pre-allocated
``np.lib.format.open_memmap`` file, one layer at a time. No pickle anywhere.
"""

from alignkit.store.cache import EmbeddingStore
from alignkit.store.layout import IDS_FILE, MANIFEST, StoreWarning, default_root, safe_layer_name
from alignkit.store.manifest import (
    STORE_FORMAT,
    Manifest,
    ManifestError,
    ManifestVersionError,
    library_versions,
)

__all__ = [
    "IDS_FILE",
    "MANIFEST",
    "STORE_FORMAT",
    "EmbeddingStore",
    "Manifest",
    "ManifestError",
    "ManifestVersionError",
    "StoreWarning",
    "default_root",
    "library_versions",
    "safe_layer_name",
]
