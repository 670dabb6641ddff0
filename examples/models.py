"""Small, seeded model builders shared by the examples, the benchmark and the tests.

Every builder takes size parameters (so tests can build tiny versions and the
benchmark full 224×224 ones) and a ``seed``; the same arguments always give the
same weights, and building a model never disturbs the caller's global RNG.
Batch-norm layers get non-trivial running statistics via
:func:`randomize_batchnorm`, because freshly initialised BN (mean 0, var 1,
weight 1, bias 0) is the identity in eval mode and would hide folding bugs.

Only ops that the int8 XNNPACK path can quantize end to end are used (conv,
linear, batch norm, relu/relu6/hardtanh, max pool, adaptive average pool, add,
flatten/reshape); no layer norm or softmax.

``MODELS`` maps a benchmark name to a :class:`ModelSpec`; ``TINY_MODELS`` holds
the same architectures at sizes that run in milliseconds, for tests.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

__all__ = [
    "ModelSpec",
    "MODELS",
    "TINY_MODELS",
    "randomize_batchnorm",
    "resnet_style",
    "mobilenet_v2_style",
    "mlp_block",
    "digits_cnn",
    "build",
    "example_inputs",
]


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch-norm layer realistic, seeded statistics and return ``model`` in eval mode.

    running_var is drawn from U[0.5, 2], running_mean from N(0, 0.1²), the affine
    weight from U[0.5, 1.5] and the bias from N(0, 0.1²): far enough from the
    identity that a wrong BN fold changes the output, close enough to trained
    networks that activations neither explode nor vanish over 20+ layers.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def _seeded(builder: Callable[[], nn.Module], seed: int) -> nn.Module:
    # fork_rng keeps weight init reproducible without reseeding the caller's RNG.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = builder()
    return randomize_batchnorm(model, seed)


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


# ----------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus an identity (or 1×1 conv-bn downsample) shortcut, relu after the add."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride)
        self.relu = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3)
        self.downsample = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNetStyle(nn.Module):
    def __init__(self, width: int, blocks: Sequence[int], num_classes: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn(in_channels, width, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            for i in range(count):
                layers.append(BasicBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


def resnet_style(
    width: int = 64,
    blocks: Sequence[int] = (2, 2, 2, 2),
    num_classes: int = 1000,
    in_channels: int = 3,
    seed: int = 0,
) -> nn.Module:
    """ResNet with basic blocks; the defaults give the ResNet-18 layout (~11.7 M parameters).

    Args:
        width: channels of the stem and first stage; each later stage doubles it.
        blocks: basic blocks per stage; stages after the first start with stride 2.
        num_classes: outputs of the final linear layer.
        in_channels: input image channels.
        seed: weight and BN-statistics seed.

    Returns:
        The model in eval mode.
    """
    return _seeded(lambda: ResNetStyle(width, tuple(blocks), num_classes, in_channels), seed)


# ----------------------------------------------------------------------------- MobileNetV2


class InvertedResidual(nn.Module):
    """1×1 expand (conv-bn-relu6), 3×3 depthwise (conv-bn-relu6), 1×1 project (conv-bn), residual add when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6()]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6()]
        layers += _conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.residual else out


# (expansion, channels, repeats, first stride) from the MobileNetV2 paper, table 2.
_MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    # XNNPACK and the reference model both round channel counts to multiples of 8.
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV2Style(nn.Module):
    def __init__(
        self, width_mult: float, stages: int, num_classes: int, in_channels: int, last: int
    ):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [*_conv_bn(in_channels, cin, 3, 2), nn.ReLU6()]
        for expand, channels, repeats, stride in _MOBILENET_V2_SETTINGS[:stages]:
            cout = _make_divisible(channels * width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, last, 1), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2_style(
    width_mult: float = 1.0,
    stages: int = 7,
    num_classes: int = 1000,
    in_channels: int = 3,
    last_channels: int | None = None,
    seed: int = 0,
) -> nn.Module:
    """MobileNetV2 built from inverted-residual blocks; the defaults give the paper's 1.0× network.

    Args:
        width_mult: multiplies every channel count (rounded to a multiple of 8).
        stages: how many of the 7 inverted-residual stages to keep (fewer = tinier).
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        last_channels: width of the final 1×1 conv; ``None`` means the paper's
            1280 (scaled up, never down, by ``width_mult``).
        seed: weight and BN-statistics seed.

    Returns:
        The model in eval mode.
    """
    if not 1 <= stages <= len(_MOBILENET_V2_SETTINGS):
        raise ValueError(f"stages must be in [1, {len(_MOBILENET_V2_SETTINGS)}], got {stages}")
    if last_channels is None:
        last_channels = _make_divisible(1280 * max(1.0, width_mult))
    return _seeded(
        lambda: MobileNetV2Style(width_mult, stages, num_classes, in_channels, last_channels), seed
    )


# ----------------------------------------------------------------------------- MLP / transformer-ish


class MLPBlock(nn.Module):
    """``depth`` residual feed-forward layers (linear-relu-linear-hardtanh, + x) on [batch, tokens, dim], then a head."""

    def __init__(self, dim: int, hidden: int, depth: int, out_dim: int):
        super().__init__()
        self.fc_in = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(depth))
        self.fc_out = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(depth))
        self.relu = nn.ReLU()
        # Hardtanh stands in for a bounded activation that still fuses into XNNPACK's output clamp.
        self.clamp = nn.Hardtanh(-3.0, 3.0)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, x):
        for fc_in, fc_out in zip(self.fc_in, self.fc_out):
            x = x + self.clamp(fc_out(self.relu(fc_in(x))))
        return self.head(x)


def mlp_block(
    dim: int = 256, hidden: int = 1024, depth: int = 4, out_dim: int = 256, seed: int = 0
) -> nn.Module:
    """Linear-heavy, transformer-FFN-like block for 3-D input ``[batch, tokens, dim]``.

    Training IR keeps ``aten.linear`` on the 3-D tensor; core ATen IR turns each
    into view → addmm → view, which is the case that stresses the quantizer.

    Returns:
        The model in eval mode.
    """
    return _seeded(lambda: MLPBlock(dim, hidden, depth, out_dim), seed)


# ----------------------------------------------------------------------------- digits CNN


class DigitsCNN(nn.Module):
    """conv-relu, conv-relu, conv + residual add, relu, max pool, linear — for 1×8×8 sklearn digits."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(channels * 4 * 4, num_classes)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(x + self.conv3(self.relu(self.conv2(x))))
        x = self.pool(x)
        return self.fc(torch.flatten(x, 1))


def digits_cnn(channels: int = 16, num_classes: int = 10, seed: int = 0) -> nn.Module:
    """The quickstart CNN for 8×8 digit images, input ``[batch, 1, 8, 8]``.

    Returns:
        The model in eval mode (call ``.train()`` before training it).
    """
    return _seeded(lambda: DigitsCNN(channels, num_classes), seed)


# ----------------------------------------------------------------------------- registry


class ModelSpec(NamedTuple):
    """A builder with no required arguments and the input shape it expects (batch included)."""

    builder: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec(resnet_style, (1, 3, 224, 224)),
    "mobilenet_v2": ModelSpec(mobilenet_v2_style, (1, 3, 224, 224)),
    "mlp_block": ModelSpec(mlp_block, (1, 64, 256)),
    "digits_cnn": ModelSpec(digits_cnn, (1, 1, 8, 8)),
}

TINY_MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec(
        lambda: resnet_style(width=8, blocks=(1, 1), num_classes=10), (1, 3, 32, 32)
    ),
    "mobilenet_v2": ModelSpec(
        lambda: mobilenet_v2_style(width_mult=0.25, stages=3, num_classes=10, last_channels=64),
        (1, 3, 32, 32),
    ),
    "mlp_block": ModelSpec(lambda: mlp_block(dim=16, hidden=32, depth=2, out_dim=8), (2, 4, 16)),
    "digits_cnn": ModelSpec(lambda: digits_cnn(channels=4), (1, 1, 8, 8)),
}


def build(name: str, *, tiny: bool = False) -> tuple[nn.Module, tuple[int, ...]]:
    """Build a registered model by name.

    Returns:
        ``(model, input_shape)``.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    table = TINY_MODELS if tiny else MODELS
    if name not in table:
        raise KeyError(f"unknown model {name!r}; known: {sorted(table)}")
    spec = table[name]
    return spec.builder(), spec.input_shape


def example_inputs(
    input_shape: Sequence[int], count: int = 1, seed: int = 0
) -> list[tuple[torch.Tensor]]:
    """``count`` seeded standard-normal input tuples of ``input_shape``, ready to call a model with."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(*input_shape, generator=gen),) for _ in range(count)]
