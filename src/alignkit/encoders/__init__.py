"""Encoders: items -> ``{layer: Tensor[B, d]}``, addressed by string ids.

``load_encoder("offline:minilm-l6")`` builds one; ``available_encoders()`` lists the fixed ids and
the families (``hf:``, ``st:``, ``torchvision:``, ``timm:``, ``open_clip:``, ``whisper:``; ``zoo:`` for the
networks :mod:`alignkit.zoo` trains). Heavy libraries (transformers, torchvision, ...) are imported only when an
encoder is built.
"""

from alignkit.encoders import audio, offline_text, offline_vision_audio, text, vision  # noqa: F401  (registration)
from alignkit.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderOutputError,
    available_encoders,
    check_encoder_options,
    encoder_info,
    load_encoder,
    register_family,
    register_named,
)

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderOutputError",
    "available_encoders",
    "check_encoder_options",
    "encoder_info",
    "load_encoder",
    "register_family",
    "register_named",
]

from alignkit.zoo import encoder as _zoo_encoder  # noqa: F401  (registers the zoo: family)
