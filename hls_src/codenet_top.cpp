// codenet_top.cpp -- the top function: walk the descriptor table, load each descriptor's
// parameters, run its dataflow region (cn_load -> cn_mac -> cn_dw -> cn_store).
#include "cn_account.h"
#include "cn_dw.h"
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

// Burst-read a bias/M/S table of n_g groups (8 words per group, two channels per word).
static bool load_qtable(const word_t *wgt, uint32_t addr, int n_g, qparam_t q[][CN_LANES]) {
#pragma HLS INLINE
    const uint32_t base = addr / CN_WORD_BYTES;
    const int n = n_g * CN_LANES / 2;
    bool ok = true;
    qparam_t row[CN_LANES];  // shift register: a group's 16 channels arrive two per word
#pragma HLS ARRAY_PARTITION variable = row complete
    int k = 0, g = 0;
QLOAD:
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 1024
        const word_t w = wgt[base + i];
        CN_ACCT_AXI(PORT_PAR, base + i);
        for (int l = 0; l < CN_LANES - 2; l++) row[l] = row[l + 2];
        ok &= decode_qparam(w, 0, row[CN_LANES - 2]);
        ok &= decode_qparam(w, 1, row[CN_LANES - 1]);
        if (++k == CN_LANES / 2) {  // a whole group: one write to each of the 16 lane banks
            for (int l = 0; l < CN_LANES; l++) q[g][l] = row[l];
            k = 0;
            g++;
        }
    }
    CN_ACCT_AXI_END(PORT_PAR);
    CN_ACCT_LOOP(PROC_WGT, n, 1, CN_DEPTH_AXI);
    return ok;
}

// Burst-read n_g records of `rec` words (rec <= stride) into dst[g][0..rec).
template <int STRIDE>
static void load_records(const word_t *wgt, uint32_t addr, int n_g, int rec, word_t dst[CN_MAX_G][STRIDE]) {
#pragma HLS INLINE
    const uint32_t base = addr / CN_WORD_BYTES;
    const int n = n_g * rec;
    int g = 0, k = 0;
RLOAD:
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1152
        dst[g][k] = wgt[base + i];
        CN_ACCT_AXI(PORT_PAR, base + i);
        if (++k == rec) {
            k = 0;
            g++;
        }
    }
    CN_ACCT_AXI_END(PORT_PAR);
    CN_ACCT_LOOP(PROC_WGT, n, 1, CN_DEPTH_AXI);
}

// Everything a descriptor's processes read on chip besides the MAC weights.
static int load_desc_params(const desc_t &d, const plan_t &p, const word_t *wgt, stage_params_t &sp,
                            dw_params_t &dp) {
#pragma HLS INLINE
    static word_t ofrec[CN_MAX_G][1];
    static qparam_t oq[1][CN_LANES];
#pragma HLS BIND_STORAGE variable = ofrec type = ram_1p impl = lutram
    bool ok = true;
    const bool has_pw = (d.flags & CN_FLAG_HAS_PW) != 0;
    if (d.op == CN_OP_DENSE) ok &= load_qtable(wgt, d.main.q_addr, p.n_mid, sp.q);
    if (d.op == CN_OP_DWBLOCK) {
        ok &= load_qtable(wgt, d.main.q_addr, p.n_mid, dp.q);
        load_records<CN_DW_REC_WORDS>(wgt, d.main.w_addr, p.n_mid, d.main.wbits == 8 ? 9 : 5, dp.rec);
        if (has_pw) ok &= load_qtable(wgt, d.pw.q_addr, p.n_mid, sp.q);
        if (d.flags & CN_FLAG_OFF_ONCHIP) {
            ok &= load_qtable(wgt, d.of.q_addr, 1, oq);
            sp.oq = oq[0][0];
            load_records<1>(wgt, d.of.w_addr, p.n_mid, 1, ofrec);
        }
    }
OFW:
    for (int g = 0; g < p.n_mid; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
        for (int l = 0; l < CN_LANES; l++)
            sp.ofw[g][l] = (d.flags & CN_FLAG_OFF_ONCHIP) ? packed_weight(ofrec[g], l, d.of.wbits) : (wgt_t)0;
    }
    return ok ? CN_STATUS_OK : CN_STATUS_BAD_PARAM;
}

static void run_dataflow(const desc_t &d, const plan_t &p, const word_t *wgt, const word_t *act_rd, word_t *act_wr,
                         const stage_params_t &sp, const dw_params_t &dp) {
#pragma HLS DATAFLOW
    hls::stream<word_t> in_s("in_s");
    hls::stream<word_t> mid_s("mid_s");
    hls::stream<word_t> out_s("out_s");
    hls::stream<uint8_t> offc_s("offc_s");
    hls::stream<uint8_t> offd_s("offd_s");
#pragma HLS STREAM variable = in_s depth = 64
#pragma HLS STREAM variable = mid_s depth = 64
#pragma HLS STREAM variable = out_s depth = 64
#pragma HLS STREAM variable = offc_s depth = 16
#pragma HLS STREAM variable = offd_s depth = 16
    cn_load(d, p, act_rd, in_s, offd_s);
    cn_mac(d, p, wgt, sp, in_s, mid_s, offc_s);
    cn_dw(d, p, dp, mid_s, offc_s, offd_s, out_s);
    cn_store(d, p, act_wr, out_s);
}

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
    static stage_params_t sp;
    static dw_params_t dp;
#pragma HLS ARRAY_PARTITION variable = sp.q complete dim = 2
#pragma HLS ARRAY_PARTITION variable = sp.ofw complete dim = 2
#pragma HLS ARRAY_PARTITION variable = dp.q complete dim = 2
#pragma HLS ARRAY_PARTITION variable = dp.rec complete dim = 2
#pragma HLS BIND_STORAGE variable = sp.q type = ram_1p impl = lutram
#pragma HLS BIND_STORAGE variable = sp.ofw type = ram_1p impl = lutram
#pragma HLS BIND_STORAGE variable = dp.q type = ram_1p impl = lutram
#pragma HLS BIND_STORAGE variable = dp.rec type = ram_1p impl = lutram
    uint32_t st = CN_STATUS_OK;
    double total = 0;
    if (n_layers > CN_MAX_LAYERS) {
        *status = CN_STATUS_BAD_COUNT;
        *cycles = 0;
        return;
    }
LAYERS:
    for (uint32_t i = 0; i < n_layers; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
#ifndef __SYNTHESIS__
        acct_desc_t scratch;
        acct_desc_t *rec = (g_acct_records && i < g_acct_capacity) ? &g_acct_records[i] : &scratch;
        *rec = acct_desc_t();
        g_acct.cur = rec;
#endif
        uint32_t words[CN_DESC_WORDS];
    READ_DESC:
        for (int k = 0; k < CN_DESC_WORDS; k++) {
#pragma HLS PIPELINE II = 1
            words[k] = desc[i * CN_DESC_WORDS + k];
        }
        CN_ACCT_LOOP(PROC_DESC, CN_DESC_WORDS, 1, CN_DEPTH_AXI);
        CN_ACCT_ADD(entries[PORT_DESC], 1);
        CN_ACCT_ADD(beats[PORT_DESC], CN_DESC_WORDS / 4);
        desc_t d;
        plan_t p;
        int code = decode_desc(words, d, p);
        if (code == CN_STATUS_OK) code = load_desc_params(d, p, wgt, sp, dp);
        if (code != CN_STATUS_OK) {
            st = (uint32_t)code | (i << 16);
            break;
        }
        run_dataflow(d, p, wgt, act_rd, act_wr, sp, dp);
#ifndef __SYNTHESIS__
        total += acct_desc_cycles(*rec, 250.0);
        g_acct.cur = 0;
#endif
    }
#ifndef __SYNTHESIS__
    g_acct.cur = 0;
#endif
    *status = st;
    *cycles = total > 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)total;
}
