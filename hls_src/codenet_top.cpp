// codenet_top.cpp -- the top function: walk the descriptor table, decoding each descriptor one
// ahead, and run each descriptor's dataflow region (cn_fetch | cn_load -> cn_mac -> cn_dw ->
// cn_store), in which cn_fetch prefetches the next descriptor's parameters and weight chunk 0.
#include "cn_account.h"
#include "cn_dw.h"
#include "cn_fetch.h"
#include "cn_load.h"
#include "cn_mac.h"
#include "cn_requant.h"
#include "cn_store.h"
#include "codenet_engine.h"

namespace codenet {

#ifndef __SYNTHESIS__
account_t g_acct;
acct_desc_t *g_acct_records = 0;  // set by the emulation library: one record per descriptor
uint32_t g_acct_capacity = 0;
#endif

// Read and check descriptor i (its record in the account is the current one).
static int read_desc(const uint32_t *desc, uint32_t i, desc_t &d, plan_t &p) {
#pragma HLS INLINE
    uint32_t words[CN_DESC_WORDS];
READ_DESC:
    for (int k = 0; k < CN_DESC_WORDS; k++) {
#pragma HLS PIPELINE II = 1
        words[k] = desc[i * CN_DESC_WORDS + k];
    }
    CN_ACCT_LOOP(PROC_DESC, CN_DESC_WORDS, 1, CN_DEPTH_AXI);
    CN_ACCT_ADD(entries[PORT_DESC], 1);
    CN_ACCT_ADD(beats[PORT_DESC], CN_DESC_WORDS / 4);
    return decode_desc(words, d, p);
}

// One descriptor's DATAFLOW region: the four stages of `d`, and cn_fetch prefetching (fp) the
// weight chunks 1.. of `d` and the next descriptor's parameters and chunk 0 into the idle halves
// of cn_mac's and cn_dw's tables.  next_ok: the next descriptor's bias/M/S words are in range.
static void run_dataflow(const desc_t &d, const plan_t &p, const fetch_plan_t &fp, const word_t *wgt,
                         const word_t *act_rd, word_t *act_wr, bool &next_ok) {
#pragma HLS DATAFLOW
    hls::stream<word_t> w_s("w_s");
    hls::stream<word_t> dwp_s("dwp_s");
    hls::stream<word_t> in_s("in_s");
    hls::stream<word_t> mid_s("mid_s");
    hls::stream<word_t> out_s("out_s");
    hls::stream<uint8_t> offc_s("offc_s");
    hls::stream<uint8_t> offd_s("offd_s");
#pragma HLS STREAM variable = w_s depth = 64
#pragma HLS STREAM variable = dwp_s depth = 64
#pragma HLS STREAM variable = in_s depth = 64
#pragma HLS STREAM variable = mid_s depth = 64
#pragma HLS STREAM variable = out_s depth = 64
#pragma HLS STREAM variable = offc_s depth = 16
#pragma HLS STREAM variable = offd_s depth = 16
    cn_fetch(fp, wgt, w_s, dwp_s, next_ok);
    cn_load(d, p, act_rd, in_s, offd_s);
    cn_mac(d, p, fp, w_s, in_s, mid_s, offc_s);
    cn_dw(d, p, fp, dwp_s, mid_s, offc_s, offd_s, out_s);
    cn_store(d, p, act_wr, out_s);
}

#ifndef __SYNTHESIS__
static acct_desc_t *acct_record(uint32_t i, acct_desc_t scratch[2]) {
    acct_desc_t *rec = (g_acct_records && i < g_acct_capacity) ? &g_acct_records[i] : &scratch[i & 1];
    *rec = acct_desc_t();
    return rec;
}
#endif

}  // namespace codenet

using namespace codenet;

extern "C" void codenet_top(const uint32_t *desc, uint32_t n_layers, const word_t *wgt, const word_t *act_rd,
                            word_t *act_wr, uint32_t *status, uint32_t *cycles) {
#pragma HLS INTERFACE m_axi port = desc bundle = gmem_desc offset = slave depth = 393216 max_read_burst_length = 96
#pragma HLS INTERFACE m_axi port = wgt bundle = gmem_wgt offset = slave depth = 262144 max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = act_rd bundle = gmem_rd offset = slave depth = 2097152 max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = act_wr bundle = gmem_wr offset = slave depth = 2097152 max_write_burst_length = 256
#pragma HLS INTERFACE s_axilite port = desc bundle = control
#pragma HLS INTERFACE s_axilite port = n_layers bundle = control
#pragma HLS INTERFACE s_axilite port = wgt bundle = control
#pragma HLS INTERFACE s_axilite port = act_rd bundle = control
#pragma HLS INTERFACE s_axilite port = act_wr bundle = control
#pragma HLS INTERFACE s_axilite port = status bundle = control
#pragma HLS INTERFACE s_axilite port = cycles bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    uint32_t st = CN_STATUS_OK;
    double total = 0;
    if (n_layers > CN_MAX_LAYERS) {
        *status = CN_STATUS_BAD_COUNT;
        *cycles = 0;
        return;
    }
    if (n_layers == 0) {
        *status = CN_STATUS_OK;
        *cycles = 0;
        return;
    }
#ifndef __SYNTHESIS__
    acct_desc_t scratch[2], pre;
    acct_desc_t *rec = acct_record(0, scratch), *rec_next = rec;
    g_acct.cur = rec;
#endif
    desc_t d, dn;  // the descriptor to run, the next one (decoded one descriptor ahead)
    plan_t p, pn;
    int code = read_desc(desc, 0, dn, pn);
    if (code == CN_STATUS_OK) {
        // the first descriptor's parameters and MAC chunk 0: a region with no work of its own
        desc_t d0 = desc_t();
        plan_t p0 = plan_t();
        d0.op = CN_OP_PREFETCH;
        fetch_plan_t fp;
        plan_fetch(d0, p0, dn, pn, true, fp);
        bool ok = true;
#ifndef __SYNTHESIS__
        pre = acct_desc_t();
        g_acct.cur = &pre;
#endif
        run_dataflow(d0, p0, fp, wgt, act_rd, act_wr, ok);
#ifndef __SYNTHESIS__
        acct_fold_first(*rec, pre);
#endif
        if (!ok) code = CN_STATUS_BAD_PARAM;
    }
    if (code != CN_STATUS_OK) st = (uint32_t)code;
LAYERS:
    for (uint32_t i = 0; i < n_layers; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
        if (st != CN_STATUS_OK) break;
        d = dn;
        p = pn;
        bool has_next = false;
        int next_code = CN_STATUS_OK;
        if (i + 1 < n_layers) {  // decode the next descriptor first: the region prefetches its parameters
#ifndef __SYNTHESIS__
            rec_next = acct_record(i + 1, scratch);
            g_acct.cur = rec_next;
#endif
            next_code = read_desc(desc, i + 1, dn, pn);
            has_next = next_code == CN_STATUS_OK;
        }
        fetch_plan_t fp;
        plan_fetch(d, p, dn, pn, has_next, fp);
        bool next_ok = true;
#ifndef __SYNTHESIS__
        g_acct.cur = rec;
#endif
        run_dataflow(d, p, fp, wgt, act_rd, act_wr, next_ok);
#ifndef __SYNTHESIS__
        total += acct_desc_cycles(*rec, 250.0);
        rec = rec_next;
        g_acct.cur = 0;
#endif
        if (next_code != CN_STATUS_OK) st = (uint32_t)next_code | ((i + 1) << 16);
        else if (!next_ok) st = (uint32_t)CN_STATUS_BAD_PARAM | ((i + 1) << 16);
    }
#ifndef __SYNTHESIS__
    g_acct.cur = 0;
#endif
    *status = st;
    *cycles = total > 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)total;
}
