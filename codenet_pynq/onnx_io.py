"""The inputs, outputs and metadata of an ONNX graph, read from its bytes without the onnx package.

The runtime depends on ONNX Runtime only; to check a model file at load (its input size, its
output scales) this module walks the few protobuf fields that hold them (``ModelProto.graph`` ->
``GraphProto.input/output`` -> ``ValueInfoProto`` -> tensor shape, and
``ModelProto.metadata_props``) and skips every other field by its length, so the weights are
never copied. Malformed bytes raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple, Union

__all__ = ["GraphIO", "graph_io"]

Dim = Union[int, str, None]  # a size, a symbolic name, or unknown

# field numbers of onnx.proto (ModelProto, GraphProto, ValueInfoProto, TypeProto, ...)
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM = 1, 2, 1
_DIM_VALUE, _DIM_PARAM = 1, 2
_TENSOR_NAME = 8  # TensorProto.name (initializers)
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


@dataclass
class GraphIO:
    """Graph inputs (initializers excluded) and outputs as (name, dims), and the metadata strings."""

    inputs: List[Tuple[str, List[Dim]]] = field(default_factory=list)
    outputs: List[Tuple[str, List[Dim]]] = field(default_factory=list)
    metadata: Dict[str, str] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[Tuple[int, Union[int, memoryview]]]:
    """(field number, value) for each field: an int (varint) or the bytes (length-delimited)."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Union[int, memoryview]
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = 0, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = 0, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > n or number == 0:
            raise ValueError("truncated or malformed protobuf data")
        yield number, value


def _text(value: Union[int, memoryview]) -> str:
    if isinstance(value, int):
        raise ValueError("a string field holds a number")
    return bytes(value).decode("utf-8")


def _sub(value: Union[int, memoryview]) -> memoryview:
    if isinstance(value, int):
        raise ValueError("a message field holds a number")
    return value


def _value_info(buf: memoryview) -> Tuple[str, List[Dim]]:
    name, dims = "", []
    for num, val in _fields(buf):
        if num == _VALUE_NAME:
            name = _text(val)
        elif num == _VALUE_TYPE:
            for tnum, tval in _fields(_sub(val)):
                if tnum != _TYPE_TENSOR:
                    continue
                for snum, sval in _fields(_sub(tval)):
                    if snum != _TENSOR_SHAPE:
                        continue
                    for dnum, dval in _fields(_sub(sval)):
                        if dnum == _SHAPE_DIM:
                            dims.append(_dim(_sub(dval)))
    return name, dims


def _dim(buf: memoryview) -> Dim:
    out: Dim = None
    for num, val in _fields(buf):
        if num == _DIM_VALUE and isinstance(val, int):
            out = val
        elif num == _DIM_PARAM:
            out = _text(val)
    return out


def graph_io(data: Union[bytes, memoryview]) -> GraphIO:
    """Read the graph's inputs, outputs and metadata from serialized ONNX ``data``."""
    buf = memoryview(data)
    io = GraphIO()
    graph: Optional[memoryview] = None
    for num, val in _fields(buf):
        if num == _MODEL_GRAPH:
            graph = _sub(val)
        elif num == _MODEL_METADATA:
            entry = {n: _text(v) for n, v in _fields(_sub(val)) if n in (_ENTRY_KEY, _ENTRY_VALUE)}
            io.metadata[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    if graph is None:
        raise ValueError("no graph in the model")
    initializers = set()
    inputs = []
    for num, val in _fields(graph):
        if num == _GRAPH_INPUT:
            inputs.append(_value_info(_sub(val)))
        elif num == _GRAPH_OUTPUT:
            io.outputs.append(_value_info(_sub(val)))
        elif num == _GRAPH_INITIALIZER:
            initializers.update(_text(v) for n, v in _fields(_sub(val)) if n == _TENSOR_NAME)
    io.inputs = [(name, dims) for name, dims in inputs if name not in initializers]
    return io
