"""The HLS engine, run on the host, against the numpy golden executor: zero mismatches.

Two builds of the same C++ (hls_src/): the C-simulation testbench with Xilinx ap_int types
(``make csim`` path, build/tb_codenet) and the emulation library (build/libcodenet_emu.so, native
integer types) through codenet_pynq.accel.emulib.  Both are built once per session by make and
cached under hls_src/build/.  Skipped only when no C++ compiler exists; missing ap_int headers
fail with the Makefile's message (CI installs hls4ml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest

from codenet_pynq.accel import emulib
from codenet_pynq.accel.compile import compile_program
from codenet_pynq.accel.params import load_params
from codenet_pynq.accel.vectors import write_program_vectors
from codenet_pynq.errors import BackendError
from codenet_pynq.golden import run_program
from codenet_pynq.program import Program
from codenet_pynq.synthetic import ProgramBuilder, codenet_like_program, random_program

ROOT = Path(__file__).resolve().parents[1]
HLS = ROOT / "hls_src"
P = load_params()


@pytest.fixture(scope="session")
def hls_build() -> Path:
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx!r} not on PATH): the HLS engine cannot be built here")
    jobs = "-j2"
    r = subprocess.run(["make", "-C", str(HLS), jobs, "lib", "build/tb_codenet"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the HLS engine failed (make -C hls_src lib build/tb_codenet):\n{r.stdout}\n{r.stderr}")
    return HLS / "build"


@pytest.fixture(scope="session")
def lib(hls_build: Path) -> emulib.EmuLibrary:
    return emulib.load_library(hls_build / "libcodenet_emu.so")


def image_for(prog: Program, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1000).integers(0, 256, prog.tensors[prog.input].shape, dtype=np.uint8)


def compare_all(prog: Program, lib: emulib.EmuLibrary, seed: int = 0) -> Dict[str, int]:
    """Mismatch count of every tensor the engine leaves in DRAM (no buffer reuse)."""
    img = image_for(prog, seed)
    gold = run_program(prog, img, return_all=True)
    cp = compile_program(prog, reuse=False)
    got = emulib.run(cp, img, return_all=True, lib=lib)
    assert set(prog.outputs) <= set(got)
    return {name: int(np.count_nonzero(got[name].astype(np.int32) != gold[name].astype(np.int32))) for name in got}


# --------------------------------------------------------------------------- single layers
def _b(hw=(16, 16), max_offset=4, seed=0) -> ProgramBuilder:
    return ProgramBuilder(np.random.default_rng(seed), hw, max_offset=max_offset)


def case_stem() -> Program:
    b = _b((33, 31))
    return b.build({"hm": b.conv("image", 12, k=3, stride=2, bits=8, name="stem")})


def case_pointwise() -> Program:
    b = _b()
    x = b.conv("image", 20, k=1, kind="s8")
    y = b.conv(x, 37, k=1, kind="u8", name="pw_from_s8")
    z = b.conv(y, 5, k=1, stride=2, kind="s8", name="pw_s2")
    return b.build({"hm": z, "wh": x})


def case_dense3x3() -> Program:
    b = _b((15, 17))
    x = b.conv("image", 9, k=1, kind="s8")
    y = b.conv(x, 18, k=3, kind="u8", name="k3")
    z = b.conv(y, 7, k=3, stride=2, kind="s8", name="k3s2")
    w = b.conv(z, 6, k=3, pad=0, kind="u8", name="k3valid")
    return b.build({"hm": w})


def case_depthwise() -> Program:
    b = _b((19, 14))
    x = b.conv("image", 21, k=1, kind="u8")
    y = b.conv(x, 21, k=3, groups=21, kind="s8", name="dw")
    z = b.conv(y, 21, k=3, stride=2, groups=21, kind="s8", name="dw_s2")
    w = b.conv(z, 21, k=3, groups=21, dilation=3, kind="u8", name="dw_d3")
    v = b.conv(w, 21, k=3, groups=21, pad=0, kind="u8", name="dw_valid")
    return b.build({"hm": v})


def case_maxpool_upsample() -> Program:
    b = _b((15, 13))
    x = b.conv("image", 6, k=1, kind="s8")
    m = b.maxpool(x)
    u = b.upsample(m)  # folded into the max pool's write
    v = b.upsample("image")  # not foldable: a MOVE descriptor
    return b.build({"hm": u, "wh": v})


def case_views() -> Program:
    b = _b((8, 8))
    x = b.conv("image", 12, k=1, kind="u8")
    left, right = b.slice(x, 0, 5), b.slice(x, 5, 12)
    r = b.conv(right, 7, k=1, kind="u8", out_scale=b.tensors[x].scale)
    c = b.concat([r, left])
    s = b.shuffle(c, 3)
    y = b.conv(s, 4, k=3, groups=1, kind="s8", name="after_shuffle")
    d = b.conv(s, 12, k=3, groups=12, kind="u8", name="dw_after_shuffle")
    return b.build({"hm": y, "wh": s, "reg": d})


def case_gather() -> Program:
    # channels reversed one by one: a depthwise conv cannot read that in MAX_SEGS segments with
    # a logical output order, so the compiler gathers it (MOVE descriptors) first
    b = _b((6, 7))
    x = b.conv("image", P.MAX_SEGS + 4, k=1, kind="u8")
    c = b.tensors[x].shape[2]
    rev = b.concat([b.slice(x, i, i + 1) for i in reversed(range(c))])
    y = b.conv(rev, c, k=3, groups=c, kind="s8", name="dw_rev")
    z = b.conv(rev, 5, k=1, kind="s8", name="pw_rev")  # dense: one segment, permuted weights
    return b.build({"hm": y, "wh": z, "reg": rev})


def case_square_block() -> Program:
    b = _b((21, 18), max_offset=8)
    x = b.conv("image", 10, k=1, kind="u8")
    y = b.square_block(x, 24, "blk", pw_kind="s8")
    u = b.upsample(y)
    return b.build({"hm": u})


def case_square_block_unfused() -> Program:
    b = _b((12, 12), max_offset=6)
    x = b.conv("image", 8, k=1)
    p = b.conv(x, 8, k=1, kind="u8", name="pw")
    o = b.conv(p, 1, k=1, kind="off", name="off")
    y = b.conv(p, 8, k=3, groups=8, offset=o, name="dw")
    return b.build({"hm": y, "wh": p, "reg": o})


def case_pw_dw_stride2() -> Program:
    b = _b((17, 16))
    x = b.conv("image", 8, k=1)
    p = b.conv(x, 40, k=1, kind="u8", name="pw")
    y = b.conv(p, 40, k=3, stride=2, groups=40, kind="s8", name="dw_s2")
    return b.build({"hm": y})


def case_wide_channels() -> Program:
    # weight-buffer chunking: dense 1024 -> 520, dense 3x3 256 -> 256, fused block 1024 -> 512
    b = _b((4, 4), max_offset=8)
    x = b.conv("image", 1024, k=1, kind="u8", name="expand")
    y = b.conv(x, 520, k=1, kind="s8", name="pw_chunked")
    z = b.conv(b.conv(x, 256, k=1, name="to256"), 256, k=3, kind="u8", name="k3_chunked")
    q = b.square_block(x, 512, "blk")
    return b.build({"hm": y, "wh": z, "reg": q})


def case_wide_rows() -> Program:
    # a depthwise row of 128 x 160 channels exceeds one line-buffer row: channel groups
    b = _b((9, 128))
    x = b.conv("image", 160, k=1, kind="u8")
    y = b.conv(x, 160, k=3, groups=160, kind="s8", name="dw_groups")
    m = b.maxpool(x)
    return b.build({"hm": y, "wh": m})


def case_small_codenet() -> Program:
    return codenet_like_program(np.random.default_rng(0), input_size=64, stage_channels=(8, 16, 32, 64, 96),
                                decoder=(32, 16, 16), head=16, num_classes=3, stage_repeats=(2, 3, 2))


CASES: Dict[str, Callable[[], Program]] = {f.__name__[5:]: f for f in (
    case_stem, case_pointwise, case_dense3x3, case_depthwise, case_maxpool_upsample, case_views,
    case_gather, case_square_block, case_square_block_unfused, case_pw_dw_stride2, case_wide_channels, case_wide_rows,
    case_small_codenet)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_types_lib(lib, name):
    bad = compare_all(CASES[name](), lib)
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}


@pytest.mark.parametrize("seed", range(10))
def test_random_programs_lib(lib, seed):
    prog = random_program(np.random.default_rng(seed), input_hw=(32, 32) if seed % 2 else (24, 40))
    bad = compare_all(prog, lib, seed)
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}


def _csim(hls_build: Path, folders) -> subprocess.CompletedProcess:
    return subprocess.run([str(hls_build / "tb_codenet"), *map(str, folders)], capture_output=True, text=True,
                          timeout=600)


def test_csim_testbench_all_layer_types_and_random_programs(hls_build, tmp_path):
    """The ap_int build (the code Vitis HLS C-simulates) through the C testbench."""
    folders = []
    for name, make in sorted(CASES.items()):
        prog = make()
        write_program_vectors(prog, image_for(prog), tmp_path / name)
        folders.append(tmp_path / name)
    for seed in range(6):
        prog = random_program(np.random.default_rng(seed), input_hw=(32, 32))
        write_program_vectors(prog, image_for(prog, seed), tmp_path / f"random_{seed}")
        folders.append(tmp_path / f"random_{seed}")
    r = _csim(hls_build, folders)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"csim: {len(folders)} folder(s), 0 mismatches, 0 errors" in r.stdout


def test_csim_testbench_separate_ports_cosim_form(hls_build, tmp_path):
    """The co-simulation form: one start per descriptor, separate act_rd / act_wr arrays."""
    folders = []
    for seed in (0, 1):
        prog = random_program(np.random.default_rng(seed), input_hw=(32, 32))
        write_program_vectors(prog, image_for(prog, seed), tmp_path / f"r{seed}")
        folders.append(tmp_path / f"r{seed}")
    r = subprocess.run([str(hls_build / "tb_codenet"), "--separate-ports", *map(str, folders)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "csim: 2 folder(s), 0 mismatches, 0 errors" in r.stdout


def test_csim_testbench_reports_mismatches(hls_build, tmp_path):
    prog = case_square_block()
    write_program_vectors(prog, image_for(prog), tmp_path / "v")
    meta = (tmp_path / "v" / "meta.txt").read_text()
    expect = tmp_path / "v" / meta.split("check ")[1].split()[5]
    data = bytearray(expect.read_bytes())
    data[3] ^= 0x01
    expect.write_bytes(bytes(data))
    r = _csim(hls_build, [tmp_path / "v"])
    assert r.returncode == 1 and "MISMATCH" in r.stdout and "1 mismatches" in r.stdout


def test_make_csim_target(hls_build, tmp_path):
    prog = random_program(np.random.default_rng(7), input_hw=(32, 32))
    write_program_vectors(prog, image_for(prog), tmp_path / "vec" / "r7")
    r = subprocess.run(["make", "-C", str(HLS), "csim", f"VECTORS={tmp_path / 'vec'}"], capture_output=True, text=True)
    assert r.returncode == 0 and "0 mismatches, 0 errors" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------- whole network
def _codenet(size: int, lib, csim_dir=None, hls_build=None, width: float = 1.0) -> None:
    rng = np.random.default_rng(size)
    prog = codenet_like_program(rng, input_size=size, width=width, decoder=(512, 256, 128), head=128)
    img = image_for(prog)
    gold = run_program(prog, img)
    cp = compile_program(prog)
    times = []
    for _ in range(2):
        act, stats = emulib.run_compiled(cp, img, lib)
        times.append(stats["seconds"])
    outs = cp.read_outputs(act)
    bad = {k: int(np.count_nonzero(outs[k].astype(np.int32) != gold[k].astype(np.int32))) for k in gold}
    assert sum(bad.values()) == 0, bad
    print(f"\n[codenet_like {width}x {size}] {cp.n_layers} descriptors, emulation {min(times):.3f} s/frame, "
          f"counted {stats['cycles'] / 250e6 * 1e3:.1f} ms at 250 MHz, mismatches {bad}")
    if csim_dir is not None:
        write_program_vectors(prog, img, csim_dir, check_all=False)
        t0 = time.perf_counter()
        r = _csim(hls_build, [csim_dir])
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
        print(f"[codenet_like {width}x {size}] C simulation (ap_int) {time.perf_counter() - t0:.2f} s: {r.stdout.splitlines()[-1]}")


def test_codenet_like_256_whole_network(lib, hls_build, tmp_path):
    _codenet(256, lib, tmp_path / "codenet256", hls_build)


def test_codenet_like_2x_128_whole_network(lib):
    _codenet(128, lib, width=2.0)  # conv5 has 2048 channels (CN_MAX_C)


@pytest.mark.slow
def test_codenet_like_512_whole_network(lib, hls_build, tmp_path):
    _codenet(512, lib, tmp_path / "codenet512", hls_build)


# --------------------------------------------------------------------------- errors
def test_engine_rejects_bad_descriptors(lib):
    prog = case_stem()
    cp = compile_program(prog)
    desc = cp.desc_bytes().copy()
    assert lib.check(desc, cp.n_layers, cp.weights, cp.act_size) == 0
    bad = desc.copy()
    bad[2] ^= 0xFF  # magic
    assert lib.check(bad, cp.n_layers, cp.weights, cp.act_size) & 0xFFFF == P.STATUS_BAD_MAGIC
    assert lib.check(desc, cp.n_layers, cp.weights, cp.act_size // 2 // 16 * 16) & 0xFFFF == P.STATUS_BAD_ADDR
    assert lib.check(desc, cp.n_layers, cp.weights[:cp.weights.size // 2 // 16 * 16], cp.act_size) & 0xFFFF == \
        P.STATUS_BAD_ADDR
    # a requantisation shift of 0 (UB in the contract's 64-bit shift) is refused before running
    q = cp.weights.copy()
    q[int(cp.descriptors[0, P.D_Q_ADDR]) + 6] = 0
    assert lib.check(desc, cp.n_layers, q, cp.act_size) & 0xFFFF == P.STATUS_BAD_PARAM
    status, _ = lib.run_ports(bad, cp.n_layers, cp.weights, cp.new_activations())
    assert status & 0xFFFF == P.STATUS_BAD_MAGIC
    words = cp.descriptors.copy()
    words[0, P.D_CH] = (words[0, P.D_CH] & 0xFFFF) | ((P.MAX_C + 1) << 16)
    status, _ = lib.run_ports(np.frombuffer(words.astype("<u4").tobytes(), np.uint8).copy(), cp.n_layers,
                              cp.weights, cp.new_activations())
    assert status & 0xFFFF == P.STATUS_BAD_SIZE
    with pytest.raises(BackendError, match="descriptor 0"):
        cp.descriptors[0, 0] ^= 1
        emulib.run(cp, image_for(prog), lib=lib)


def test_single_dram_image_entry_point(lib):
    prog = random_program(np.random.default_rng(5), input_hw=(32, 32))
    img = image_for(prog)
    cp = compile_program(prog)
    dram = cp.dram_image(img)
    status, cycles = lib.run_dram(dram, cp.desc_offset, cp.n_layers, cp.wgt_offset, cp.act_offset)
    assert status == 0 and cycles > 0
    gold = run_program(prog, img)
    outs = cp.read_outputs(dram[cp.act_offset:])
    assert all(np.array_equal(outs[k], gold[k]) for k in gold)


def test_missing_library_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(emulib, "_default_candidates", lambda: [tmp_path / "nope.so"])
    monkeypatch.delenv("CODENET_EMU_LIB", raising=False)
    with pytest.raises(BackendError, match="make -C hls_src lib"):
        emulib.find_library()


# --------------------------------------------------------------------------- issue-11 checks via make csim
def _make_csim(args, tmp_path: Path) -> str:
    out = tmp_path / "vec"
    subprocess.run([sys.executable, "-m", "codenet_pynq.accel.vectors", "--out", str(out), *args], check=True,
                   capture_output=True, text=True, timeout=900)
    r = subprocess.run(["make", "-C", str(HLS), "csim", f"VECTORS={out}"], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0 and " 0 mismatches, 0 errors" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    return r.stdout


def test_make_csim_shipped_model_and_fpga21_256(hls_build, tmp_path):
    """`make -C hls_src csim` after writing vectors as documented: the shipped model and the FPGA'21
    1.0x network (stride-4 stem, decoder 256/128/64, head 64) at 256, ap_int build."""
    model = ROOT / "codenet_pynq" / "models" / "shapes_default.codenet"
    out = _make_csim(["--model", str(model), "--fpga21", "256", "--random", "2"], tmp_path)
    assert "csim: 4 folder(s)" in out


@pytest.mark.slow
def test_make_csim_fpga21_512(hls_build, tmp_path):
    assert "csim: 1 folder(s)" in _make_csim(["--fpga21", "512"], tmp_path)


def test_compiler_runs_the_engine_checker(lib, monkeypatch):
    """One checker: the compiler proves each table with the engine's own codenet_check."""
    from codenet_pynq.accel import compile as comp
    from codenet_pynq.program import ProgramError

    prog = random_program(np.random.default_rng(3), input_hw=(32, 32))
    compile_program(prog, verify="always")
    real = comp._Compiler.encode

    def bad_encode(self, d):  # a planted compiler bug: an output beyond the activation region
        w = real(self, d)
        w[P.D_OUT_ADDR] = (1 << 30) - 64
        return w

    monkeypatch.setattr(comp._Compiler, "encode", bad_encode)
    with pytest.raises(ProgramError, match="engine's checker"):
        compile_program(prog, verify="always")
    compile_program(prog, verify="never")  # the planted bug passes unverified


# --------------------------------------------------------------------------- weight / parameter prefetch
def _next_param_words(desc_row: np.ndarray) -> int:
    """Bias/M/S words a descriptor's stages load (8 words per 16-channel group and table)."""
    op = int(desc_row[P.D_HEADER]) & 0xFF
    n_mid = -(-(int(desc_row[P.D_CH]) >> 16) // 16)
    return {P.OP_DENSE: 8 * n_mid, P.OP_DWBLOCK: 8 * n_mid}.get(op, 0)


def test_prefetch_charges_the_next_descriptors_parameters_concurrently(lib):
    """Descriptor i's region prefetches descriptor i+1's parameters and MAC chunk 0 (cn_fetch): they are
    counted on the weight bundle of record i, a term of the max() that overlaps the stages; only
    descriptor 0 has a serial parameter load; no word of the weight region is read twice a frame."""
    prog = random_program(np.random.default_rng(5), input_hw=(32, 32))
    cp = compile_program(prog)
    acc = emulib.account(cp, image_for(prog), lib=lib)
    assert acc[0]["beats"]["params"] > 0 and acc[0]["loops"]["params"] > 0
    assert all(a["beats"]["params"] == 0 and a["loops"]["params"] == 0 for a in acc[1:])
    words = cp.descriptors
    assert any(_next_param_words(words[i + 1]) for i in range(cp.n_layers - 1))
    for i, a in enumerate(acc):
        nxt = _next_param_words(words[i + 1]) if i + 1 < cp.n_layers else 0
        assert a["beats"]["weights"] >= nxt
        assert a["loops"]["fetch"] >= a["beats"]["weights"]
        assert a["cycles"][250.0] >= a["beats"]["weights"]  # the fetch is one of the overlapped terms
    # every record once (the padding that 64-byte aligns the records is not read)
    assert cp.weights.size // 16 - 4 * cp.n_layers * 4 <= sum(a["beats"]["params"] + a["beats"]["weights"]
                                                              for a in acc) <= cp.weights.size // 16


def _wide_pointwise(hw) -> Program:
    b = _b(hw)
    x = b.conv("image", 1024, k=1, name="widen")
    return b.build({"hm": b.conv(x, 512, k=1, kind="s8", name="wide")})


def test_prefetch_tail_when_chunk_weights_exceed_the_hidden_budget(lib):
    """`wide` (1024 -> 512 pointwise) has two weight chunks of 8,192 words.  Its chunk 0 and bias/M/S
    (256 words) are prefetched during `widen`'s region, its chunk 1 while its chunk 0 computes, one
    word per MAC-loop iteration: the loops hide pixels x 64 and pixels x 1024 words, the MAC stage
    waits for the rest (tail fills, counted in its loop cycles).  At 8 x 8 `wide` hides its chunk 1,
    at 2 x 2 it does not.  Bit-exact either way."""
    for hw in ((2, 2), (8, 8)):
        prog = _wide_pointwise(hw)
        assert all(v == 0 for v in compare_all(prog, lib).values())
        cp = compile_program(prog)
        acc = emulib.account(cp, image_for(prog), lib=lib)
        i = [k for k, inf in enumerate(cp.info) if inf.layers[0] == "wide"][0]
        assert cp.info[i - 1].layers[0] == "widen"
        assert acc[i - 1]["beats"]["weights"] == 256 + 8192 and acc[i]["beats"]["weights"] == 8192
        px = hw[0] * hw[1]
        assert acc[i - 1]["tail_words"] == 256 + 8192 - px * 64
        assert acc[i]["tail_words"] == max(0, 8192 - px * 1024)
        for a in acc[i - 1:i + 1]:
            assert a["loops"]["mac"] >= a["tail_words"]


def test_engine_refuses_bad_parameters_at_the_right_descriptor(lib):
    """The prefetch checks descriptor i+1's M / S while descriptor i runs: a bad table still stops the
    run before descriptor i+1 with status BAD_PARAM | (i+1) << 16, after descriptor i's output is
    written (the host's own proof of the table is bypassed for this)."""
    import ctypes

    prog = random_program(np.random.default_rng(3), input_hw=(16, 16))
    cp = compile_program(prog, reuse=False)
    img = image_for(prog)
    fn = lib._lib.codenet_run_ports_engine_params
    fn.restype = ctypes.c_uint32
    u8p = ctypes.POINTER(ctypes.c_uint8)

    def run(wgt: np.ndarray):
        act = cp.new_activations()
        cp.write_input(act, img)
        desc = np.ascontiguousarray(cp.desc_bytes())
        cyc = ctypes.c_uint32(0)
        st = fn(desc.ctypes.data_as(u8p), ctypes.c_uint64(desc.size), ctypes.c_uint32(cp.n_layers),
                wgt.ctypes.data_as(u8p), ctypes.c_uint64(wgt.size), act.ctypes.data_as(u8p),
                ctypes.c_uint64(act.size), ctypes.byref(cyc))
        return int(st), act

    st, ref = run(cp.weights.copy())
    assert st == 0
    dense = [i for i in range(cp.n_layers) if int(cp.descriptors[i, P.D_HEADER]) & 0xFF == P.OP_DENSE]
    for i in (dense[0], dense[2]):
        wgt = cp.weights.copy()
        q = int(cp.descriptors[i, P.D_Q_ADDR])
        wgt[q + 5] = 0x80  # M = 2^15 for channel 0
        st, act = run(wgt)
        assert st == P.STATUS_BAD_PARAM | (i << 16)
        if i:  # the descriptor before it ran to the end
            prev = cp.info[i - 1].layers[-1]
            if prev in cp.placements:
                assert np.array_equal(cp.read_tensor(act, prev), cp.read_tensor(ref, prev))
