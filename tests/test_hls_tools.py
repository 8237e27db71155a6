"""HLS lint and resource budget (hls_src/tools): each rule fails on a planted violation and passes
on the corrected code; the budget fails above 90 % and on arrays that drift from the source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("clang.cindex", reason="libclang wheel (dev extra) not installed")

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "hls_src" / "tools"
sys.path.insert(0, str(TOOLS))

import budget  # noqa: E402
import cn_expr  # noqa: E402
import hls_lint  # noqa: E402
import resource_rules as rr  # noqa: E402

PORTS = """#pragma HLS INTERFACE m_axi port=in
#pragma HLS INTERFACE m_axi port=out
"""


def lint_snippet(tmp_path: Path, body: str, name: str = "k.cpp"):
    src = tmp_path / name
    src.write_text(body, encoding="utf-8")
    return hls_lint.lint([str(src)], [str(tmp_path)])


def rules(findings) -> set:
    return {f.rule for f in findings}


# ------------------------------------------------------------------------------------ rule (a)
MAXI_BAD = """
static int tab[64];
void top(const int *in, int *out, int n) {
""" + PORTS + """
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        out[i] = in[tab[i & 63]];
    }
}
"""

MAXI_GOOD = """
static int tab[64];
void top(const int *in, int *out, int n) {
""" + PORTS + """
    const int base = tab[0];      // a scalar read once before the loop is loop-invariant
    const int stride = tab[1];
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        out[2 * i + 1] = in[base + i * stride];
    }
}
"""


def test_lint_maxi_table_lookup_fails_and_affine_passes(tmp_path):
    bad = lint_snippet(tmp_path, MAXI_BAD)
    assert [f.rule for f in bad] == ["maxi-affine"]
    assert "table lookup tab[" in bad[0].message and bad[0].line == 9
    assert lint_snippet(tmp_path, MAXI_GOOD) == []


CALLEE = """
static void load(const int *p, int *dst, int n) {
    for (int j = 0; j < n; j++) {
#pragma HLS PIPELINE II=1
        dst[j] = p[%s];
    }
}
void top(const int *in, int *out, int n) {
""" + PORTS + """
    static int buf[256];
    load(in + 16 * n, buf, n);
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        out[i] = buf[i];
    }
}
"""


def test_lint_maxi_follows_ports_through_calls(tmp_path):
    bad = lint_snippet(tmp_path, CALLEE % "j * j")
    assert rules(bad) == {"maxi-affine"}
    assert "'in'" in bad[0].message and "product of loop variables" in bad[0].message
    assert lint_snippet(tmp_path, CALLEE % "4 * j + 3") == []


# ------------------------------------------------------------------------------------ rule (b)
VARLOOP = """
void top(const int *in, int *out, int n, int m) {
""" + PORTS + """
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        int s = in[i];
        for (int k = 0; k < %s; k++) s += k;
        out[i] = s;
    }
}
"""


def test_lint_variable_bound_loop_in_pipeline(tmp_path):
    bad = lint_snippet(tmp_path, VARLOOP % "m")
    assert rules(bad) == {"pipeline-var-loop"}
    assert bad[0].line == 9
    assert lint_snippet(tmp_path, VARLOOP % "8") == []


CALL = """
static int scale(int a) {
%s
    return a * 3;
}
void top(const int *in, int *out, int n) {
""" + PORTS + """
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        out[i] = scale(in[i]);
    }
}
"""


def test_lint_non_inlined_call_in_pipeline(tmp_path):
    bad = lint_snippet(tmp_path, CALL % "")
    assert rules(bad) == {"pipeline-call"}
    assert "'scale'" in bad[0].message
    assert lint_snippet(tmp_path, CALL % "#pragma HLS INLINE") == []


# ------------------------------------------------------------------------------------ rule (c)
READS = """
void top(const int *in, int *out, int n) {
""" + PORTS + """
    static int buf[64];
%s
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=%d
        int s = 0;
        for (int k = 0; k < 8; k++) s += buf[k];
        out[i] = s + in[i];
    }
}
"""


def test_lint_too_many_reads_of_unpartitioned_array(tmp_path):
    bad = lint_snippet(tmp_path, READS % ("", 1))
    assert rules(bad) == {"ii"}
    assert "'buf' 8 distinct elements" in bad[0].message and "II >= 4" in bad[0].message
    # the declared II is met with 8 reads from 2 ports
    assert lint_snippet(tmp_path, READS % ("", 4)) == []
    # cyclic 4: 2 reads per bank, complete: 1 per bank, reshape cyclic 8: one wide word
    for fix in ("#pragma HLS ARRAY_PARTITION variable=buf cyclic factor=4",
                "#pragma HLS ARRAY_PARTITION variable=buf complete",
                "#pragma HLS ARRAY_RESHAPE variable=buf cyclic factor=8"):
        assert lint_snippet(tmp_path, READS % (fix, 1)) == [], fix
    # cyclic 2 still puts 4 reads on each bank
    assert rules(lint_snippet(tmp_path, READS % ("#pragma HLS ARRAY_PARTITION variable=buf cyclic factor=2", 1))) \
        == {"ii"}


def test_lint_reads_without_declared_ii_are_ports_findings(tmp_path):
    body = (READS % ("", 1)).replace("#pragma HLS PIPELINE II=1", "#pragma HLS PIPELINE")
    assert rules(lint_snippet(tmp_path, body)) == {"ports"}


BANKS = """
void top(const int *in, int *out, int n, int sel) {
""" + PORTS + """
    static int buf[4][64];
#pragma HLS ARRAY_PARTITION variable=buf complete dim=1
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
%s
    }
}
"""


def test_lint_runtime_selected_bank(tmp_path):
    bad = lint_snippet(tmp_path, BANKS % "        out[i] = buf[sel & 3][i & 63] + in[i];")
    assert rules(bad) == {"runtime-bank"}
    assert "runtime-selected bank" in bad[0].message and "'buf'" in bad[0].message
    good = "        int s = in[i];\n        for (int b = 0; b < 4; b++) s += buf[b][i & 63];\n        out[i] = s;"
    assert lint_snippet(tmp_path, BANKS % good) == []


def test_lint_cli_exit_codes(tmp_path, capsys):
    (tmp_path / "bad.cpp").write_text(VARLOOP % "m", encoding="utf-8")
    (tmp_path / "good.cpp").write_text(VARLOOP % "8", encoding="utf-8")
    assert hls_lint.main([str(tmp_path / "bad.cpp"), "-I", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad.cpp:9: pipeline-var-loop:" in out
    assert hls_lint.main([str(tmp_path / "good.cpp"), "-I", str(tmp_path)]) == 0
    (tmp_path / "notop.cpp").write_text("int f(int a) { return a; }\n", encoding="utf-8")
    assert hls_lint.main([str(tmp_path / "notop.cpp")]) == 2
    assert "no top function" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the engine
ENGINE = [str(ROOT / "hls_src" / "codenet_top.cpp"), str(ROOT / "hls_src" / "cn_desc.cpp")]


def test_the_engine_passes_the_lint_and_the_budget():
    """`make -C hls_src lint` and `budget` on the engine as it is: no finding, within 90 %."""
    import subprocess

    for target in ("lint", "budget"):
        r = subprocess.run(["make", "-C", str(ROOT / "hls_src"), target, f"PYTHON={sys.executable}"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"make {target}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert not hls_lint.lint(ENGINE, [str(ROOT / "hls_src")])


def test_a_planted_violation_in_the_engine_is_found(tmp_path):
    """The engine's row read turned into a table-addressed read: the lint names it."""
    import shutil

    src = tmp_path / "hls"
    shutil.copytree(ROOT / "hls_src", src, ignore=shutil.ignore_patterns("build", "tools"))
    load = (src / "cn_load.h").read_text(encoding="utf-8")
    planted = load.replace("srcrow[off + i] = act[base + i];",
                           "srcrow[off + i] = act[base + p.src_off[i % CN_MAX_SEGS]];")  # a table lookup
    assert planted != load
    (src / "cn_load.h").write_text(planted, encoding="utf-8")
    found = hls_lint.lint([str(src / "codenet_top.cpp"), str(src / "cn_desc.cpp")], [str(src)])
    assert any(f.rule == "maxi-affine" and "cn_load.h" in f.file for f in found), found


# ------------------------------------------------------------------------------------ budget rules
def test_bram_mapping_rules():
    assert rr.bram18_units(36, 512) == 1
    assert rr.bram18_units(72, 512) == 2            # one BRAM36 in 512 x 72 SDP
    assert rr.bram18_units(72, 512, tdp=True) == 4  # TDP is at most 36 wide
    assert rr.bram18_units(128, 512) == 4
    assert rr.bram18_units(1, 16384) == 1
    assert rr.bram18_units(8, 9728) == 5            # 2K x 9
    assert rr.bank_cost(32, 16).impl == "lutram"     # 512 bits
    assert rr.bank_cost(1024, 32).impl == "lutram"   # shallow
    assert rr.bank_cost(8, 1).impl == "ff"
    assert rr.bank_cost(128, 512).bram36 == 2.0
    # a 256-way cyclic partition makes 256 separately mapped banks
    assert rr.banks(8, [65536], [("cyclic", 256, 1, False)]) == (256, 8, 256)
    assert rr.banks(9, [19, 16384], [("complete", 0, 1, False), ("cyclic", 16, 2, False)]) == (304, 9, 1024)
    assert rr.banks(8, [64], [("cyclic", 8, 1, True)]) == (1, 64, 8)


def test_dsp_rules():
    assert rr.dsp_per_mult(27, 18) == 1
    assert rr.dsp_per_mult(18, 27) == 1
    assert rr.dsp_per_mult(32, 16) == 2
    assert rr.dsp_per_mult(48, 36) == 4
    assert rr.unit_cost("dsp_pack2", 256, 8, 4, 16)[0] == 128
    assert rr.unit_cost("lut", 10, 8, 4, 16)[0] == 0
    with pytest.raises(ValueError, match="dsp_pack2 needs weights"):
        rr.unit_cost("dsp_pack2", 4, 8, 8, 16)


def test_expressions():
    names = {"CN_PA": 16, "CN_PE": 16}
    assert cn_expr.eval_int("CN_PA*CN_PE/2 + ceil_div(17, 16)", names) == 130
    with pytest.raises(cn_expr.ExprError, match="unknown name 'CN_X'"):
        cn_expr.eval_int("CN_X + 1", names)
    with pytest.raises(cn_expr.ExprError, match="unsupported"):
        cn_expr.eval_int("__import__('os')", names)


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "res.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


SMALL = {"arrays": [{"name": "buf", "function": "f", "width_bits": "128", "dims": ["CN_MAX_W"]}],
         "units": [{"name": "mac", "count": "CN_PA*CN_PE", "a_bits": 8, "b_bits": 4, "impl": "dsp_pack2"}],
         "interfaces": {"m_axi_ports": 4, "axilite_regs": 12}}


def test_budget_shipped_resources_within_limits(capsys):
    assert budget.main(["--no-source-check"]) == 0
    out = capsys.readouterr().out
    assert "mac_array" in out and "within limits" in out and "ZU3EG" in out


def test_budget_small_design_passes_and_planted_excess_fails(tmp_path, capsys):
    assert budget.main(["--resources", str(_write(tmp_path, SMALL)), "--no-source-check"]) == 0
    capsys.readouterr()
    big = json.loads((ROOT / "hls_src" / "resources.json").read_text(encoding="utf-8"))
    big["arrays"].append({"name": "wbuf", "function": "f", "width_bits": 8, "dims": [262144],
                          "partition": {"kind": "cyclic", "factor": 256}})
    assert budget.main(["--resources", str(_write(tmp_path, big)), "--no-source-check"]) == 1
    out = capsys.readouterr().out
    assert "256 bank(s)" in out and "over the limit: BRAM36" in out
    dsp = json.loads(json.dumps(SMALL))
    dsp["units"].append({"name": "mults", "count": 300, "a_bits": 27, "b_bits": 18, "impl": "dsp"})
    assert budget.main(["--resources", str(_write(tmp_path, dsp)), "--no-source-check"]) == 1
    assert "over the limit: DSP" in capsys.readouterr().out


def test_budget_defaults_only_fill_missing_parameters(tmp_path):
    doc = dict(SMALL, defaults={"CN_PA": 1000, "CN_NEW": 7})
    _, names = budget.load(_write(tmp_path, doc))
    assert names["CN_PA"] == 16 and names["CN_NEW"] == 7


def test_budget_bad_input_names_the_field(tmp_path, capsys):
    doc = json.loads(json.dumps(SMALL))
    doc["arrays"][0]["dims"] = ["CN_NOPE * 2"]
    assert budget.main(["--resources", str(_write(tmp_path, doc)), "--no-source-check"]) == 2
    err = capsys.readouterr().err
    assert "arrays[0] (buf).dims" in err and "CN_NOPE" in err


DRIFT_SRC = """
void f(int *out, int n) {
    static int acc[2048];
#pragma HLS ARRAY_PARTITION variable=acc cyclic factor=CN_F
    int small[8];
    for (int i = 0; i < n; i++) { acc[i & 2047] += i; small[i & 7] = i; }
    out[0] = acc[0] + small[0];
}
"""


def test_budget_drift_check(tmp_path):
    src = tmp_path / "eng.cpp"
    src.write_text(DRIFT_SRC, encoding="utf-8")
    names = {"CN_MAX_W": 512, "CN_F": 4}
    part = {"kind": "cyclic", "factor": "CN_F"}

    def findings(arrays):
        doc = {"arrays": arrays}
        return budget.check_source(budget.load_arrays(doc, names, "res.json"), [str(src)], [str(tmp_path)],
                                   "res.json", names)

    undeclared = findings([])
    assert len(undeclared) == 1 and "undeclared array 'acc' in f()" in undeclared[0]  # 'small' is LUTRAM-size
    wrong = findings([{"name": "acc", "function": "f", "width_bits": 16, "dims": [1024]}])
    assert any("32-bit elements" in m for m in wrong) and any("shape 2048" in m for m in wrong)
    stale = findings([{"name": "acc", "function": "f", "width_bits": 32, "dims": [2048], "partition": part},
                      {"name": "gone", "function": "f", "width_bits": 8, "dims": [4096]}])
    assert len(stale) == 1 and "'gone'" in stale[0]
    unpartitioned = findings([{"name": "acc", "function": "f", "width_bits": 32, "dims": [2048]}])
    assert len(unpartitioned) == 1
    assert "partitioned cyclic 4 dim 1 in the source, res.json says not at all" in unpartitioned[0]
    assert findings([{"name": "acc", "function": "f", "width_bits": 32, "dims": ["CN_MAX_W*4"], "partition": part}]) == []


TEMPLATE = """
struct cfg_a { static const int n = 4; };
struct cfg_b { static const int n = 8; };
template <class C, int M> static int reduce(const int *buf) {
#pragma HLS INLINE
    int s = 0;
    for (int k = 0; k < C::n * M; k++) s += buf[k];
    return s;
}
void top(const int *in, int *out, int n) {
""" + PORTS + """
    static int buf[64];
#pragma HLS ARRAY_PARTITION variable=buf cyclic factor=4
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        out[i] = reduce<%s, 2>(buf) + in[i];
    }
}
"""


def test_lint_template_arguments_set_trip_counts(tmp_path):
    assert lint_snippet(tmp_path, TEMPLATE % "cfg_a") == []  # 8 reads over 4 banks
    bad = lint_snippet(tmp_path, TEMPLATE % "cfg_b")         # 16 reads over 4 banks
    assert rules(bad) == {"ii"} and "'buf' 16 distinct elements" in bad[0].message


WIDE_TOP = """
void %s(const ap_uint<128> *in, ap_uint<128> *out, int n) {
""" + PORTS + """
    static ap_uint<128> buf[64];
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        ap_uint<128> w = buf[i & 63];
        out[i] = w.range(7, 0) + buf[i & 63].range(15, 8) + in[i]%s;
    }
}
"""


def test_lint_wide_words_count_one_read_per_element(tmp_path):
    # two tops in one source (one ap_int parse): two reads of one 128-bit element are one read
    body = '#include "ap_int.h"\n' + WIDE_TOP % ("top_ok", "") + \
        WIDE_TOP % ("top_bad", " + buf[(i + 1) & 63] + buf[(i + 2) & 63]")
    found = lint_snippet(tmp_path, body)
    assert len(found) == 1 and found[0].rule == "ii" and found[0].line > 14
    assert "'buf' 3 distinct elements per iteration, 3 from one bank" in found[0].message


PING_PONG = """
static void fill(int buf[2][64][8], int h, int i, int v) {
#pragma HLS INLINE
    buf[h][i / 8][i %% 8] = v;
}
void top(const int *in, int *out, int n) {
""" + PORTS + """
    static int buf[2][64][8];
#pragma HLS ARRAY_PARTITION variable=buf complete dim=3
    int cur = in[0] & 1;
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II=1
        int s = 0;
        for (int k = 0; k < 8; k++) s += buf[cur][i & 63][k]%s;
        fill(buf, cur ^ 1, i & 511, in[i]);
        out[i] = s;
    }
}
"""


def test_lint_counts_writes_against_the_ports(tmp_path):
    """A ping-pong buffer: each bank read once (the half in use) and written once (the idle half, a
    runtime bank: a write-enable decode) per iteration fits its two ports; a second read of the same
    bank does not, nor does a read-modify-write (a[i] += x) beside a read."""
    assert lint_snippet(tmp_path, PING_PONG % "") == []
    bad = lint_snippet(tmp_path, PING_PONG % " + buf[cur][(i + 1) & 63][k]")
    assert rules(bad) == {"ii"}
    assert "'buf' 16 distinct elements and writes 1 per iteration, 3 from one bank" in bad[0].message
    rmw = PING_PONG.replace("fill(buf, cur ^ 1, i & 511, in[i]);", "buf[cur][(i + 2) & 63][0] += in[i];")
    bad = lint_snippet(tmp_path, rmw % "")
    assert rules(bad) == {"ii"} and "and writes 1 per iteration, 3 from one bank" in bad[0].message


FUNC_PIPE = """
struct vec { int v[16]; };
static int sum(vec x, int m) {
#pragma HLS PIPELINE II=1
    int s = 0;
    for (int k = 0; k < %s; k++) s += x.v[k];
    return s;
}
void top(const int *in, int *out, int n) {
#pragma HLS INTERFACE mode=m_axi port=in
#pragma HLS INTERFACE mode=m_axi port=out
    vec x;
    for (int k = 0; k < 16; k++) x.v[k] = in[k * n];
    out[0] = sum(x, n);
}
"""


def test_lint_function_level_pipeline_and_struct_values(tmp_path):
    # a pipelined function unrolls its loops; a small local struct value is registers (no port limit)
    bad = lint_snippet(tmp_path, FUNC_PIPE % "m")
    assert rules(bad) == {"pipeline-var-loop"} and "(function sum)" in bad[0].message
    assert lint_snippet(tmp_path, FUNC_PIPE % "16") == []
    # new-style 'mode=m_axi' ports are ports: a non-affine index is reported
    assert rules(lint_snippet(tmp_path, (FUNC_PIPE % "16").replace("in[k * n]", "in[k * k]"))) == {"maxi-affine"}


def test_lint_follows_calls_across_sources(tmp_path):
    """An engine split into files: the top in one source, the kernel (found by its USR) in another."""
    (tmp_path / "k.h").write_text("void kernel(const int *p, int *q, int n);\n", encoding="utf-8")
    (tmp_path / "top.cpp").write_text('#include "k.h"\nvoid top(const int *in, int *out, int n) {\n' + PORTS +
                                      "    kernel(in, out, n);\n}\n", encoding="utf-8")
    kern = '#include "k.h"\nvoid kernel(const int *p, int *q, int n) {\n    for (int i = 0; i < n; i++) q[i] = p[%s];\n}\n'
    (tmp_path / "kern.cpp").write_text(kern % "i * i", encoding="utf-8")
    srcs = [str(tmp_path / "top.cpp"), str(tmp_path / "kern.cpp")]
    found = hls_lint.lint(srcs, [str(tmp_path)])
    assert rules(found) == {"maxi-affine"} and found[0].file.endswith("kern.cpp") and "'in'" in found[0].message
    (tmp_path / "kern.cpp").write_text(kern % "i + 7", encoding="utf-8")
    assert hls_lint.lint(srcs, [str(tmp_path)]) == []


PARAM_BASE = """
static int tab[64];
static void load(const int *p, int *dst, int base, int n) {
    for (int j = 0; j < n; j++) {
#pragma HLS PIPELINE II=1
        dst[j] = p[%s];
    }
}
void top(const int *in, int *out, int n) {
""" + PORTS + """
    static int buf[256];
    for (int k = 0; k < 4; k++) load(in, buf, tab[k], n);
    out[0] = buf[0];
}
"""


def test_lint_parameter_is_invariant_in_its_functions_loops(tmp_path):
    # 'base' comes from a table lookup in the caller, but it is fixed before load()'s loop starts
    assert lint_snippet(tmp_path, PARAM_BASE % "base + j") == []
    assert rules(lint_snippet(tmp_path, PARAM_BASE % "base + tab[j & 63]")) == {"maxi-affine"}
