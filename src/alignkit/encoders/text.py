"""Text encoders over Hugging Face ``transformers`` and ``sentence-transformers``.

* :class:`HFTextEncoder` (ids ``"hf:<model name or local path>"``) runs ``transformers.AutoModel`` with
  ``output_hidden_states=True`` and pools every hidden state: layers ``embeddings`` (hidden_states[0]),
  ``layer_1`` … ``layer_L``. Pooling is ``mean`` (over real tokens, padding excluded), ``cls`` (the first
  real token: position 0 under right padding) or ``last`` (the last *non-pad* token, under right or left
  padding — reading position −1 under right padding would read a pad).
* :class:`SentenceTransformerEncoder` (ids ``"st:<model name or local path>"``) returns the library's own
  sentence embedding (its pooling, dense and normalisation modules) as layer ``final``, plus every hidden
  layer of its transformer pooled by the model's own Pooling module as ``layer_0`` … ``layer_L``, all
  from one forward pass (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019).

Both sort a call's texts by length (``len(text)``, a token-count estimate) before batching, so each
batch holds texts of similar length and little padding; results come back in the caller's order.
Heavy libraries are imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from alignkit._common import optional_import
from alignkit.encoders.base import Encoder, register_family, sha256_file

POOLINGS = ("mean", "cls", "last")

#: files in a model folder that do not change what the model computes (left out of the weights hash)
_HASH_SKIP_SUFFIXES = (".md", ".lock", ".metadata")


def _text_length(item: Any) -> int:
    return len(item) if isinstance(item, str) else 0


def hash_model_folder(path: str | os.PathLike[str]) -> str:
    """sha256 over every file of a model folder (relative name + content hash), docs and dot-files left out."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.suffix.lower() not in _HASH_SKIP_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(f"model folder {str(root)!r} holds no files to hash")
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(str(p)).encode() + b"\n")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ pooling


def pool_hidden(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states ``hidden[B, T, d]`` to ``[B, d]`` float32 using ``mask[B, T]`` (1 = real token).

    ``mean`` averages the real tokens only; ``cls`` takes the first real token; ``last`` the last real
    token (correct under left and right padding).
    """
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"pool_hidden: hidden must be [B, T, d] and mask [B, T]; got {tuple(hidden.shape)}, {tuple(mask.shape)}"
        )
    h = hidden.float()
    m = mask.to(device=h.device)
    if pooling == "mean":
        w = m.to(h.dtype).unsqueeze(1)  # [B, 1, T]
        total = torch.bmm(w, h).squeeze(1)
        return total / w.sum(dim=2).clamp_min(1.0)
    if pooling == "cls":
        idx = m.to(torch.int32).argmax(dim=1)  # first real token
    elif pooling == "last":
        T = m.shape[1]
        idx = (T - 1) - m.to(torch.int32).flip(1).argmax(dim=1)  # last real token
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    return h[torch.arange(h.shape[0], device=h.device), idx.to(torch.long)]


# ------------------------------------------------------------------------------------------ common base


class TextEncoder(Encoder):
    """Shared machinery: item checks, prefix, length-sorted batching, progress, order restored."""

    modality = "text"
    default_batch_size = 32

    def __init__(
        self,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        prefix: str = "",
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string; got {type(prefix).__name__}")
        self.prefix = prefix
        self.length_key: Callable[[Any], int] | None = _text_length

    def output_options(self) -> dict[str, Any]:
        """The text prefix and the truncation length change the embeddings: both key the cache."""
        return {"prefix": self.prefix, "max_length": getattr(self, "max_length", None)}

    def _check_texts(self, items: Sequence[Any]) -> list[str]:
        if isinstance(items, str):
            raise TypeError(f"encoder {self.id!r} takes a sequence of strings; got a single str (wrap it in a list)")
        texts = list(items)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"encoder {self.id!r} takes text items (str); item {i} is {type(t).__name__}")
        return texts

    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Pooled embeddings ``{layer: Tensor[len(items), d]}`` (float32, CPU) in the order of ``items``;
        batches are formed longest text first (stable), so each holds texts of similar length."""
        names = self.check_layers(layers)
        texts = self._check_texts(items)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        return self._batched(
            texts, names, lambda batch, _start: self._encode_batch([self.prefix + t for t in batch], names), order
        )

    @abstractmethod
    def _encode_batch(self, texts: list[str], layers: list[str]) -> dict[str, torch.Tensor]:
        """Pooled outputs of one batch of texts for ``layers``."""

    def _inference(self) -> contextlib.AbstractContextManager[Any]:
        return torch.inference_mode()


class PretrainedTextEncoder(TextEncoder):
    """A text model given by a Hugging Face model id or a local folder: its id, loading options and identity."""

    name_or_path: str
    revision: str | None

    def _set_source(
        self,
        name_or_path: str | os.PathLike[str],
        family: str,
        revision: str | None,
        encoder_id: str | None,
        identity_extra: dict[str, Any] | None,
    ) -> None:
        self.name_or_path = str(name_or_path)
        self.revision = revision
        self.id = encoder_id or f"{family}:{self.name_or_path}"
        self._identity_extra = dict(identity_extra or {})
        self._identity_cache: dict[str, Any] | None = None

    def _local_files(self, local_files_only: bool | None) -> dict[str, Any]:
        """The loader's ``local_files_only`` (always on for a local folder; else as given, when given)."""
        is_local = Path(self.name_or_path).is_dir()
        if local_files_only is None and not is_local:
            return {}
        return {"local_files_only": bool(local_files_only) or is_local}

    @contextlib.contextmanager
    def _loading(self, library: str, folder_holds: str) -> Iterator[None]:
        """Re-raise a loader's OSError saying what ``name_or_path`` must be."""
        try:
            yield
        except OSError as exc:
            raise OSError(
                f"could not load the {library} model {self.name_or_path!r} (a Hugging Face model id or a "
                f"local folder with {folder_holds}): {exc}"
            ) from exc

    def _model_config(self) -> Any:
        """The transformers config of the loaded model (None when there is none)."""
        return None

    def identity(self) -> dict[str, Any]:
        """Model id/path and revision, the commit hash when the config has one, a files hash for a local
        folder; ``identity_extra`` fields (given by wrappers such as the offline encoders) override these."""
        if self._identity_cache is None:
            ident: dict[str, Any] = {"id": self.id, "model": self.name_or_path, "revision": self.revision}
            commit = getattr(self._model_config(), "_commit_hash", None)
            if commit:
                ident["commit_hash"] = commit
            if Path(self.name_or_path).is_dir():
                ident["weights_sha256"] = hash_model_folder(self.name_or_path)
            self._identity_cache = {**ident, **self._identity_extra}
        return dict(self._identity_cache)


def _text_config(config: Any) -> Any:
    """The text part of a (possibly multimodal) transformers config."""
    return getattr(config, "text_config", None) or config


def _no_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' context that skips random weight init (the weights are loaded right after)."""
    for mod in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            return importlib.import_module(mod).no_init_weights()
        except (ImportError, AttributeError):
            continue
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------------ transformers


class HFTextEncoder(PretrainedTextEncoder):
    """Every hidden state of a ``transformers`` model, pooled over tokens.

    Layers: ``embeddings`` (the embedding output), ``layer_1`` … ``layer_L``. Encoder–decoder models
    (T5, BART, …) use their encoder. Runs on ``device`` under ``torch.inference_mode()``, in ``dtype``
    (the model's weights are cast; pooling accumulates in float32); outputs are float32 on the CPU.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        pooling: str = "mean",
        prefix: str = "",
        max_length: int | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
        local_files_only: bool | None = None,
        model: Any = None,
        tokenizer: Any = None,
        encoder_id: str | None = None,
        identity_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, prefix=prefix, progress=progress)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
        self.pooling = pooling
        self._set_source(name_or_path, "hf", revision, encoder_id, identity_extra)
        if (model is None) != (tokenizer is None):
            raise ValueError("give both model= and tokenizer= (or neither, to load them from name_or_path)")
        if model is None:
            transformers = optional_import("transformers", "text", what=f"encoder {self.id!r}")
            kwargs = {
                "revision": revision,
                "trust_remote_code": bool(trust_remote_code),
                **self._local_files(local_files_only),
            }
            with self._loading("transformers", "config.json and weights"):
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.name_or_path, **kwargs)
                model = transformers.AutoModel.from_pretrained(self.name_or_path, **kwargs)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()
        if tokenizer.pad_token is None:  # decoder-only models often have none; pads are masked out anyway
            if tokenizer.eos_token is None:
                raise ValueError(f"tokenizer of {self.name_or_path!r} has neither a pad nor an eos token")
            tokenizer.pad_token = tokenizer.eos_token
        self.model = self._place(model)
        self.tokenizer = tokenizer
        self.max_length = max_length or self._default_max_length()
        self._names, self._dims = self._discover_layers()

    # -- layers ------------------------------------------------------------------------------

    def _hidden_layer_names(self, n_states: int) -> list[str]:
        return ["embeddings"] + [f"layer_{i}" for i in range(1, n_states)]

    def _discover_layers(self) -> tuple[list[str], dict[str, int]]:
        """Layer names and widths: from the config when it says, else from a one-text probe."""
        cfg = _text_config(self.model.config)
        n_layers = getattr(cfg, "num_hidden_layers", None)
        width = getattr(cfg, "hidden_size", None)
        if isinstance(n_layers, int) and isinstance(width, int):
            names = self._hidden_layer_names(n_layers + 1)
            return names, dict.fromkeys(names, width)
        states = self._forward(["a"])[1]
        names = self._hidden_layer_names(len(states))
        return names, {n: int(s.shape[-1]) for n, s in zip(names, states, strict=True)}

    @property
    def layer_names(self) -> list[str]:
        return list(self._names)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def _default_max_length(self) -> int | None:
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:  # tokenizers without a limit say 1e30
            return tok_max
        pos = getattr(self.model.config, "max_position_embeddings", None)
        return int(pos) if isinstance(pos, int) and pos > 0 else None

    def _model_config(self) -> Any:
        return self.model.config

    # -- forward -----------------------------------------------------------------------------

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def _forward(self, texts: list[str]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(attention mask, hidden states) for one batch."""
        enc = self._tokenize(texts)
        with self._inference():
            out = self.model(**enc, output_hidden_states=True, return_dict=True)
        states = out.hidden_states
        if states is None:
            raise RuntimeError(f"model {self.name_or_path!r} returned no hidden states")
        return enc["attention_mask"], tuple(states)

    def _encode_batch(self, texts: list[str], layers: list[str]) -> dict[str, torch.Tensor]:
        mask, states = self._forward(texts)
        index = {name: i for i, name in enumerate(self._hidden_layer_names(len(states)))}
        return {name: pool_hidden(states[index[name]], mask, self.pooling) for name in layers}


# ------------------------------------------------------------------------------------------ sentence-transformers


class SentenceTransformerEncoder(PretrainedTextEncoder):
    """A sentence-transformers model: ``final`` = its own embedding, ``layer_k`` = hidden state k, model-pooled.

    ``final`` is exactly what ``SentenceTransformer.encode`` returns (its Pooling, any Dense, and its
    Normalize module when the model has one). ``layer_0`` (embeddings) … ``layer_L`` are the transformer's
    hidden states, each passed through the model's own Pooling module (so the mode — mean, cls, max,
    last token, … — is the model's). ``layer_L`` pooled equals the sentence embedding before any
    Dense/Normalize module. All layers come from one forward pass.
    """

    default_batch_size = 32

    def __init__(
        self,
        name_or_path: str | os.PathLike[str],
        *,
        prefix: str = "",
        max_length: int | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
        local_files_only: bool | None = None,
        encoder_id: str | None = None,
        identity_extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, prefix=prefix, progress=progress)
        st = optional_import(
            "sentence_transformers", "text", what="the sentence-transformers encoder", package="sentence-transformers"
        )
        self._set_source(name_or_path, "st", revision, encoder_id, identity_extra)
        kwargs: dict[str, Any] = {
            "device": str(self.device),
            "trust_remote_code": bool(trust_remote_code),
            **self._local_files(local_files_only),
        }
        if revision is not None:
            kwargs["revision"] = revision
        with self._loading("sentence-transformers", "modules.json"):
            model = st.SentenceTransformer(self.name_or_path, **kwargs)
        model = self._place(model)
        if max_length is not None:
            model.max_seq_length = int(max_length)
        self.max_length = max_length
        self.model = model
        modules = list(model)
        self._auto_model = getattr(modules[0], "auto_model", None) if modules else None
        self._pooling_module = next((m for m in modules if type(m).__name__ == "Pooling"), None)
        mode = getattr(self._pooling_module, "pooling_mode", None)
        if mode is None and hasattr(self._pooling_module, "get_pooling_mode_str"):  # sentence-transformers < 5
            mode = self._pooling_module.get_pooling_mode_str()
        self.pooling = mode if isinstance(mode, str) else "+".join(mode) if mode else "model"
        self._names, self._dims = self._discover_layers()

    def _discover_layers(self) -> tuple[list[str], dict[str, int]]:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        final_dim = get_dim()
        if self._auto_model is None or self._pooling_module is None:
            # no transformer (e.g. static embeddings) or no Pooling module: only the final embedding
            if final_dim is None:
                final_dim = int(self.model.encode(["a"], convert_to_numpy=True).shape[1])
            return ["final"], {"final": int(final_dim)}
        # the transformer must hand its hidden states to the next modules (sentence-transformers stores
        # them as features["all_layer_embeddings"] when the config asks for them)
        self._auto_model.config.output_hidden_states = True
        cfg = _text_config(self._auto_model.config)
        n_layers = getattr(cfg, "num_hidden_layers", None)
        pooled_dim = getattr(self._pooling_module, "pooling_output_dimension", None)
        if pooled_dim is None and hasattr(self._pooling_module, "get_sentence_embedding_dimension"):
            pooled_dim = self._pooling_module.get_sentence_embedding_dimension()
        if not isinstance(n_layers, int) or not isinstance(pooled_dim, int) or final_dim is None:
            feats = self._forward(["a"])
            n_layers = len(feats["all_layer_embeddings"]) - 1
            pooled_dim = int(self._pool(feats, feats["all_layer_embeddings"][0]).shape[-1])
            final_dim = int(feats["sentence_embedding"].shape[-1])
        names = [f"layer_{i}" for i in range(n_layers + 1)] + ["final"]
        dims = dict.fromkeys(names[:-1], int(pooled_dim))
        dims["final"] = int(final_dim)
        return names, dims

    @property
    def layer_names(self) -> list[str]:
        return list(self._names)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def _model_config(self) -> Any:
        return None if self._auto_model is None else self._auto_model.config

    def _forward(self, texts: list[str]) -> dict[str, Any]:
        from sentence_transformers.util import batch_to_device

        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # tokenize: sentence-transformers < 6
        features = batch_to_device(prepare(texts), self.device)
        with self._inference():
            return self.model(features)

    def _pool(self, features: dict[str, Any], states: torch.Tensor) -> torch.Tensor:
        """The model's own Pooling module applied to one layer's token states."""
        feats = {
            k: v
            for k, v in features.items()
            if k not in ("token_embeddings", "sentence_embedding", "all_layer_embeddings")
        }
        feats["token_embeddings"] = states
        with self._inference():
            return self._pooling_module(feats)["sentence_embedding"].float()

    def _encode_batch(self, texts: list[str], layers: list[str]) -> dict[str, torch.Tensor]:
        features = self._forward(texts)
        out: dict[str, torch.Tensor] = {}
        hidden = features.get("all_layer_embeddings")
        for name in layers:
            if name == "final":
                out[name] = features["sentence_embedding"].float()
                continue
            if hidden is None:
                raise RuntimeError(f"model {self.name_or_path!r} returned no hidden states")
            out[name] = self._pool(features, hidden[int(name.split("_")[1])])
        return out


# ------------------------------------------------------------------------------------------ registry


@register_family(
    "hf",
    "transformers.AutoModel: every hidden state, pooled (mean / cls / last); needs the network",
    options=HFTextEncoder,
    constraints={"pooling": {"choices": POOLINGS}, "max_length": {"low": 1}, "batch_size": {"low": 1}},
)
def _make_hf(name: str, **options: Any) -> HFTextEncoder:
    return HFTextEncoder(name, **options)


@register_family(
    "st",
    "sentence-transformers model: its final embedding + every hidden layer, model-pooled",
    options=SentenceTransformerEncoder,
    constraints={"max_length": {"low": 1}, "batch_size": {"low": 1}},
)
def _make_st(name: str, **options: Any) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(name, **options)
