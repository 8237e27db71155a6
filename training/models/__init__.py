"""CoDeNet model: ShuffleNetV2 backbone, deformable decoder, CenterNet heads."""

from .blocks import DEFAULT_VARIANT, VARIANTS, make_block
from .centernet import CoDeNet, ModelConfig, build_model, conv_macs, count_parameters

__all__ = ["CoDeNet", "ModelConfig", "build_model", "conv_macs", "count_parameters", "make_block", "VARIANTS",
           "DEFAULT_VARIANT"]
