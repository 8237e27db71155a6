"""Bad-input suite, group ``descriptors``: hostile descriptor tables and weight blobs given to the
accelerator (emulation library, single DRAM image, and the emulated IP through the driver).

Each case must be refused with a status (or a BackendError naming the descriptor), never crash or
touch memory the checker did not prove (a segfault ends the group's process: counted as a crash).
Registered into tests/bad_input_cases.py's table by import (``_load_extensions``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bad_input_cases import case, refused

_CACHE: dict = {}


def _setup():
    if not _CACHE:
        from codenet_pynq.accel import emulib
        from codenet_pynq.accel.compile import compile_program
        from codenet_pynq.accel.params import load_params
        from codenet_pynq.synthetic import random_program

        prog = random_program(np.random.default_rng(0), input_hw=(32, 32))
        _CACHE.update(lib=emulib.load_library(), cp=compile_program(prog, verify="never"), p=load_params(),
                      prog=prog)
    return _CACHE["lib"], _CACHE["cp"], _CACHE["p"]


def _status(words: np.ndarray, wgt=None, act_size=None) -> int:
    lib, cp, _ = _setup()
    desc = np.frombuffer(words.astype("<u4").tobytes(), np.uint8).copy()
    w = cp.weights if wgt is None else wgt
    act = np.zeros(cp.act_size if act_size is None else act_size, np.uint8)
    status, _cyc = lib.run_ports(desc, words.shape[0], w, act)
    return status


def _first(op_name: str) -> int:
    _, cp, _ = _setup()
    return next(d.index for d in cp.info if d.op.startswith(op_name))


def _expect(status: int, code_name: str, layer: int) -> None:
    _, _, p = _setup()
    code = getattr(p, f"STATUS_{code_name}")
    assert status & 0xFFFF == code and status >> 16 == layer, (hex(status), code_name, layer)


@case("descriptors")
def maxpool_output_larger_than_input(d: Path):
    _, cp, p = _setup()
    w = cp.descriptors.copy()
    i = _first("maxpool")
    h, wd = w[i, p.D_IN_HW] & 0xFFFF, w[i, p.D_IN_HW] >> 16
    w[i, p.D_OUT_HW] = (h + 5) | ((wd + 5) << 16)  # the segfault of the previous engine
    _expect(_status(w), "BAD_SIZE", i)


@case("descriptors")
def segment_beyond_activations(d: Path):
    _, cp, p = _setup()
    w = cp.descriptors.copy()
    w[3, p.D_SEG_BASE] = cp.act_size  # first segment's buffer starts at the end of the region
    _expect(_status(w), "BAD_ADDR", 3)


@case("descriptors")
def output_beyond_activations(d: Path):
    _, cp, p = _setup()
    w = cp.descriptors.copy()
    w[1, p.D_OUT_ADDR] = cp.act_size - 16
    _expect(_status(w), "BAD_ADDR", 1)


@case("descriptors")
def weights_beyond_blob(d: Path):
    _, cp, p = _setup()
    w = cp.descriptors.copy()
    w[0, p.D_W_ADDR] = cp.weights.size - 16
    _expect(_status(w), "BAD_ADDR", 0)


@case("descriptors")
def shift_zero_and_wide_multiplier(d: Path):
    _, cp, p = _setup()
    q = int(cp.descriptors[0, p.D_Q_ADDR])
    wgt = cp.weights.copy()
    wgt[q + 6] = 0  # S = 0: an undefined shift in the contract's arithmetic
    _expect(_status(cp.descriptors, wgt), "BAD_PARAM", 0)
    wgt = cp.weights.copy()
    wgt[q + 5] = 0x80  # M = 2^15
    _expect(_status(cp.descriptors, wgt), "BAD_PARAM", 0)


@case("descriptors")
def bad_magic_op_flags(d: Path):
    _, cp, p = _setup()
    w = cp.descriptors.copy()
    w[2, p.D_HEADER] ^= 1 << 20
    _expect(_status(w), "BAD_MAGIC", 2)
    w = cp.descriptors.copy()
    w[2, p.D_HEADER] = (int(w[2, p.D_HEADER]) & 0xFFFFFF00) | 9
    _expect(_status(w), "BAD_OP", 2)
    w = cp.descriptors.copy()
    w[2, p.D_FLAGS] |= 1 << 7
    _expect(_status(w), "BAD_OP", 2)


@case("descriptors")
def sizes_and_alignment(d: Path):
    _, cp, p = _setup()
    for word, value in ((p.D_CH, 0), (p.D_NSEG, 0), (p.D_NSEG, p.MAX_SEGS + 1), (p.D_IN_HW, 0),
                        (p.D_IN_HW, (p.MAX_W + 1) | (4 << 16)), (p.D_OUT_ADDR, 8)):
        w = cp.descriptors.copy()
        w[4, word] = value
        _expect(_status(w), "BAD_SIZE", 4)


@case("descriptors")
def table_shorter_than_n_layers_and_too_many(d: Path):
    lib, cp, p = _setup()
    desc = np.ascontiguousarray(cp.desc_bytes())
    st, _ = lib.run_ports(desc[: desc.size // 2], cp.n_layers, cp.weights, cp.new_activations())
    assert st & 0xFFFF == p.STATUS_BAD_ADDR
    st, _ = lib.run_ports(desc, p.MAX_LAYERS + 1, cp.weights, cp.new_activations())
    assert st & 0xFFFF == p.STATUS_BAD_COUNT


@case("descriptors")
def dram_image_addresses_outside(d: Path):
    lib, cp, p = _setup()
    dram = cp.dram_image(np.zeros((32, 32, 3), np.uint8))
    st, _ = lib.run_dram(dram, cp.desc_offset, cp.n_layers, cp.wgt_offset, dram.size + 16)
    assert st & 0xFFFF == p.STATUS_BAD_ADDR
    st, _ = lib.run_dram(dram[: cp.act_offset + 64].copy(), cp.desc_offset, cp.n_layers, cp.wgt_offset,
                         cp.act_offset)
    assert st & 0xFFFF == p.STATUS_BAD_ADDR


@case("descriptors")
def random_mutations_never_crash(d: Path):
    lib, cp, p = _setup()
    rng = np.random.default_rng(7)
    refused_n = 0
    for _ in range(300):
        w = cp.descriptors.copy()
        for _k in range(int(rng.integers(1, 4))):
            i, k = int(rng.integers(0, w.shape[0])), int(rng.integers(0, 40))
            w[i, k] = int(rng.integers(0, 1 << 32)) if rng.random() < 0.5 else int(rng.integers(0, 600))
        refused_n += _status(w) != 0
    assert refused_n > 100  # most random damage is refused; the rest ran inside its proven extents


@case("descriptors")
def corrupt_table_through_the_driver(d: Path):
    """A corrupt table reaching the emulated IP: the driver raises a BackendError naming the status."""
    from codenet_pynq.artifact import default_model_path, load_artifact
    from codenet_pynq.backends.emulator import EmulatorBackend

    be = EmulatorBackend(load_artifact(default_model_path()))
    try:
        desc = be.accelerator.buffers["desc"]  # the table the driver uploaded, damaged in DRAM
        desc[3 * 96 * 4 + 2] ^= 0x10  # descriptor 3's magic
        desc.sync_to_device()
        x = np.zeros(be.accelerator.compiled.input.shape, np.uint8)
        refused(lambda: be.run(x), "descriptor 3")
    finally:
        be.close()
