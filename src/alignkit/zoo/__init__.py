"""A small model zoo: networks of one architecture trained from different seeds on Fashion-MNIST, cached.

>>> data = fashion_mnist("path/to/fashion-mnist")                     # or $ALIGNKIT_FASHION_MNIST
>>> zoo = train_zoo(default_spec("mlp"), seeds=5, root="zoo", data=data)   # trains what is missing, resumes the rest
>>> acts = activations(zoo[0].model, data.test_x[:1000])               # {"fc1": (1000, 512), ..., "logits": ...}
>>> load_encoder(f"zoo:{zoo[0].path}")                                 # the store / atlas / measure path

Two architectures (:mod:`~alignkit.zoo.architectures`): an MLP (3 hidden layers of 512) and a CNN (6 conv layers
with BatchNorm), both flat ``nn.Sequential`` stacks of standard modules. Training (:mod:`~alignkit.zoo.train`) is
CPU, deterministic given the seed, checkpointed as safetensors every epoch and resumable; each default network
trains in about 3 minutes or less on 2 cores. :func:`init_model` gives the untrained control.
"""

from alignkit.zoo import encoder  # noqa: F401  (registers the zoo: encoder family)
from alignkit.zoo.activations import activations, evaluate, predict
from alignkit.zoo.architectures import (
    ARCHITECTURES,
    build_model,
    check_spec,
    default_spec,
    layer_names,
    spec_name,
)
from alignkit.zoo.checkpoint import ZooModel, load_model, load_zoo
from alignkit.zoo.data import (
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ImageData,
    fashion_mnist,
    load_images,
    normalise,
    sample_data,
)
from alignkit.zoo.encoder import ZooEncoder
from alignkit.zoo.train import DEFAULT_EPOCHS, init_model, train_model, train_zoo

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_EPOCHS",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "ImageData",
    "ZooEncoder",
    "ZooModel",
    "activations",
    "build_model",
    "check_spec",
    "default_spec",
    "evaluate",
    "fashion_mnist",
    "init_model",
    "layer_names",
    "load_images",
    "load_model",
    "load_zoo",
    "normalise",
    "predict",
    "sample_data",
    "spec_name",
    "train_model",
    "train_zoo",
]
