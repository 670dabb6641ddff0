"""Small, seeded model builders shared by the examples, the benchmark and the tests.

Every builder takes size parameters (so tests can build tiny versions and the
benchmark full 224×224 ones) and a ``seed``; the same arguments always give the
same weights, and building a model never disturbs the caller's global RNG.
Batch-norm layers get non-trivial running statistics via
:func:`randomize_batchnorm`, because freshly initialised BN (mean 0, var 1,
weight 1, bias 0) is the identity in eval mode and would hide folding bugs.

The models of ``MODELS`` use only ops that the int8 XNNPACK path can quantize
end to end (conv, linear, batch norm, relu/relu6/hardtanh, max pool, adaptive
average pool, add, flatten/reshape); no layer norm or softmax.

``MODELS`` maps a benchmark name to a :class:`ModelSpec`; ``TINY_MODELS`` holds
the same architectures at sizes that run in milliseconds, for tests.

``ARCHITECTURES`` (and ``TINY_ARCHITECTURES``) hold published architectures
written by hand from their block structure (torchvision cannot be imported
here): MobileNetV3-Small, EfficientNet-B0, a TF-"SAME"-padded MobileNetV1, a
small ViT and ``nn.TransformerEncoderLayer``.  The CNNs are int8 throughout
(hardswish, sigmoid, SiLU, pad and gelu through xnnquant's partitioner
configs, hardsigmoid respelled in int8 ops); the transformers hold ops XNNPACK
runs only in fp32 (layer norm, softmax, matmul), so they are not fully int8.  Their batch norms are set by
:func:`calibrate_batchnorm` from a few batches in train mode.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

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
    "ARCHITECTURES",
    "TINY_ARCHITECTURES",
    "calibrate_batchnorm",
    "tf_same_padding",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "tf_same_mobilenet",
    "vision_transformer",
    "transformer_encoder",
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


# ----------------------------------------------------------------------------- architectures beyond int8-only ops
#
# The builders below follow published block structures (torchvision's MobileNetV3 and
# EfficientNet, TF-Slim's MobileNet "SAME" padding, the ViT paper's encoder) and use ops
# beyond conv/linear/pool/add (hardswish, sigmoid, hardsigmoid, SiLU, pad, gelu, and in the
# transformers layer norm, softmax, matmul, which XNNPACK runs only in fp32).  They live in
# ARCHITECTURES / TINY_ARCHITECTURES, not in MODELS.


def calibrate_batchnorm(
    model: nn.Module, input_shape: Sequence[int], batches: int = 4, batch_size: int = 8, seed: int = 0
) -> nn.Module:
    """Set every batch norm's running statistics from ``batches`` seeded N(0, 1) batches; return ``model`` in eval mode.

    Affine weights and biases are drawn first as in :func:`randomize_batchnorm`;
    the running statistics are then the cumulative average (``momentum=None``)
    of the batch statistics seen in train mode, the way a trained network's are
    collected.  Each batch norm thus normalises what reaches it, so activations
    keep a realistic scale through deep stacks of randomly initialised blocks
    (with random statistics alone they drift by orders of magnitude over 15+
    blocks with squeeze-excite gates).  The caller's RNG is not disturbed.
    """
    randomize_batchnorm(model, seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    saved = [m.momentum for m in bns]
    gen = torch.Generator().manual_seed(seed + 1)
    shape = (batch_size, *input_shape[1:])
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(*shape, generator=gen))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()


def _seeded_calibrated(builder: Callable[[], nn.Module], seed: int, input_shape: Sequence[int]) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = builder()
    return calibrate_batchnorm(model, input_shape, seed=seed)


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: Optional[Callable[[], nn.Module]] = None) -> nn.Sequential:
    layers = _conv_bn(cin, cout, kernel, stride, groups)
    return nn.Sequential(*layers, act()) if act is not None else nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-excite gate: global average pool, 1×1 conv, activation, 1×1 conv, gate, ``x * gate``.

    MobileNetV3 uses relu and hardsigmoid, EfficientNet SiLU and sigmoid (as torchvision's
    ``SqueezeExcitation``).
    """

    def __init__(self, channels: int, squeeze: int, act: Callable[[], nn.Module],
                 gate: Callable[[], nn.Module]):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


# ----------------------------------------------------------------------------- MobileNetV3-Small


class MobileNetV3Block(nn.Module):
    """MobileNetV3 bneck: 1×1 expand (if any), k×k depthwise, optional SE, 1×1 project; residual when shapes allow."""

    def __init__(self, cin: int, kernel: int, hidden: int, cout: int, se: bool,
                 act: Callable[[], nn.Module], stride: int):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn_act(cin, hidden, 1, act=act))
        layers.append(_conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, _make_divisible(hidden / 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(_conv_bn_act(hidden, cout, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.residual else out


# (kernel, expanded channels, out channels, SE, activation, stride): Searching for
# MobileNetV3 (Howard et al. 2019), table 2, as in torchvision's mobilenet_v3_small.
_MOBILENET_V3_SMALL_SETTINGS = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)


class MobileNetV3Small(nn.Module):
    def __init__(self, width_mult: float, blocks: int, num_classes: int, in_channels: int,
                 last_channels: int):
        super().__init__()
        acts = {"RE": nn.ReLU, "HS": nn.Hardswish}
        cin = _make_divisible(16 * width_mult)
        layers: list[nn.Module] = [_conv_bn_act(in_channels, cin, 3, 2, act=nn.Hardswish)]
        for kernel, hidden, cout, se, act, stride in _MOBILENET_V3_SMALL_SETTINGS[:blocks]:
            hidden, cout = _make_divisible(hidden * width_mult), _make_divisible(cout * width_mult)
            layers.append(MobileNetV3Block(cin, kernel, hidden, cout, se, acts[act], stride))
            cin = cout
        lastconv = 6 * cin
        layers.append(_conv_bn_act(cin, lastconv, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv, last_channels), nn.Hardswish(), nn.Dropout(0.2),
            nn.Linear(last_channels, num_classes),
        )

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_small(
    width_mult: float = 1.0,
    blocks: int = len(_MOBILENET_V3_SMALL_SETTINGS),
    num_classes: int = 1000,
    in_channels: int = 3,
    last_channels: int = 1024,
    input_size: int = 224,
    seed: int = 0,
) -> nn.Module:
    """MobileNetV3-Small (hardswish, SE with relu + hardsigmoid); the defaults give the paper's 1.0× network.

    Args:
        width_mult: multiplies every channel count of the stem and blocks (rounded to 8).
        blocks: how many of the 11 bneck blocks to keep (fewer = tinier).
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        last_channels: width of the classifier's hidden linear layer (1024 in the paper).
        input_size: input height and width, used to collect the batch-norm statistics.
        seed: weight and BN-statistics seed.

    Returns:
        The model in eval mode, its batch norms calibrated by :func:`calibrate_batchnorm`.
    """
    if not 1 <= blocks <= len(_MOBILENET_V3_SMALL_SETTINGS):
        raise ValueError(f"blocks must be in [1, {len(_MOBILENET_V3_SMALL_SETTINGS)}], got {blocks}")
    return _seeded_calibrated(
        lambda: MobileNetV3Small(width_mult, blocks, num_classes, in_channels, last_channels),
        seed, (1, in_channels, input_size, input_size))


# ----------------------------------------------------------------------------- EfficientNet-B0


class MBConv(nn.Module):
    """EfficientNet MBConv: 1×1 expand (SiLU), k×k depthwise (SiLU), SE (SiLU + sigmoid), 1×1 project; residual when shapes allow.

    Stochastic depth is the identity in eval mode and is left out.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_conv_bn_act(cin, hidden, 1, act=nn.SiLU))
        layers.append(_conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU))
        layers.append(SqueezeExcite(hidden, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
        layers.append(_conv_bn_act(hidden, cout, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        out = self.body(x)
        return x + out if self.residual else out


# (expansion, kernel, stride, out channels, repeats): EfficientNet (Tan & Le 2019), table 1.
_EFFICIENTNET_B0_SETTINGS = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class EfficientNetB0(nn.Module):
    def __init__(self, width_mult: float, stages: int, max_repeats: Optional[int],
                 num_classes: int, in_channels: int, last_channels: int):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn_act(in_channels, cin, 3, 2, act=nn.SiLU)]
        for expand, kernel, stride, channels, repeats in _EFFICIENTNET_B0_SETTINGS[:stages]:
            cout = _make_divisible(channels * width_mult)
            for i in range(repeats if max_repeats is None else min(repeats, max_repeats)):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn_act(cin, last_channels, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channels, num_classes))

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def efficientnet_b0(
    width_mult: float = 1.0,
    stages: int = len(_EFFICIENTNET_B0_SETTINGS),
    max_repeats: Optional[int] = None,
    num_classes: int = 1000,
    in_channels: int = 3,
    last_channels: int = 1280,
    input_size: int = 224,
    seed: int = 0,
) -> nn.Module:
    """EfficientNet-B0 built from MBConv blocks (SiLU, SE with sigmoid); the defaults give the paper's network.

    Args:
        width_mult: multiplies every channel count of the stem and blocks (rounded to 8).
        stages: how many of the 7 MBConv stages to keep.
        max_repeats: caps the blocks per stage (``None``: the paper's counts).
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        last_channels: width of the final 1×1 conv (1280 in the paper).
        input_size: input height and width, used to collect the batch-norm statistics.
        seed: weight and BN-statistics seed.

    Returns:
        The model in eval mode, its batch norms calibrated by :func:`calibrate_batchnorm`.
    """
    if not 1 <= stages <= len(_EFFICIENTNET_B0_SETTINGS):
        raise ValueError(f"stages must be in [1, {len(_EFFICIENTNET_B0_SETTINGS)}], got {stages}")
    return _seeded_calibrated(
        lambda: EfficientNetB0(width_mult, stages, max_repeats, num_classes, in_channels,
                               last_channels),
        seed, (1, in_channels, input_size, input_size))


# ----------------------------------------------------------------------------- TF "SAME" MobileNet


def tf_same_padding(size: Sequence[int], kernel: int, stride: int, dilation: int = 1) -> list[int]:
    """``F.pad`` amounts (last dim first) that reproduce TensorFlow's ``padding="SAME"``.

    TF pads ``max((ceil(n / s) − 1)·s + (k − 1)·d + 1 − n, 0)`` in total per
    spatial dim and puts the odd one on the far side (bottom / right).  For
    example, n = 32, k = 3, s = 2: ceil(32/2) = 16, (16 − 1)·2 + 3 − 32 = 1,
    so 0 before and 1 after: ``[0, 1, 0, 1]``, where torch's symmetric
    ``padding=1`` would pad both sides.
    """
    pads: list[int] = []
    for n in reversed(list(size)):
        total = max((-(-n // stride) - 1) * stride + (kernel - 1) * dilation + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class TFSameConv(nn.Module):
    """A strided conv preceded by an explicit TF-"SAME" ``F.pad`` (as TF-ported checkpoints are run in torch)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)

    def forward(self, x):
        x = nn.functional.pad(x, tf_same_padding(x.shape[2:], self.kernel, self.stride))
        return self.conv(x)


class SeparableBlock(nn.Module):
    """MobileNetV1 depthwise-separable block: k×k depthwise-bn-relu6, 1×1 pointwise-bn-relu6.

    Stride 2: explicit TF-"SAME" pad then a padding-0 depthwise conv.  Stride 1:
    ``padding="same"`` on the depthwise conv (torch allows it only at stride 1).
    The pointwise conv uses ``padding="same"`` too, as TF exports spell it.
    """

    def __init__(self, cin: int, cout: int, stride: int, kernel: int = 3):
        super().__init__()
        if stride == 1:
            self.dw = nn.Conv2d(cin, cin, kernel, 1, "same", groups=cin, bias=False)
        else:
            self.dw = TFSameConv(cin, cin, kernel, stride, groups=cin)
        self.bn1, self.act1 = nn.BatchNorm2d(cin), nn.ReLU6()
        self.pw = nn.Conv2d(cin, cout, 1, 1, "same", bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(cout), nn.ReLU6()

    def forward(self, x):
        x = self.act1(self.bn1(self.dw(x)))
        return self.act2(self.bn2(self.pw(x)))


# (out channels, stride): MobileNets (Howard et al. 2017), table 1.
_MOBILENET_V1_SETTINGS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class TFSameMobileNet(nn.Module):
    def __init__(self, width_mult: float, blocks: int, num_classes: int, in_channels: int):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [TFSameConv(in_channels, cin, 3, 2), nn.BatchNorm2d(cin), nn.ReLU6()]
        for channels, stride in _MOBILENET_V1_SETTINGS[:blocks]:
            cout = _make_divisible(channels * width_mult)
            layers.append(SeparableBlock(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def tf_same_mobilenet(
    width_mult: float = 1.0,
    blocks: int = len(_MOBILENET_V1_SETTINGS),
    num_classes: int = 1000,
    in_channels: int = 3,
    input_size: int = 224,
    seed: int = 0,
) -> nn.Module:
    """MobileNetV1 as TF-Slim defines it, with TF "SAME" padding; the defaults give the 1.0× network.

    Stride-2 convs (the stem and four depthwise convs) get an explicit
    :func:`tf_same_padding` ``F.pad`` (asymmetric on even inputs) and padding 0;
    stride-1 depthwise and all pointwise convs use ``padding="same"``.

    Args:
        width_mult: multiplies every channel count (rounded to 8).
        blocks: how many of the 13 separable blocks to keep.
        num_classes: outputs of the classifier.
        in_channels: input image channels.
        input_size: input height and width, used to collect the batch-norm statistics.
        seed: weight and BN-statistics seed.

    Returns:
        The model in eval mode, its batch norms calibrated by :func:`calibrate_batchnorm`.
    """
    if not 1 <= blocks <= len(_MOBILENET_V1_SETTINGS):
        raise ValueError(f"blocks must be in [1, {len(_MOBILENET_V1_SETTINGS)}], got {blocks}")
    return _seeded_calibrated(
        lambda: TFSameMobileNet(width_mult, blocks, num_classes, in_channels),
        seed, (1, in_channels, input_size, input_size))


# ----------------------------------------------------------------------------- Vision Transformer


class Attention(nn.Module):
    """Multi-head self-attention written out: qkv linear, ``softmax(q·kᵀ/√d)·v`` with matmul, output linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class ViTBlock(nn.Module):
    """Pre-norm encoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` with a gelu MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class VisionTransformer(nn.Module):
    """ViT: patch-embedding conv, class token, learned position embedding, encoder blocks, final norm, head on the class token."""

    def __init__(self, image_size: int, patch: int, layers: int, dim: int, heads: int,
                 mlp_dim: int, num_classes: int, in_channels: int):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
        tokens = (image_size // patch) ** 2 + 1
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads, mlp_dim) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vision_transformer(
    image_size: int = 64,
    patch: int = 8,
    layers: int = 2,
    dim: int = 64,
    heads: int = 4,
    mlp_dim: int = 256,
    num_classes: int = 1000,
    in_channels: int = 3,
    seed: int = 0,
) -> nn.Module:
    """A small ViT (Dosovitskiy et al. 2021 block structure); the defaults: 64×64 images, 8×8 patches, 2 layers of width 64, 4 heads.

    Returns:
        The model in eval mode.
    """
    return _seeded(lambda: VisionTransformer(image_size, patch, layers, dim, heads, mlp_dim,
                                             num_classes, in_channels), seed)


# ----------------------------------------------------------------------------- nn.TransformerEncoderLayer


class TransformerEncoder(nn.Module):
    """``layers`` stock ``nn.TransformerEncoderLayer`` (post-norm, batch_first, dropout 0) on ``[batch, seq, d_model]``."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, layers: int, activation: str):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, heads, ff_dim, dropout=0.0, activation=activation,
                                       batch_first=True)
            for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def transformer_encoder(
    d_model: int = 64, heads: int = 4, ff_dim: int = 256, layers: int = 1,
    activation: str = "relu", seed: int = 0,
) -> nn.Module:
    """PyTorch's own ``nn.TransformerEncoderLayer`` (its MultiheadAttention, layer norm, relu FFN), input ``[batch, seq, d_model]``.

    Returns:
        The model in eval mode.
    """
    return _seeded(lambda: TransformerEncoder(d_model, heads, ff_dim, layers, activation), seed)


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

#: Published architectures with ops XNNPACK runs only in fp32 (see the section above);
#: kept apart from MODELS, whose every compute op is int8 on both IRs.
ARCHITECTURES: dict[str, ModelSpec] = {
    "mobilenet_v3_small": ModelSpec(mobilenet_v3_small, (1, 3, 224, 224)),
    "efficientnet_b0": ModelSpec(efficientnet_b0, (1, 3, 224, 224)),
    "tf_same_mobilenet": ModelSpec(tf_same_mobilenet, (1, 3, 224, 224)),
    "vit": ModelSpec(vision_transformer, (1, 3, 64, 64)),
    "transformer_encoder": ModelSpec(transformer_encoder, (1, 32, 64)),
}

TINY_ARCHITECTURES: dict[str, ModelSpec] = {
    "mobilenet_v3_small": ModelSpec(
        lambda: mobilenet_v3_small(width_mult=0.25, blocks=5, num_classes=10, last_channels=32,
                                   input_size=32),
        (1, 3, 32, 32),
    ),
    "efficientnet_b0": ModelSpec(
        lambda: efficientnet_b0(width_mult=0.25, stages=3, max_repeats=2, num_classes=10,
                                last_channels=64, input_size=32),
        (1, 3, 32, 32),
    ),
    "tf_same_mobilenet": ModelSpec(
        lambda: tf_same_mobilenet(width_mult=0.25, blocks=4, num_classes=10, input_size=32),
        (1, 3, 32, 32),
    ),
    "vit": ModelSpec(
        lambda: vision_transformer(image_size=32, patch=8, layers=2, dim=32, heads=4, mlp_dim=64,
                                   num_classes=10),
        (1, 3, 32, 32),
    ),
    "transformer_encoder": ModelSpec(
        lambda: transformer_encoder(d_model=64, heads=4, ff_dim=128), (1, 8, 64)
    ),
}


def build(name: str, *, tiny: bool = False) -> tuple[nn.Module, tuple[int, ...]]:
    """Build a registered model by name, from ``MODELS`` or ``ARCHITECTURES`` (their tiny tables with ``tiny``).

    Returns:
        ``(model, input_shape)``.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    tables = (TINY_MODELS, TINY_ARCHITECTURES) if tiny else (MODELS, ARCHITECTURES)
    spec = next((table[name] for table in tables if name in table), None)
    if spec is None:
        raise KeyError(f"unknown model {name!r}; known: {sorted(k for t in tables for k in t)}")
    return spec.builder(), spec.input_shape


def example_inputs(
    input_shape: Sequence[int], count: int = 1, seed: int = 0
) -> list[tuple[torch.Tensor]]:
    """``count`` seeded standard-normal input tuples of ``input_shape``, ready to call a model with."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(*input_shape, generator=gen),) for _ in range(count)]
