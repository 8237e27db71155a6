// cn_dw.h -- process 3: line buffer + dilated 3x3 depthwise conv with per-pixel square offsets,
// or the 3x3 / 2 max pool; a bypass for ops without a spatial stage.
//
// The line buffer is a ring of CN_LB_ROWS rows of W x (groups of this pass) words, one 16-lane
// word per (pixel, group): lane l is always channel 16 g + l, so the lanes need no bank
// selection at all; the row and column of a tap are addresses.  Two identical copies give four
// read ports for the nine taps: the tap loop runs at the declared II CN_DII_DW.  Channel groups
// that do not fit a row (W x groups > CN_LB_WORDS) are processed in passes.
#ifndef CN_DW_H_
#define CN_DW_H_

#include "cn_account.h"
#include "cn_fetch.h"
#include "cn_load.h"
#include "cn_requant.h"
#include "codenet_engine.h"

namespace codenet {

// The depthwise tables (bias/M/S, weight records) live inside cn_dw, double-buffered: half `ph`
// in use, half ph ^ 1 filled from the prefetch stream (the next descriptor's, words [0, nq) of
// the bias/M/S table then its records) at one word per iteration of the stage's loops.
struct dfill_t {
    int n, nq, drec, ph;
};

// Store the k-th word of the fill (one write to each lane bank of dq per group, one write to one
// bank of drec per word).
static inline void dw_fill_word(const dfill_t &f, int k, const word_t &w, qparam_t row[CN_LANES],
                                qparam_t dq[2][CN_MAX_G][CN_LANES], word_t drec[2][CN_MAX_G][CN_DW_REC_WORDS]) {
#pragma HLS INLINE
    if (k < f.nq) {
        if (qrow_push(row, w, k))
            for (int l = 0; l < CN_LANES; l++) dq[f.ph][k / (CN_LANES / 2)][l] = row[l];
    } else {  // records of 5 (int4) or 9 (int8) words: two constant divisions, no runtime divider
        const int i = k - f.nq;
        const int g = f.drec == 9 ? i / 9 : i / 5;
        drec[f.ph][g][i - g * f.drec] = w;
    }
}

static inline int lb_slot(int row) {
#pragma HLS INLINE
    return row % CN_LB_ROWS;
}

// Forward n words of the stage's input (a descriptor without a depthwise stage; n = 0 after the
// depthwise loops) while popping the fill: during the forwarding whatever has arrived, then,
// blocking, whatever has not (the stage waits for it: counted as tail_words).
static void dw_forward_fill(int n, hls::stream<word_t> &mid_s, hls::stream<word_t> &out_s, const dfill_t &f, int &k,
                            hls::stream<word_t> &dwp_s, qparam_t row[CN_LANES], qparam_t dq[2][CN_MAX_G][CN_LANES],
                            word_t drec[2][CN_MAX_G][CN_DW_REC_WORDS]) {
#pragma HLS INLINE
    int i = 0, fk = k;
DW_FORWARD:
    while (i < n || fk < f.n) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 65536
        word_t w;
        bool got;
        if (i < n) {
            out_s.write(mid_s.read());
            got = prefetch_pop(dwp_s, fk, f.n, w);
        } else {
            w = dwp_s.read();
            got = true;
        }
        if (got) dw_fill_word(f, fk++, w, row, dq, drec);
        i++;
    }
    CN_ACCT_LOOP(PROC_DW, i, 1, 2);
    CN_ACCT_ADD(tail_words, (uint64_t)(i - n));
    k = fk;
}

static void cn_dw(const desc_t &d, const plan_t &p, const fetch_plan_t &fp, hls::stream<word_t> &dwp_s,
                  hls::stream<word_t> &mid_s, hls::stream<uint8_t> &offc_s, hls::stream<uint8_t> &offd_s,
                  hls::stream<word_t> &out_s) {
    static word_t lb_a[CN_LB_ROWS * CN_LB_WORDS];
    static word_t lb_b[CN_LB_ROWS * CN_LB_WORDS];
    static uint8_t offmap[CN_LB_ROWS * CN_MAX_W];
    static qparam_t dq[2][CN_MAX_G][CN_LANES];
    static word_t drec[2][CN_MAX_G][CN_DW_REC_WORDS];
    static int ph = 0;  // half in use (persists across descriptors)
#pragma HLS ARRAY_PARTITION variable = dq complete dim = 3
#pragma HLS ARRAY_PARTITION variable = drec complete dim = 3
#pragma HLS BIND_STORAGE variable = dq type = ram_s2p impl = lutram
#pragma HLS BIND_STORAGE variable = drec type = ram_s2p impl = lutram
    qparam_t row[CN_LANES];  // fill: the bias/M/S group being assembled
#pragma HLS ARRAY_PARTITION variable = row complete
    dfill_t f;
    f.nq = fp.ndq;
    f.n = fp.ndq + fp.ndr;
    f.drec = fp.drec;
    f.ph = ph ^ 1;
    int fk = 0;
    const int reps = n_reps(p);
    if (d.op != CN_OP_DWBLOCK && d.op != CN_OP_MAXPOOL) {
        dw_forward_fill(p.mac_h * p.mac_w * p.n_mid, mid_s, out_s, f, fk, dwp_s, row, dq, drec);
        ph ^= 1;
        return;
    }
    const bool pool = d.op == CN_OP_MAXPOOL;
    const bool has_off = (d.flags & (CN_FLAG_OFF_ONCHIP | CN_FLAG_OFF_DRAM)) != 0;
    const bool off_dram = (d.flags & CN_FLAG_OFF_DRAM) != 0;
    const bool sgn = (d.flags & CN_FLAG_HAS_PW) ? d.pw.lo < 0 : (d.flags & CN_FLAG_IN_SIGNED) != 0;
    const int stride = pool ? 2 : d.stride, pad = pool ? 1 : d.pad, dil = pool ? 1 : d.dil;
    const int W = d.in_w, H = d.in_h;
    const int wbits = d.main.wbits;
#ifdef CN_EMU_NATIVE
    // host emulation only: depthwise weights decoded once (the hardware decodes the packed record)
    static wgt_t wdec[CN_MAX_G][9][CN_LANES];
    if (!pool)
        for (int g = 0; g < p.n_mid; g++)
            for (int t = 0; t < 9; t++)
                for (int l = 0; l < CN_LANES; l++) wdec[g][t][l] = packed_weight(drec[ph][g], t * CN_LANES + l, wbits);
#endif
    CN_ACCT_SET(rows, (uint64_t)d.out_h * reps);
    {
        int fr = dil - pad + p.reach + 1;
        if (fr > H) fr = H;
        CN_ACCT_SET(fill_rows, (uint64_t)(fr > 0 ? fr : 0));
    }
DW_PASSES:
    for (int r = 0; r < reps; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
        const int pg = rep_groups(p, r);
        const int g0 = r * p.pass_g;
        int next = 0;
    DW_OUT_ROWS:
        for (int oy = 0; oy <= d.out_h; oy++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 257
            int last = H - 1;  // after the last output row: drain the remaining input rows
            const int cy = oy * stride - pad + dil;
            if (oy < d.out_h && cy + p.reach < last) last = cy + p.reach;
        DW_FILL_ROWS:
            for (; next <= last; next++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 19
                const int base = lb_slot(next) * CN_LB_WORDS;
                const int per_px = pg + (has_off ? 1 : 0);
                const int trip = W * per_px;
                int x = 0, k = 0;
            DW_FILL:
                for (int it = 0; it < trip; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 1024
                    if (k < pg) {
                        const word_t w = mid_s.read();
                        lb_a[base + x * pg + k] = w;
                        lb_b[base + x * pg + k] = w;
                    } else {
                        offmap[lb_slot(next) * CN_MAX_W + x] = off_dram ? offd_s.read() : offc_s.read();
                    }
                    word_t pw;  // prefetch: at most one word of the next descriptor's tables
                    if (prefetch_pop(dwp_s, fk, f.n, pw)) dw_fill_word(f, fk++, pw, row, dq, drec);
                    if (++k == per_px) {
                        k = 0;
                        x++;
                    }
                }
                CN_ACCT_LOOP(PROC_DW, trip, 1, 2);
            }
            if (oy == d.out_h) break;
            const int trip = d.out_w * pg;
            int ox = 0, g = 0;
        DW_TAPS:
            for (int it = 0; it < trip; it++) {
#pragma HLS PIPELINE II = CN_DII_DW
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 512
                const int cx = ox * stride - pad + dil;
                const int dd = dil + (has_off ? (int)offmap[lb_slot(oy) * CN_MAX_W + ox] : 0);
                word_t tw[9];
                bool tin[9];
#pragma HLS ARRAY_PARTITION variable = tw complete
#pragma HLS ARRAY_PARTITION variable = tin complete
                int ta[9];
#pragma HLS ARRAY_PARTITION variable = ta complete
                for (int t = 0; t < 9; t++) {
#pragma HLS UNROLL
                    const int iy = cy + (t / 3 - 1) * dd;
                    const int ix = cx + (t % 3 - 1) * dd;
                    tin[t] = iy >= 0 && ix >= 0 && iy < H && ix < W;
                    ta[t] = lb_slot(tin[t] ? iy : 0) * CN_LB_WORDS + (tin[t] ? ix : 0) * pg + g;
                }
                for (int t = 0; t < 5; t++) {  // taps 0..4 from copy a (two ports: II 3)
#pragma HLS UNROLL
                    tw[t] = lb_a[ta[t]];
                }
                for (int t = 5; t < 9; t++) {  // taps 5..8 from copy b
#pragma HLS UNROLL
                    tw[t] = lb_b[ta[t]];
                }
                word_t o = word_zero();
                const int gg = g0 + g;
                for (int l = 0; l < CN_LANES; l++) {
#pragma HLS UNROLL
                    act_t v;
                    if (pool) {
                        v = decode_act(lane_get(tw[4], l), sgn);  // the centre is always inside
                        for (int t = 0; t < 9; t++) {
                            const act_t u = decode_act(lane_get(tw[t], l), sgn);
                            if (tin[t] && u > v) v = u;
                        }
                    } else {
                        acc_t acc = (acc_t)dq[ph][gg][l].bias;
                        for (int t = 0; t < 9; t++) {
                            const act_t u = tin[t] ? decode_act(lane_get(tw[t], l), sgn) : (act_t)0;
#ifdef CN_EMU_NATIVE
                            acc += (acc_t)wdec[gg][t][l] * (acc_t)u;
#else
                            acc += (acc_t)(packed_weight(drec[ph][gg], t * CN_LANES + l, wbits) * u);
#endif
                        }
                        v = gg * CN_LANES + l < d.cout ? requant(acc, dq[ph][gg][l], d.main.lo, d.main.hi) : (act_t)0;
                    }
                    lane_set(o, l, (uint8_t)(int)v);
                }
                out_s.write(o);
                word_t pw;  // prefetch: at most one word of the next descriptor's tables
                if (prefetch_pop(dwp_s, fk, f.n, pw)) dw_fill_word(f, fk++, pw, row, dq, drec);
                if (++g == pg) {
                    g = 0;
                    ox++;
                }
            }
            CN_ACCT_LOOP(PROC_DW, trip, CN_DII_DW, CN_DEPTH_DW);
            CN_ACCT_ADD(macs, pool ? 0 : (uint64_t)trip * CN_DW_PE * 9);
        }
    }
    dw_forward_fill(0, mid_s, out_s, f, fk, dwp_s, row, dq, drec);
    ph ^= 1;
}

}  // namespace codenet

#endif  // CN_DW_H_
