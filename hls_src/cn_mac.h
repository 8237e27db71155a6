// cn_mac.h -- process 2: the one PA x PE MAC array (dense convs and the fused block's pointwise
// stage), requantisation, and the on-chip offset conv; a bypass for ops without a MAC stage.
//
// Weights live on chip in 1024-bit entries, one per 16 x 16 block of the weight matrix (int4, two
// products per DSP48E2) or per half block (int8: 8 output lanes x 16 inputs).  Each weight chunk
// (as many output groups as the buffer holds) is burst-loaded once; the input is streamed once
// per chunk.  One output row is one flattened pipelined loop over (pixel, output group, reduction
// word, half), so the pipeline fills once per row.
#ifndef CN_MAC_H_
#define CN_MAC_H_

#include "cn_account.h"
#include "cn_load.h"
#include "cn_requant.h"
#include "codenet_engine.h"

namespace codenet {

#define CN_ENTRY_WORDS 8  // 1024-bit weight entry = 8 AXI words

// Per-descriptor parameters loaded before the dataflow region (cn_params in codenet_top.cpp).
struct stage_params_t {
    qparam_t q[CN_MAX_G][CN_LANES];  // main / pointwise stage, per output channel
    qparam_t oq;                     // offset conv (one channel)
    wgt_t ofw[CN_MAX_G][CN_LANES];   // offset conv weights per mid channel
};

#ifdef CN_EMU_NATIVE
// Host emulation only: the weight entries decoded to int8 when they are loaded, so the host does
// not unpack nibbles in the inner loop (same products; the C-simulation build and the hardware
// decode the packed entry, and the tests run both builds on the same vectors).
static wgt_t g_wdec[CN_WBUF_BLOCKS][CN_LANES][CN_LANES];
#endif

// acc[o] += sum_i w[o][i] * x[i] for the output lanes of one weight entry.
static inline void mac_entry(const word_t entry[CN_ENTRY_WORDS], const act_t x[CN_LANES], int wbits, int half,
                             acc_t acc[CN_LANES], int e_index) {
#pragma HLS INLINE
#ifdef CN_EMU_NATIVE
    (void)entry;
    const int o0 = wbits == 8 ? half * 8 : 0, n = wbits == 8 ? 8 : CN_LANES;
    for (int j = 0; j < n; j++) {
        const int o = o0 + j;
        const wgt_t *w = g_wdec[e_index][j];
        acc_t s = 0;
        for (int i = 0; i < CN_LANES; i++) s += (acc_t)w[i] * (acc_t)x[i];
        acc[o] += s;
    }
#else
    (void)e_index;
    if (wbits == 4) {
        // two int4-weight products per DSP48E2: lanes 2j and 2j+1 share the activation operand,
        // (w_a + w_b * 2^18) * x, summed over the 16 inputs; |sum w_a x| <= 16 * 8 * 255 < 2^17, so
        // the low 18-bit field holds the first dot product exactly and the rest is the second.
        for (int j = 0; j < CN_LANES / 2; j++) {
#pragma HLS UNROLL
            ap_int<48> pk = 0;
            for (int i = 0; i < CN_LANES; i++) {
#pragma HLS UNROLL
                const ap_int<27> a = (ap_int<27>)packed_weight(entry, (2 * j) * CN_LANES + i, 4) +
                                     ((ap_int<27>)packed_weight(entry, (2 * j + 1) * CN_LANES + i, 4) << 18);
                pk += (ap_int<48>)(a * (ap_int<18>)x[i]);
            }
            const ap_int<18> lo = (ap_int<18>)pk.range(17, 0);
            const ap_int<48> hi = (pk - (ap_int<48>)lo) >> 18;
            acc[2 * j] += (acc_t)lo;
            acc[2 * j + 1] += (acc_t)hi;
        }
        return;
    }
    for (int o = 0; o < CN_LANES; o++) {  // int8 weights: one product per DSP, 8 lanes per cycle
#pragma HLS UNROLL
        if ((o >> 3) != half) continue;
        acc_t s = 0;
        for (int i = 0; i < CN_LANES; i++) {
#pragma HLS UNROLL
            s += (acc_t)(packed_weight(entry, (o & 7) * CN_LANES + i, 8) * x[i]);
        }
        acc[o] += s;
    }
#endif
}

static void load_mac_weights(const word_t *wgt, uint32_t first_word, int n_words, int wbits,
                             word_t wbuf[CN_WBUF_BLOCKS][CN_ENTRY_WORDS]) {
#pragma HLS INLINE
WLOAD:
    for (int i = 0; i < n_words; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 8192
        wbuf[i / CN_ENTRY_WORDS][i % CN_ENTRY_WORDS] = wgt[first_word + i];
        CN_ACCT_AXI(PORT_WGT, first_word + i);
    }
#ifdef CN_EMU_NATIVE
    // decode every entry as both layouts could be asked for: int4 lanes o, int8 half-entry rows
    for (int e = 0; e < n_words / CN_ENTRY_WORDS; e++)
        for (int o = 0; o < CN_LANES; o++)
            for (int i = 0; i < CN_LANES; i++)
                g_wdec[e][o][i] = wbits == 8 ? (o < 8 ? packed_weight(wbuf[e], o * CN_LANES + i, 8) : (wgt_t)0)
                                             : packed_weight(wbuf[e], o * CN_LANES + i, 4);
#endif
    CN_ACCT_AXI_END(PORT_WGT);
    CN_ACCT_LOOP(PROC_MAC, n_words, 1, CN_DEPTH_AXI);
}

static void cn_mac(const desc_t &d, const plan_t &p, const word_t *wgt, const stage_params_t &sp,
                   hls::stream<word_t> &in_s, hls::stream<word_t> &mid_s, hls::stream<uint8_t> &off_s) {
    static word_t wbuf[CN_WBUF_BLOCKS][CN_ENTRY_WORDS];
#pragma HLS ARRAY_PARTITION variable = wbuf complete dim = 2
    static word_t xbuf[CN_MAX_KT];
    const bool has_mac = d.op == CN_OP_DENSE || (d.op == CN_OP_DWBLOCK && (d.flags & CN_FLAG_HAS_PW));
    if (!has_mac) {
        stage_bypass(p, in_s, mid_s, PROC_MAC);
        return;
    }
    const stage_t &st = d.op == CN_OP_DENSE ? d.main : d.pw;
    const bool sgn = (d.flags & CN_FLAG_IN_SIGNED) != 0;
    const bool off_chip = (d.flags & CN_FLAG_OFF_ONCHIP) != 0;
    const int halves = st.wbits == 8 ? 2 : 1;
    const int per_g = p.n_kt * halves;  // entries per output group
CHUNKS:
    for (int c = 0; c < p.n_chunks; c++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4
        const int g0 = c * p.chunk_g;
        const int ng = rep_groups(p, c);
        load_mac_weights(wgt, st.w_addr / CN_WORD_BYTES + (uint32_t)g0 * per_g * CN_ENTRY_WORDS,
                         ng * per_g * CN_ENTRY_WORDS, st.wbits, wbuf);
    MAC_ROWS:
        for (int y = 0; y < p.mac_h; y++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 256
            const int trip = p.mac_w * ng * per_g;
            int kt = 0, h = 0, go = 0;
            acc_t acc[CN_LANES];
#pragma HLS ARRAY_PARTITION variable = acc complete
            acc_t off_acc = sp.oq.bias;
            for (int o = 0; o < CN_LANES; o++) acc[o] = sp.q[g0][o].bias;
        MAC_ROW:
            for (int it = 0; it < trip; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 65536
                word_t xw;
                if (go == 0 && h == 0) {
                    xw = in_s.read();
                    xbuf[kt] = xw;
                } else {
                    xw = xbuf[kt];
                }
                act_t x[CN_LANES];
#pragma HLS ARRAY_PARTITION variable = x complete
                for (int i = 0; i < CN_LANES; i++) x[i] = decode_act(lane_get(xw, i), sgn);
                const int e = (go * p.n_kt + kt) * halves + h;
#ifdef CN_EMU_NATIVE
                mac_entry(wbuf[e], x, st.wbits, h, acc, e);  // reads the decoded copy
#else
                word_t ew[CN_ENTRY_WORDS];  // the 1024-bit entry: one read of the 8 banks of wbuf
#pragma HLS ARRAY_PARTITION variable = ew complete
                for (int k = 0; k < CN_ENTRY_WORDS; k++) ew[k] = wbuf[e][k];
                mac_entry(ew, x, st.wbits, h, acc, e);
#endif
                if (++h == halves) {
                    h = 0;
                    if (++kt == p.n_kt) {
                        kt = 0;
                        const int g = g0 + go;
                        word_t out = word_zero();
                        acc_t part = 0;
                        for (int o = 0; o < CN_LANES; o++) {
#pragma HLS UNROLL
                            const bool live = g * CN_LANES + o < d.cout;
                            const act_t v = live ? requant(acc[o], sp.q[g][o], st.lo, st.hi) : (act_t)0;
                            lane_set(out, o, (uint8_t)(int)v);
                            part += (acc_t)(sp.ofw[g][o] * v);
                        }
                        mid_s.write(out);
                        if (off_chip) off_acc += part;
                        if (++go == ng) {
                            go = 0;
                            if (off_chip) {
                                off_s.write((uint8_t)(int)requant(off_acc, sp.oq, d.of.lo, d.of.hi));
                                off_acc = sp.oq.bias;
                            }
                        }
                        for (int o = 0; o < CN_LANES; o++) acc[o] = sp.q[g0 + go][o].bias;
                    }
                }
            }
            CN_ACCT_LOOP(PROC_MAC, trip, 1, CN_DEPTH_MAC + CN_DEPTH_REQ);
            CN_ACCT_ADD(macs, (uint64_t)trip * CN_PA * CN_PE / halves);
        }
    }
}

}  // namespace codenet

#endif  // CN_MAC_H_
