// codenet_emu.cpp -- the host emulation library: the engine compiled for the host, behind a C ABI
// (codenet_emu.h) that ctypes loads (codenet_pynq/accel/emulib.py).  Every table is proved safe
// before it runs: the engine's own decode_desc (static limits), desc_extent against the buffer
// sizes, and every requantisation parameter the descriptors will load.
#include <mutex>
#include <vector>

#include "cn_account.h"
#include "codenet_emu.h"
#include "codenet_engine.h"

namespace codenet {
extern acct_desc_t *g_acct_records;
extern uint32_t g_acct_capacity;
}  // namespace codenet

using namespace codenet;

namespace {

std::mutex g_engine_mutex;  // the engine has static on-chip buffers: one run at a time

uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// every M / S of a table of n_ch channels at byte `addr` of the weight region
bool qtable_ok(const uint8_t *wgt, uint64_t addr, uint64_t n_ch) {
    for (uint64_t c = 0; c < n_ch; c++) {
        const uint32_t ms = rd32(wgt + addr + 8 * c + 4);
        const uint32_t m = ms & 0xFFFF, s = ms >> 16;
        if (m >= (1u << CN_M_BITS) || s < 1 || s > CN_MAX_SHIFT) return false;
    }
    return true;
}

int check_one(const uint32_t words[CN_DESC_WORDS], const uint8_t *wgt, uint64_t wgt_size, uint64_t act_size,
              bool params) {
    desc_t d;
    plan_t p;
    int code = decode_desc(words, d, p);
    if (code != CN_STATUS_OK) return code;
    const extent_t e = desc_extent(d, p);
#ifndef CN_PLANTED_BUG  // tests build the fuzzer without the address proof to see it caught
    if (e.act_end > act_size || e.wgt_end > wgt_size) return CN_STATUS_BAD_ADDR;
#endif
    if (!params) return CN_STATUS_OK;
    const uint64_t n_ch = (uint64_t)p.n_mid * CN_LANES;
    if (d.op == CN_OP_DENSE && !qtable_ok(wgt, d.main.q_addr, n_ch)) return CN_STATUS_BAD_PARAM;
    if (d.op == CN_OP_DWBLOCK) {
        if (!qtable_ok(wgt, d.main.q_addr, n_ch)) return CN_STATUS_BAD_PARAM;
        if ((d.flags & CN_FLAG_HAS_PW) && !qtable_ok(wgt, d.pw.q_addr, n_ch)) return CN_STATUS_BAD_PARAM;
        if ((d.flags & CN_FLAG_OFF_ONCHIP) && !qtable_ok(wgt, d.of.q_addr, CN_LANES)) return CN_STATUS_BAD_PARAM;
    }
    return CN_STATUS_OK;
}

void read_words(const uint8_t *p, uint32_t *words, uint64_t n) {
    for (uint64_t k = 0; k < n; k++) words[k] = rd32(p + 4 * k);
}

#ifndef CN_EMU_NATIVE
// ap_uint<128> has no byte layout of its own: the C-simulation build converts the byte buffers
// into word arrays and back (the native build reads the bytes in place).
std::vector<word_t> to_words(const uint8_t *p, uint64_t size) {
    std::vector<word_t> w(size / CN_WORD_BYTES);
    for (size_t i = 0; i < w.size(); i++)
        for (int l = 0; l < CN_LANES; l++) lane_set(w[i], l, p[i * CN_WORD_BYTES + l]);
    return w;
}

void from_words(const std::vector<word_t> &w, uint8_t *p) {
    for (size_t i = 0; i < w.size(); i++)
        for (int l = 0; l < CN_LANES; l++) p[i * CN_WORD_BYTES + l] = lane_get(w[i], l);
}
#endif

}  // namespace

extern "C" {

uint32_t codenet_desc_version(void) { return CN_DESC_VERSION; }

uint32_t codenet_native_types(void) {
#ifdef CN_EMU_NATIVE
    return 1;
#else
    return 0;
#endif
}

uint32_t codenet_acct_record_size(void) { return (uint32_t)sizeof(acct_desc_t); }

}  // extern "C"

namespace {

// The host's proof of a table; params: also every M / S the descriptors will load.
uint32_t check_table(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                     uint64_t wgt_size, uint64_t act_size, bool params) {
    if (n_layers > CN_MAX_LAYERS) return CN_STATUS_BAD_COUNT;
    if ((uint64_t)n_layers * CN_DESC_WORDS * 4 > desc_size) return CN_STATUS_BAD_ADDR;
    if (wgt_size % CN_WORD_BYTES || act_size % CN_WORD_BYTES) return CN_STATUS_BAD_ADDR;
    for (uint32_t i = 0; i < n_layers; i++) {
        uint32_t words[CN_DESC_WORDS];
        read_words(desc + (uint64_t)i * CN_DESC_WORDS * 4, words, CN_DESC_WORDS);
        const int code = check_one(words, wgt, wgt_size, act_size, params);
        if (code != CN_STATUS_OK) return (uint32_t)code | (i << 16);
    }
    return CN_STATUS_OK;
}

uint32_t run_ports(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt, uint64_t wgt_size,
                   uint8_t *act, uint64_t act_size, uint32_t *cycles, void *records, uint32_t capacity,
                   bool host_params) {
    uint32_t cyc = 0, status = check_table(desc, desc_size, n_layers, wgt, wgt_size, act_size, host_params);
    if (status == CN_STATUS_OK) {
        std::lock_guard<std::mutex> lock(g_engine_mutex);
        static uint32_t table[CN_MAX_LAYERS * CN_DESC_WORDS];
        read_words(desc, table, (uint64_t)n_layers * CN_DESC_WORDS);
        g_acct_records = (acct_desc_t *)records;
        g_acct_capacity = records ? capacity : 0;
#ifdef CN_EMU_NATIVE
        codenet_top(table, n_layers, (const word_t *)wgt, (const word_t *)act, (word_t *)act, &status, &cyc);
#else
        const std::vector<word_t> w = to_words(wgt, wgt_size);
        std::vector<word_t> a = to_words(act, act_size);
        codenet_top(table, n_layers, w.data(), a.data(), a.data(), &status, &cyc);
        from_words(a, act);
#endif
        g_acct_records = 0;
        g_acct_capacity = 0;
    }
    if (cycles) *cycles = cyc;
    return status;
}

}  // namespace

extern "C" {

uint32_t codenet_check(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                       uint64_t wgt_size, uint64_t act_size) {
    return check_table(desc, desc_size, n_layers, wgt, wgt_size, act_size, true);
}

uint32_t codenet_run_ports(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                           uint64_t wgt_size, uint8_t *act, uint64_t act_size, uint32_t *cycles, void *records,
                           uint32_t capacity) {
    return run_ports(desc, desc_size, n_layers, wgt, wgt_size, act, act_size, cycles, records, capacity, true);
}

uint32_t codenet_run_ports_engine_params(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers,
                                         const uint8_t *wgt, uint64_t wgt_size, uint8_t *act, uint64_t act_size,
                                         uint32_t *cycles) {
    return run_ports(desc, desc_size, n_layers, wgt, wgt_size, act, act_size, cycles, 0, 0, false);
}

uint32_t codenet_run(uint8_t *dram, uint64_t dram_size, uint64_t desc_addr, uint32_t n_layers, uint64_t wgt_addr,
                     uint64_t act_addr, uint32_t *cycles) {
    if (desc_addr > dram_size || wgt_addr > dram_size || act_addr > dram_size) {
        if (cycles) *cycles = 0;
        return CN_STATUS_BAD_ADDR;
    }
    // each region extends to the end of the image (the hardware has no notion of sizes)
    const uint64_t wsz = (dram_size - wgt_addr) / CN_WORD_BYTES * CN_WORD_BYTES;
    const uint64_t asz = (dram_size - act_addr) / CN_WORD_BYTES * CN_WORD_BYTES;
    return codenet_run_ports(dram + desc_addr, dram_size - desc_addr, n_layers, dram + wgt_addr, wsz, dram + act_addr,
                             asz, cycles, 0, 0);
}

double codenet_desc_cycles(const void *record, double f_mhz) {
    return acct_desc_cycles(*(const acct_desc_t *)record, f_mhz);
}

}  // extern "C"
