"""codenet_pynq/onnx_io.py reads the same inputs, outputs and metadata as the onnx package."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from codenet_pynq.onnx_io import graph_io

MODELS = Path(__file__).resolve().parents[1] / "codenet_pynq" / "models"


def _reference(data: bytes):
    import onnx

    m = onnx.load_from_string(data)
    init = {t.name for t in m.graph.initializer}

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
                for d in v.type.tensor_type.shape.dim]
    return ([(v.name, dims(v)) for v in m.graph.input if v.name not in init],
            [(v.name, dims(v)) for v in m.graph.output], {p.key: p.value for p in m.metadata_props})


@pytest.mark.parametrize("model, member", [("shapes_default.codenet", "model_int.onnx"),
                                           ("shapes_default_float.codenet", "model_float.onnx")])
def test_same_as_onnx_package(model: str, member: str) -> None:
    data = zipfile.ZipFile(MODELS / model).read(member)
    io = graph_io(data)
    assert (io.inputs, io.outputs, io.metadata) == _reference(data)
    assert io.inputs[0][1] == [1, 256, 256, 3]


def test_malformed_bytes_raise_value_error() -> None:
    data = zipfile.ZipFile(MODELS / "shapes_default.codenet").read("model_int.onnx")
    for bad in (data[: len(data) // 2], b"\xff" * 32, b"\x3a\x05ab", b""):
        with pytest.raises(ValueError):
            graph_io(bad)
