// cn_fetch.h -- process 0: the weight-port prefetcher.
//
// cn_fetch is the only user of the weight m_axi bundle inside a descriptor's DATAFLOW region.  It
// burst-reads, in this order,
//   1. the current descriptor's MAC weight chunks 1 .. n-1 (chunk 0 was prefetched before),
//   2. the NEXT descriptor's MAC-stage parameters (bias/M/S table, offset-conv bias/M/S and
//      weights) and its MAC weight chunk 0,                                        -> w_s (cn_mac)
//   3. the NEXT descriptor's depthwise parameters (bias/M/S table, weight records)  -> dwp_s (cn_dw)
// and checks every bias/M/S word it forwards (M < 2^15, 1 <= S <= 47).  The consumers pop at most
// one word per iteration of their pipelined loops into the idle half of their double-buffered
// tables, so the traffic runs while the stages compute; what has not arrived when their loops end
// is popped by a tail loop (blocking).  All w_s words precede the dwp_s words: cn_mac drains w_s
// by itself (its tail needs nothing from cn_dw), so the order cannot deadlock.
#ifndef CN_FETCH_H_
#define CN_FETCH_H_

#include "cn_account.h"
#include "cn_load.h"
#include "cn_requant.h"
#include "codenet_engine.h"

namespace codenet {

#define CN_DW_REC_WORDS 9  // depthwise weight record per group: 9 taps x 16 lanes (int8; int4 uses 5)
#define CN_ENTRY_WORDS 8   // 1024-bit MAC weight entry = 8 AXI words

// What cn_fetch sends during one region (word addresses in the weight region, counts in words).
// The consumers derive their fill sequence from the same record.
struct fetch_plan_t {
    uint32_t cw_addr;  // current descriptor: MAC chunks 1 .. n-1 (one contiguous run)
    int cw;
    uint32_t q_addr;  // next: MAC-stage bias/M/S (8 words per group)
    int nq;
    uint32_t oq_addr;  // next: offset-conv bias/M/S (one group, 8 words; 0 without on-chip offsets)
    int noq;
    uint32_t of_addr;  // next: offset-conv weight records (one word per mid group)
    int nof;
    uint32_t w0_addr;  // next: MAC chunk 0
    int nw0;
    uint32_t dq_addr;  // next: depthwise bias/M/S
    int ndq;
    uint32_t dr_addr;  // next: depthwise weight records (drec words per group)
    int ndr;
    int drec;      // next: words per depthwise record (5 int4, 9 int8)
    int of_wbits;  // next: offset-conv weight bits
};

static inline bool op_has_mac(const desc_t &d) {
#pragma HLS INLINE
    return d.op == CN_OP_DENSE || (d.op == CN_OP_DWBLOCK && (d.flags & CN_FLAG_HAS_PW));
}

// Weight words per output group of the MAC stage (int8 weights take two entries per group).
static inline int mac_group_words(const desc_t &d, const plan_t &p) {
#pragma HLS INLINE
    const stage_t &st = d.op == CN_OP_DENSE ? d.main : d.pw;
    return p.n_kt * (st.wbits == 8 ? 2 : 1) * CN_ENTRY_WORDS;
}

// Words of MAC weight chunk c (all chunks are one contiguous record).
static inline int mac_chunk_words(const desc_t &d, const plan_t &p, int c) {
#pragma HLS INLINE
    return rep_groups(p, c) * mac_group_words(d, p);
}

static inline uint32_t mac_w_word(const desc_t &d) {
#pragma HLS INLINE
    return (d.op == CN_OP_DENSE ? d.main.w_addr : d.pw.w_addr) / CN_WORD_BYTES;
}

// The fetch sequence of the region that runs `d` (op CN_OP_PREFETCH: nothing) and prefetches `dn`
// (has_next false: nothing of a next descriptor).
static void plan_fetch(const desc_t &d, const plan_t &p, const desc_t &dn, const plan_t &pn, bool has_next,
                       fetch_plan_t &f) {
#pragma HLS INLINE
    f.cw_addr = 0;
    f.cw = 0;
    if (op_has_mac(d) && p.n_chunks > 1) {
        const int w0 = mac_chunk_words(d, p, 0);
        f.cw_addr = mac_w_word(d) + (uint32_t)w0;
        f.cw = p.n_mid * mac_group_words(d, p) - w0;
    }
    const bool nx = has_next;
    const bool n_mac = nx && op_has_mac(dn);
    const bool n_dw = nx && dn.op == CN_OP_DWBLOCK;
    const bool n_off = n_dw && (dn.flags & CN_FLAG_OFF_ONCHIP);
    f.q_addr = (dn.op == CN_OP_DENSE ? dn.main.q_addr : dn.pw.q_addr) / CN_WORD_BYTES;
    f.nq = n_mac ? pn.n_mid * CN_LANES / 2 : 0;
    f.oq_addr = dn.of.q_addr / CN_WORD_BYTES;
    f.noq = n_off ? CN_LANES / 2 : 0;
    f.of_addr = dn.of.w_addr / CN_WORD_BYTES;
    f.nof = n_off ? pn.n_mid : 0;
    f.w0_addr = mac_w_word(dn);
    f.nw0 = n_mac ? mac_chunk_words(dn, pn, 0) : 0;
    f.dq_addr = dn.main.q_addr / CN_WORD_BYTES;
    f.ndq = n_dw ? pn.n_mid * CN_LANES / 2 : 0;
    f.drec = dn.main.wbits == 8 ? 9 : 5;
    f.dr_addr = dn.main.w_addr / CN_WORD_BYTES;
    f.ndr = n_dw ? pn.n_mid * f.drec : 0;
    f.of_wbits = dn.of.wbits;
}

// Pop the next prefetched word of a fill phase if one is due (k < n) and has arrived: at most one
// per iteration of the stage's pipelined loops, never waiting.
static inline bool prefetch_pop(hls::stream<word_t> &s, int k, int n, word_t &w) {
#pragma HLS INLINE
    return k < n && s.read_nb(w);
}

// A bias/M/S table arrives two channels a word: shift word k into a group's row of 16 channels;
// true when the row is complete (then the caller writes it, one write to each lane bank).
static inline bool qrow_push(qparam_t row[CN_LANES], const word_t &w, int k) {
#pragma HLS INLINE
    for (int l = 0; l < CN_LANES - 2; l++) row[l] = row[l + 2];
    decode_qparam(w, 0, row[CN_LANES - 2]);
    decode_qparam(w, 1, row[CN_LANES - 1]);
    return k % (CN_LANES / 2) == CN_LANES / 2 - 1;
}

// One burst run of n words from word address `base` into a stream; check: every word is a
// bias/M/S pair of channels (returns false on an out-of-range M or S).
static bool fetch_run(const word_t *wgt, uint32_t base, int n, bool check, hls::stream<word_t> &s) {
#pragma HLS INLINE
    bool ok = true;
FETCH_RUN:
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 8192
        const word_t w = wgt[base + i];
        CN_ACCT_AXI(PORT_WGT, base + i);
        qparam_t q0, q1;
        if (check) ok &= decode_qparam(w, 0, q0) & decode_qparam(w, 1, q1);
        s.write(w);
    }
    CN_ACCT_AXI_END(PORT_WGT);
    CN_ACCT_LOOP(PROC_FETCH, n, 1, CN_DEPTH_AXI);
    return ok;
}

// The FETCH process: next_ok reports whether the next descriptor's parameters are in range.
static void cn_fetch(const fetch_plan_t &f, const word_t *wgt, hls::stream<word_t> &w_s, hls::stream<word_t> &dwp_s,
                     bool &next_ok) {
    bool ok = true;
    fetch_run(wgt, f.cw_addr, f.cw, false, w_s);
    ok &= fetch_run(wgt, f.q_addr, f.nq, true, w_s);
    ok &= fetch_run(wgt, f.oq_addr, f.noq, true, w_s);
    fetch_run(wgt, f.of_addr, f.nof, false, w_s);
    fetch_run(wgt, f.w0_addr, f.nw0, false, w_s);
    ok &= fetch_run(wgt, f.dq_addr, f.ndq, true, dwp_s);
    fetch_run(wgt, f.dr_addr, f.ndr, false, dwp_s);
    next_ok = ok;
}

}  // namespace codenet

#endif  // CN_FETCH_H_
