"""ShuffleNetV2 backbone (stride 32), module names in the torchvision layout.

ImageNet weights are read only from a local file (torchvision or megvii key layout); nothing
is ever downloaded.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

STAGE_CHANNELS: Dict[str, Tuple[int, int, int, int, int]] = {
    "0.5x": (24, 48, 96, 192, 1024),
    "1.0x": (24, 116, 232, 464, 1024),
    "1.5x": (24, 176, 352, 704, 1024),
    "2.0x": (24, 244, 488, 976, 2048),
}
STAGE_REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """View channels as (groups, C/groups), transpose, flatten."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _dw(ch: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two branches (stride 2), concat, shuffle."""

    def __init__(self, inp: int, oup: int, stride: int, layout: str = "torchvision"):
        super().__init__()
        self.stride, self.layout = stride, layout
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(_dw(inp, stride), nn.BatchNorm2d(inp), nn.Conv2d(inp, bf, 1, bias=False),
                                         nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        b2_in = inp if stride > 1 else bf
        self.branch2 = nn.Sequential(
            nn.Conv2d(b2_in, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            _dw(bf, stride), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            if self.layout == "megvii":
                x1, x2 = x[:, 0::2], x[:, 1::2]
            else:
                x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return out if self.layout == "megvii" else channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """Backbone returning the stride-32 ``conv5`` feature map.

    The stem pads raw pixels with zeros, then normalises (mean/std), then runs the first conv
    without padding: the same as a conv on normalised pixels except at the border, where a
    padded pixel is a true 0 -- which is what the integer model (mean/std folded into the
    first layer) computes.
    """

    def __init__(self, width: str = "1.0x", layout: str = "torchvision", pixel_mean=(103.53, 116.28, 123.675), pixel_std=(57.375, 57.12, 58.395)):
        super().__init__()
        if width not in STAGE_CHANNELS:
            raise ValueError(f"unknown ShuffleNetV2 width {width!r}; choose one of {list(STAGE_CHANNELS)}")
        if layout not in ("torchvision", "megvii"):
            raise ValueError(f"unknown backbone layout {layout!r}: 'torchvision' or 'megvii'")
        ch = STAGE_CHANNELS[width]
        self.layout = layout
        self.out_channels = ch[4]
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv1 = nn.Sequential(nn.Conv2d(3, ch[0], 3, 2, 0, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inp = ch[0]
        for i, (rep, oup) in enumerate(zip(STAGE_REPEATS, ch[1:4])):
            units = [ShuffleUnit(inp, oup, 2, layout)] + [ShuffleUnit(oup, oup, 1, layout) for _ in range(rep - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            inp = oup
        self.conv5 = nn.Sequential(nn.Conv2d(inp, ch[4], 1, bias=False), nn.BatchNorm2d(ch[4]), nn.ReLU(inplace=True))

    def normalize_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad raw pixels by 1, then normalise (the stem's input)."""
        x = nn.functional.pad(x, (1, 1, 1, 1))
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.normalize_padded(x))
        x = self.maxpool(x)
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.conv5(x)


# ---------------------------------------------------------------- pretrained weights

def _megvii_to_torchvision(key: str) -> str | None:
    """Map a megvii ShuffleNetV2 key onto the torchvision layout (None: not a backbone key).

    The megvii layout also differs in how a unit splits channels (even/odd, no shuffle after
    the concat): a model loading it is built with ``layout='megvii'``.
    """
    key = key.replace("module.", "", 1)
    if key.startswith("first_conv."):
        return "conv1." + key[len("first_conv."):]
    if key.startswith("conv_last."):
        return "conv5." + key[len("conv_last."):]
    m = re.match(r"features\.(\d+)\.(branch_main|branch_proj)\.(\d+)\.(.+)", key)
    if not m:
        return None
    idx, branch, layer, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
    starts = [0, STAGE_REPEATS[0], STAGE_REPEATS[0] + STAGE_REPEATS[1]]
    stage = max(i for i, s in enumerate(starts) if idx >= s)
    unit = idx - starts[stage]
    name = "branch2" if branch == "branch_main" else "branch1"
    return f"stage{stage + 2}.{unit}.{name}.{layer}.{rest}"


def load_backbone_weights(backbone: ShuffleNetV2, path: str) -> List[str]:
    """Load ImageNet weights from a local ``path`` (torchvision or megvii layout).

    Returns the names of backbone parameters that were not in the file. Raises a ValueError
    naming the file and the first mismatching key when the file does not fit this width.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights {path!r} not found: pass a local torchvision or megvii "
                                "ShuffleNetV2 checkpoint (nothing is downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    megvii = any(k.replace("module.", "", 1).startswith(("first_conv.", "features.")) for k in state)
    if megvii:
        mapped = {}
        for k, v in state.items():
            nk = _megvii_to_torchvision(k)
            if nk is not None:
                mapped[nk] = v
        state = mapped
        if backbone.layout != "megvii":
            raise ValueError(f"{path}: this is a megvii-layout checkpoint, whose units split channels "
                             "even/odd; build the model with backbone_layout='megvii' to load it")
    elif backbone.layout != "torchvision":
        raise ValueError(f"{path}: this is a torchvision-layout checkpoint; build the model with "
                         "backbone_layout='torchvision' to load it")
    own = backbone.state_dict()
    loaded = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        if k not in own:
            raise ValueError(f"{path}: key {k!r} is not a ShuffleNetV2 parameter; is this a ShuffleNetV2 checkpoint?")
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)} but the {backbone.out_channels}-channel model "
                             f"needs {tuple(own[k].shape)}; check the width (0.5x/1.0x/1.5x/2.0x)")
        loaded[k] = v
    if not loaded:
        raise ValueError(f"{path}: no ShuffleNetV2 keys found")
    backbone.load_state_dict(loaded, strict=False)
    return sorted(k for k in own if k not in loaded and not k.startswith("pixel_"))
