"""Tiny real ONNX graphs for artifact tests (load_artifact reads the graph's input and output shapes)."""

from __future__ import annotations

from typing import Dict, Optional


def tiny_graph(size: int = 64, classes: int = 2, down_ratio: int = 4, metadata: Optional[Dict[str, str]] = None,
               input_shape: Optional[list] = None) -> bytes:
    """A graph taking a 1 x size x size x 3 uint8 image with hm/wh/reg outputs (symbolic shapes)."""
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, input_shape or [1, size, size, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_{i}" for i in range(4)])
            for n in ("hm", "wh", "reg")]
    nodes = [helper.make_node("Cast", ["image"], [n], to=TensorProto.FLOAT) for n in ("hm", "wh", "reg")]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [image], outs),
                              opset_imports=[helper.make_opsetid("", 17)])
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()
