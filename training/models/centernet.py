"""CoDeNet: CenterNet with a ShuffleNetV2 backbone and deformable-conv decoder and heads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .blocks import DEFAULT_VARIANT, VARIANTS, make_block
from .shufflenetv2 import STAGE_CHANNELS, ShuffleNetV2, load_backbone_weights


@dataclass
class ModelConfig:
    """Everything that defines the network (stored in checkpoints and artifacts)."""

    num_classes: int = 20
    width: str = "1.0x"
    backbone_layout: str = "torchvision"
    variant: str = DEFAULT_VARIANT
    decoder_channels: Tuple[int, ...] = (512, 256, 128)
    head_channels: int = 128
    max_offset: int = 8
    offset_groups: int = 1
    input_size: int = 512
    down_ratio: int = 4
    pixel_mean: Tuple[float, float, float] = (103.53, 116.28, 123.675)
    pixel_std: Tuple[float, float, float] = (57.375, 57.12, 58.395)
    class_names: Tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.pixel_mean = tuple(float(v) for v in self.pixel_mean)
        self.pixel_std = tuple(float(v) for v in self.pixel_std)
        self.class_names = tuple(self.class_names) or tuple(f"class{i}" for i in range(self.num_classes))
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"model.class_names has {len(self.class_names)} names but num_classes is {self.num_classes}")
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant {self.variant!r} unknown; choose one of {', '.join(VARIANTS)}")
        if self.width not in STAGE_CHANNELS:
            raise ValueError(f"model.width {self.width!r} unknown; choose one of {list(STAGE_CHANNELS)}")
        if self.input_size % 32:
            raise ValueError(f"model.input_size {self.input_size} must be a multiple of 32")
        if len(self.decoder_channels) != 3 or self.down_ratio != 4:
            raise ValueError("the decoder has 3 upsampling stages (stride 32 -> 4): give 3 decoder_channels")

    def to_dict(self) -> Dict:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @staticmethod
    def from_dict(d: Dict) -> ModelConfig:
        known = ModelConfig.__dataclass_fields__
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
        return ModelConfig(**d)


class DecoderStage(nn.Module):
    """conv block -> BN -> ReLU -> nearest upsample x2."""

    def __init__(self, variant: str, in_ch: int, out_ch: int, max_offset: int, offset_groups: int):
        super().__init__()
        self.conv = make_block(variant, in_ch, out_ch, max_offset, offset_groups)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.relu(self.bn(self.conv(x))))


class Head(nn.Module):
    """conv block -> BN -> ReLU -> 1x1 conv with bias."""

    def __init__(self, variant: str, in_ch: int, mid: int, out_ch: int, max_offset: int, offset_groups: int,
                 bias_init: float = 0.0):
        super().__init__()
        self.conv = make_block(variant, in_ch, mid, max_offset, offset_groups)
        self.bn = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Conv2d(mid, out_ch, 1, bias=True)
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.constant_(self.out.bias, bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.bn(self.conv(x))))


class CoDeNet(nn.Module):
    """CenterNet detector; input raw BGR pixels (N, 3, S, S) in 0..255, outputs at stride 4."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ShuffleNetV2(cfg.width, cfg.backbone_layout, cfg.pixel_mean, cfg.pixel_std)
        chans = (self.backbone.out_channels,) + cfg.decoder_channels
        self.decoder = nn.Sequential(*[DecoderStage(cfg.variant, chans[i], chans[i + 1], cfg.max_offset, cfg.offset_groups)
                                       for i in range(3)])
        c, mid, v, b, g = chans[-1], cfg.head_channels, cfg.variant, cfg.max_offset, cfg.offset_groups
        prior = -math.log((1 - 0.01) / 0.01)
        self.hm = Head(v, c, mid, cfg.num_classes, b, g, bias_init=prior)
        self.wh = Head(v, c, mid, 2, b, g)
        self.reg = Head(v, c, mid, 2, b, g)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        f = self.decoder(self.backbone(x))
        return {"hm": self.hm(f), "wh": self.wh(f), "reg": self.reg(f)}


def build_model(cfg: ModelConfig, backbone_weights: Optional[str] = None) -> CoDeNet:
    """Build CoDeNet; optionally load ImageNet backbone weights from a local file."""
    model = CoDeNet(cfg)
    if backbone_weights:
        load_backbone_weights(model.backbone, backbone_weights)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of conv layers for one image (deformable sampling not counted)."""
    total = 0
    hooks = []

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    from .blocks import DeformConv

    def dhook(mod, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * mod.weight.shape[1] * 9

    for m in model.modules():
        if isinstance(m, DeformConv):
            hooks.append(m.register_forward_hook(dhook))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    model.train(was)
    for h in hooks:
        h.remove()
    return total


def head_names() -> Sequence[str]:
    return ("hm", "wh", "reg")
