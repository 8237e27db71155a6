// cn_mac.h -- process 2: the one PA x PE MAC array (dense convs and the fused block's pointwise
// stage), requantisation, and the on-chip offset conv; a bypass for ops without a MAC stage.
//
// Weights live on chip in 1024-bit entries, one per 16 x 16 block of the weight matrix (int4, two
// products per DSP48E2) or per half block (int8: 8 output lanes x 16 inputs).  Each weight chunk
// (as many output groups as a half of the buffer holds) is read once, by the prefetch (cn_fetch.h)
// while the previous chunk or descriptor computes; the input is streamed once per chunk.  One
// output row is one flattened pipelined loop over (pixel, output group, reduction word, half),
// so the pipeline fills once per row.
#ifndef CN_MAC_H_
#define CN_MAC_H_

#include "cn_account.h"
#include "cn_fetch.h"
#include "cn_load.h"
#include "cn_requant.h"
#include "codenet_engine.h"

namespace codenet {

// The MAC stage's per-descriptor tables live inside cn_mac, double-buffered (half `ph` in use,
// half ph ^ 1 filled from the prefetch stream while the stage computes); see mac_fill_word.

// Where the words of one fill phase go.  A phase is either weight chunk c + 1 of the current
// descriptor (n words of weights: e0 = e1 = e2 = 0) or the next descriptor's MAC-stage parameters
// then its chunk 0: words [0, e0) bias/M/S (two channels a word), [e0, e1) the offset conv's
// bias/M/S group (channel 0 used), [e1, e2) offset-conv weight records, [e2, n) weights.
struct mfill_t {
    int n, e0, e1, e2;
    int wh, ph;  // target halves of the weight buffer and of the parameter tables
    int of_wbits;
};

#ifdef CN_EMU_NATIVE
// Host emulation only: the weight entries decoded to int8 when a chunk starts, so the host does
// not unpack nibbles in the inner loop (same products; the C-simulation build and the hardware
// decode the packed entry, and the tests run both builds on the same vectors).
static wgt_t g_wdec[CN_WBUF_BLOCKS][CN_LANES][CN_LANES];

// decode the n entries of one weight-buffer half, as both layouts could be asked for
static void mac_decode_half(const word_t half[CN_WBUF_BLOCKS][CN_ENTRY_WORDS], int n, int wbits) {
    for (int e = 0; e < n; e++)
        for (int o = 0; o < CN_LANES; o++)
            for (int i = 0; i < CN_LANES; i++)
                g_wdec[e][o][i] = wbits == 8 ? (o < 8 ? packed_weight(half[e], o * CN_LANES + i, 8) : (wgt_t)0)
                                             : packed_weight(half[e], o * CN_LANES + i, 4);
}
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

// Store the k-th word of a fill phase.  Each lane bank of mq / ofw takes at most one write and
// each bank of wbuf one write per call (the idle half: the other port of the bank's memory).
static inline void mac_fill_word(const mfill_t &f, int k, const word_t &w, qparam_t row[CN_LANES],
                                 word_t wbuf[2][CN_WBUF_BLOCKS][CN_ENTRY_WORDS],
                                 qparam_t mq[2][CN_MAX_G][CN_LANES], wgt_t ofw[2][CN_MAX_G][CN_LANES],
                                 qparam_t oq[2]) {
#pragma HLS INLINE
    if (k < f.e0) {
        if (qrow_push(row, w, k))
            for (int l = 0; l < CN_LANES; l++) mq[f.ph][k / (CN_LANES / 2)][l] = row[l];
    } else if (k < f.e1) {
        if (k == f.e0) decode_qparam(w, 0, oq[f.ph]);
    } else if (k < f.e2) {
        for (int l = 0; l < CN_LANES; l++) ofw[f.ph][k - f.e1][l] = packed_weight(&w, l, f.of_wbits);
    } else {
        const int i = k - f.e2;
        wbuf[f.wh][i / CN_ENTRY_WORDS][i % CN_ENTRY_WORDS] = w;
    }
}

// Pop whatever of a fill phase has not arrived during the stage's loops (the stage waits for it).
static void mac_fill_tail(const mfill_t &f, int &k, hls::stream<word_t> &w_s, qparam_t row[CN_LANES],
                          word_t wbuf[2][CN_WBUF_BLOCKS][CN_ENTRY_WORDS], qparam_t mq[2][CN_MAX_G][CN_LANES],
                          wgt_t ofw[2][CN_MAX_G][CN_LANES], qparam_t oq[2]) {
#pragma HLS INLINE
    const int k0 = k;
MAC_FILL_TAIL:
    for (int t = k0; t < f.n; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 8192
        mac_fill_word(f, t, w_s.read(), row, wbuf, mq, ofw, oq);
    }
    CN_ACCT_LOOP(PROC_MAC, f.n - k0, 1, 2);
    CN_ACCT_ADD(tail_words, (uint64_t)(f.n - k0));
    k = f.n;
}

// The fill phase that runs during chunk c (c == n_chunks - 1, or no MAC stage: the next descriptor).
static void mac_phase(const desc_t &d, const plan_t &p, const fetch_plan_t &fp, int c, int wh, int ph, mfill_t &f) {
#pragma HLS INLINE
    const bool last = !op_has_mac(d) || c + 1 >= p.n_chunks;
    f.wh = wh ^ 1;
    f.ph = ph ^ 1;
    f.e0 = last ? fp.nq : 0;
    f.e1 = f.e0 + (last ? fp.noq : 0);
    f.e2 = f.e1 + (last ? fp.nof : 0);
    f.n = f.e2 + (last ? fp.nw0 : mac_chunk_words(d, p, c + 1));
    f.of_wbits = fp.of_wbits;
}

static void cn_mac(const desc_t &d, const plan_t &p, const fetch_plan_t &fp, hls::stream<word_t> &w_s,
                   hls::stream<word_t> &in_s, hls::stream<word_t> &mid_s, hls::stream<uint8_t> &off_s) {
    static word_t wbuf[2][CN_WBUF_BLOCKS][CN_ENTRY_WORDS];  // two halves: one computes, one fills
    static qparam_t mq[2][CN_MAX_G][CN_LANES];                // bias/M/S per output channel
    static wgt_t ofw[2][CN_MAX_G][CN_LANES];                  // offset-conv weights per mid channel
    static qparam_t oq[2];                                    // offset-conv bias/M/S
    static int wh = 0, ph = 0;                                // halves in use (persist across descriptors)
#pragma HLS ARRAY_PARTITION variable = wbuf complete dim = 3
#pragma HLS ARRAY_PARTITION variable = mq complete dim = 3
#pragma HLS ARRAY_PARTITION variable = ofw complete dim = 3
#pragma HLS ARRAY_PARTITION variable = oq complete
#pragma HLS BIND_STORAGE variable = mq type = ram_s2p impl = lutram
#pragma HLS BIND_STORAGE variable = ofw type = ram_s2p impl = lutram
    static word_t xbuf[CN_MAX_KT];
    qparam_t row[CN_LANES];  // fill: the bias/M/S group being assembled
#pragma HLS ARRAY_PARTITION variable = row complete
    mfill_t f;
    int fk = 0;
    if (!op_has_mac(d)) {
        // forward the stage's input (every rep's words, in order: one loop) while prefetching
        mac_phase(d, p, fp, 0, wh, ph, f);
        const int n = p.mac_h * p.mac_w * p.n_mid;
    MAC_BYPASS:
        for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 65536
            mid_s.write(in_s.read());
            word_t w;
            if (prefetch_pop(w_s, fk, f.n, w)) mac_fill_word(f, fk++, w, row, wbuf, mq, ofw, oq);
        }
        CN_ACCT_LOOP(PROC_MAC, n, 1, 2);
        mac_fill_tail(f, fk, w_s, row, wbuf, mq, ofw, oq);
        wh ^= 1;
        ph ^= 1;
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
        mac_phase(d, p, fp, c, wh, ph, f);
        fk = 0;
#ifdef CN_EMU_NATIVE
        mac_decode_half(wbuf[wh], ng * per_g, st.wbits);
#endif
    MAC_ROWS:
        for (int y = 0; y < p.mac_h; y++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 256
            const int trip = p.mac_w * ng * per_g;
            int kt = 0, h = 0, go = 0;
            acc_t acc[CN_LANES];  // starts at 0; the bias is added at requantisation
#pragma HLS ARRAY_PARTITION variable = acc complete
            acc_t off_acc = oq[ph].bias;
            for (int o = 0; o < CN_LANES; o++) acc[o] = 0;
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
                mac_entry(wbuf[wh][e], x, st.wbits, h, acc, e);  // reads the decoded copy
#else
                word_t ew[CN_ENTRY_WORDS];  // the 1024-bit entry: one read of the 8 banks of wbuf
#pragma HLS ARRAY_PARTITION variable = ew complete
                for (int k = 0; k < CN_ENTRY_WORDS; k++) ew[k] = wbuf[wh][e][k];
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
                            const qparam_t q = mq[ph][g][o];
                            const act_t v = live ? requant(acc[o] + (acc_t)q.bias, q, st.lo, st.hi) : (act_t)0;
                            lane_set(out, o, (uint8_t)(int)v);
                            part += (acc_t)(ofw[ph][g][o] * v);
                            acc[o] = 0;
                        }
                        mid_s.write(out);
                        if (off_chip) off_acc += part;
                        if (++go == ng) {
                            go = 0;
                            if (off_chip) {
                                off_s.write((uint8_t)(int)requant(off_acc, oq[ph], d.of.lo, d.of.hi));
                                off_acc = oq[ph].bias;
                            }
                        }
                    }
                }
                word_t w;  // prefetch: at most one word of the next chunk / descriptor per cycle
                if (prefetch_pop(w_s, fk, f.n, w)) mac_fill_word(f, fk++, w, row, wbuf, mq, ofw, oq);
            }
            CN_ACCT_LOOP(PROC_MAC, trip, 1, CN_DEPTH_MAC + CN_DEPTH_REQ);
            CN_ACCT_ADD(macs, (uint64_t)trip * CN_PA * CN_PE / halves);
        }
        mac_fill_tail(f, fk, w_s, row, wbuf, mq, ofw, oq);
        wh ^= 1;
    }
    ph ^= 1;
}

}  // namespace codenet

#endif  // CN_MAC_H_
