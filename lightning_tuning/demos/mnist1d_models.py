"""Models for MNIST-1D: a small 1-D CNN and a plain MLP of any depth."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from lightning_tuning.demos.classification import ClassificationModule
from lightning_tuning.demos.mnist1d_data import NUM_CLASSES, SEQUENCE_LENGTH

Activation = Literal["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "identity"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


class MNIST1DConvNet(ClassificationModule):
    """A small 1-D CNN for MNIST-1D: three ``Conv1d`` + ``ReLU`` blocks, global max pooling, one ``Linear``.

    Layers are ``nn.Module``\\ s in ``self.features``/``self.head`` (no functional activations), so hooks can
    trace the layer/activation order.

    Args:
        channels: Channels of every convolution.
        kernel_size: Kernel size of every convolution (odd; padding keeps the length).
        lr: Learning rate of the default optimizer (AdamW).
        weight_decay: Weight decay of the default optimizer.

    Raises:
        ValueError: If ``channels`` < 1 or ``kernel_size`` is not a positive odd number.

    Example::

        model = MNIST1DConvNet(channels=32)
        logits = model(torch.randn(8, 40))  # (8, 10)
    """

    def __init__(self, channels: int = 32, kernel_size: int = 5, lr: float = 3e-3, weight_decay: float = 1e-2) -> None:
        super().__init__(num_classes=NUM_CLASSES, lr=lr, weight_decay=weight_decay)
        if channels < 1:
            raise ValueError(f"`channels` must be at least 1, got {channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd number, got {kernel_size}.")
        self.save_hyperparameters()
        padding = kernel_size // 2
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=padding),
            nn.ReLU(),
        )
        # global max pooling makes the classifier invariant to where the digit sits in the (translated) signal
        self.head = nn.Sequential(nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(channels, NUM_CLASSES))

    def forward(self, signals: Tensor) -> Tensor:
        """Maps signals of shape ``(batch, 40)`` to logits of shape ``(batch, 10)``."""
        return self.head(self.features(signals.unsqueeze(1)))


class MNIST1DMLP(ClassificationModule):
    """A plain MLP for MNIST-1D: ``depth`` hidden ``Linear`` + activation layers, then a ``Linear`` classifier.

    No normalisation, no residual connections: deep plain nets are what initialisation studies need
    (``depth=20`` trains only with a good init). PyTorch's default initialisation is left in place.

    Args:
        depth: Number of hidden layers (each ``Linear(width, width)`` + activation; the first maps 40 inputs).
        width: Units per hidden layer.
        activation: Activation module after every hidden layer.
        lr: Learning rate of the default optimizer (AdamW).
        weight_decay: Weight decay of the default optimizer.

    Raises:
        ValueError: If ``depth`` < 1, ``width`` < 1 or ``activation`` is unknown.

    Example::

        model = MNIST1DMLP(depth=20, width=64, activation="tanh")
        len([m for m in model.modules() if isinstance(m, nn.Linear)])  # 21
    """

    def __init__(
        self,
        depth: int = 3,
        width: int = 128,
        activation: Activation = "relu",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(num_classes=NUM_CLASSES, lr=lr, weight_decay=weight_decay)
        if depth < 1:
            raise ValueError(f"`depth` must be at least 1 hidden layer, got {depth}.")
        if width < 1:
            raise ValueError(f"`width` must be at least 1, got {width}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        in_features = SEQUENCE_LENGTH
        for _ in range(depth):
            layers += [nn.Linear(in_features, width), _ACTIVATIONS[activation]()]
            in_features = width
        layers.append(nn.Linear(in_features, NUM_CLASSES))
        self.net = nn.Sequential(*layers)

    def forward(self, signals: Tensor) -> Tensor:
        """Maps signals of shape ``(batch, 40)`` to logits of shape ``(batch, 10)``."""
        return self.net(signals)
