"""Shared fixtures: a tiny float ``.codenet`` artifact (built once per session) and test images."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

#: Recorded in the tiny artifact's manifest, so that ``info`` has metrics to show.
TINY_METRICS = {"coco_ap": 0.123, "voc_ap50": 0.456}

#: Config overrides that make the default model tiny (64 x 64 input, ~0.4 M parameters).
TINY_OVERRIDES = ["model.input_size=64", "model.width=0.5x", "model.decoder_channels=[32,32,32]",
                  "model.head_channels=16"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--runslow") and config.option.markexpr == "not slow":
        config.option.markexpr = ""  # --runslow lifts the default "-m 'not slow'" of pyproject.toml


def build_tiny_artifact(path: str, seed: int = 0) -> str:
    """Export a randomly initialised tiny model whose outputs give a few confident boxes."""
    import torch

    from codenet_pynq.training.config import load_config
    from codenet_pynq.training.export import export_float
    from codenet_pynq.training.models import build_model
    from codenet_pynq.transforms import preprocess

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "shapes_default.yaml"),
                      list(TINY_OVERRIDES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # light on a shared 2-core machine, and deterministic
    try:
        torch.manual_seed(seed)
        model = build_model(cfg.model)
        # a fresh network's activations vanish (BN running variance 1, tiny head weights): set the BN
        # statistics from a few images, then give the heads weights that make image-dependent outputs
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.momentum = None  # cumulative average
        s = cfg.model.input_size
        sizes = [(s, s), (120, 160), (200, 90), (48, 300)]
        batch = np.stack([preprocess(make_image(h, w, seed=i), s)[0] for i, (h, w) in enumerate(sizes)])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            model.train()
            model(x)
            model.eval()
            out = model(x)
            # scale each head so that its outputs stay within mean +- spread on these images
            for name, spread, mean in (("hm", 4.0, -2.5), ("wh", 2.0, 6.0), ("reg", 0.4, 0.0)):
                head = getattr(model, name)
                dev = out[name] - out[name].mean(dim=(0, 2, 3), keepdim=True)
                head.out.weight.mul_(spread / max(float(dev.abs().max()), 1e-12))
                head.out.bias.zero_()
                centred = head(model.decoder(model.backbone(x))).mean(dim=(0, 2, 3))
                head.out.bias.copy_(mean - centred)
        return export_float(model, cfg, path, extra={"metrics": dict(TINY_METRICS)})
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny float artifact (64 x 64 input, 5 shape classes); do not modify it."""
    return build_tiny_artifact(str(tmp_path_factory.mktemp("artifact") / "tiny.codenet"))


@pytest.fixture
def tiny_copy(tiny_artifact: str, tmp_path: Path) -> str:
    """A private copy of the tiny artifact that a test may damage."""
    dst = tmp_path / "model.codenet"
    dst.write_bytes(Path(tiny_artifact).read_bytes())
    return str(dst)


def make_image(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A BGR uint8 test image: noise plus a few filled shapes."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    s = max(4, min(h, w) // 4)
    cv2.circle(img, (w // 4, h // 3), s // 2, (40, 200, 240), -1)
    cv2.rectangle(img, (w // 2, h // 2), (min(w - 1, w // 2 + s), min(h - 1, h // 2 + s)), (220, 60, 30), -1)
    return img


def write_png(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


# ---------------------------------------------------------------- shared by several test modules

@pytest.fixture(scope="session")
def emu_lib() -> Path:
    """The host emulation library of the HLS engine (built by make on first use)."""
    from quant_fixtures import build_emu_lib

    return build_emu_lib()


@pytest.fixture(scope="session")
def quant_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny quantized (W4A8) artifact with a random-weight CoDeNet program."""
    from quant_fixtures import build_quant_artifact

    return build_quant_artifact(str(tmp_path_factory.mktemp("quant") / "tiny_w4a8.codenet"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one intra-op thread is as fast, and does not spin against other load."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
