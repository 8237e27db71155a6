// codenet_emu.cpp -- host emulation of the accelerator: a C ABI around codenet_top.
//
// Not part of the HLS IP.  Built into hls_src/build/libcodenet_emu.so (`make -C hls_src lib`)
// and linked into the C-simulation testbench.  The ABI mirrors the hardware exactly: one
// pointer per AXI master (descriptor table, weights, activations read/write) plus n_layers,
// and the status / cycle-count registers as outputs.  Unlike the hardware, the host checks
// every descriptor's DRAM accesses against the buffer sizes before it starts, so a bad table
// returns CN_STATUS_BAD_ADDR instead of corrupting memory.
#include <mutex>

#include "codenet_emu.h"
#include "codenet_engine.h"

using namespace codenet;

namespace {

std::mutex g_engine_mutex;  // the engine has static on-chip buffers: one run at a time

uint64_t ceil_div64(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

bool fits(uint64_t addr, uint64_t nbytes, uint64_t size) { return nbytes == 0 || (addr < size && nbytes <= size - addr); }

// Bytes of a packed weight stream of n elements.
uint64_t wbytes(uint64_t n, int wbits) { return ceil_div64(n * (uint64_t)wbits, 8); }

// Check one decoded descriptor's DRAM extents; returns a CN_STATUS_* code.
int check_extents(const desc_t &d, uint64_t wgt_size, uint64_t act_size) {
    const uint64_t pix_in = (uint64_t)d.in_h * d.in_w;
    uint64_t max_out_ch = 0;
    for (int s = 0; s < d.nseg; s++) {
        const seg_t &g = d.seg[s];
        if (g.count == 0) return CN_STATUS_BAD_SIZE;
        const uint64_t last = g.addr + (pix_in - 1) * g.pix_stride + (uint64_t)(g.count - 1) * g.ch_stride;
        if (last >= act_size) return CN_STATUS_BAD_ADDR;
        const uint64_t oc = g.out_off + (uint64_t)(g.count - 1) * g.out_stride;
        if (oc > max_out_ch) max_out_ch = oc;
    }
    const bool has_pw = (d.flags & CN_FLAG_HAS_PW) != 0;
    const bool per_channel = d.op == CN_OP_MAXPOOL || d.op == CN_OP_MOVE || (d.op == CN_OP_DWBLOCK && !has_pw);
    if (!per_channel) max_out_ch = (uint64_t)(d.cout - 1) * d.out_ch;
    const uint64_t up = (d.flags & CN_FLAG_UPSAMPLE) ? 2 : 1;
    const uint64_t pix_out = (uint64_t)d.out_h * up * d.out_w * up;
    if (d.out_addr + (pix_out - 1) * d.out_pix + max_out_ch >= act_size) return CN_STATUS_BAD_ADDR;
    if ((d.flags & CN_FLAG_OFF_DRAM) && d.off_addr + (pix_in - 1) * d.off_pix >= act_size) return CN_STATUS_BAD_ADDR;

    const uint64_t tile = (uint64_t)CN_PA * CN_PE;
    if (d.op == CN_OP_DENSE) {
        const uint64_t n_kt = ceil_div64((uint64_t)d.k * d.k * d.cin, CN_PA);
        const uint64_t n_ct = ceil_div64(d.cout, CN_PE);
        if (!fits(d.main.w_addr, wbytes(n_ct * n_kt * tile, d.main.wbits), wgt_size)) return CN_STATUS_BAD_ADDR;
        if (!fits(d.main.q_addr, (uint64_t)d.cout * CN_QPARAM_BYTES, wgt_size)) return CN_STATUS_BAD_ADDR;
    } else if (d.op == CN_OP_DWBLOCK) {
        const uint64_t n_dt = ceil_div64(d.cout, CN_DW_PE);
        if (!fits(d.main.w_addr, wbytes(n_dt * 9 * CN_DW_PE, d.main.wbits), wgt_size)) return CN_STATUS_BAD_ADDR;
        if (!fits(d.main.q_addr, (uint64_t)d.cout * CN_QPARAM_BYTES, wgt_size)) return CN_STATUS_BAD_ADDR;
        if (has_pw) {
            const uint64_t n_kt = ceil_div64(d.cin, CN_PA), n_ct = ceil_div64(d.cout, CN_PE);
            if (!fits(d.pw.w_addr, wbytes(n_ct * n_kt * tile, d.pw.wbits), wgt_size)) return CN_STATUS_BAD_ADDR;
            if (!fits(d.pw.q_addr, (uint64_t)d.cout * CN_QPARAM_BYTES, wgt_size)) return CN_STATUS_BAD_ADDR;
        }
        if (d.flags & CN_FLAG_OFF_ONCHIP) {
            const uint64_t n_kt = ceil_div64(d.cout, CN_PA);
            if (!fits(d.of.w_addr, wbytes(n_kt * tile, d.of.wbits), wgt_size)) return CN_STATUS_BAD_ADDR;
            if (!fits(d.of.q_addr, CN_QPARAM_BYTES, wgt_size)) return CN_STATUS_BAD_ADDR;
        }
    }
    return CN_STATUS_OK;
}

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

uint32_t codenet_check(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, uint64_t wgt_size,
                       uint64_t act_size) {
    if (n_layers > CN_MAX_LAYERS) return CN_STATUS_BAD_COUNT;
    if ((uint64_t)n_layers * CN_DESC_WORDS * 4 > desc_size) return CN_STATUS_BAD_ADDR;
    for (uint32_t i = 0; i < n_layers; i++) {
        uint32_t words[CN_DESC_WORDS];
        const uint8_t *p = desc + (uint64_t)i * CN_DESC_WORDS * 4;
        for (int k = 0; k < CN_DESC_WORDS; k++)
            words[k] = (uint32_t)p[4 * k] | ((uint32_t)p[4 * k + 1] << 8) | ((uint32_t)p[4 * k + 2] << 16) |
                       ((uint32_t)p[4 * k + 3] << 24);
        desc_t d;
        int code = decode_desc(words, d);
        if (code == CN_STATUS_OK) code = check_extents(d, wgt_size, act_size);
        if (code != CN_STATUS_OK) return (uint32_t)code | (i << 16);
    }
    return CN_STATUS_OK;
}

uint32_t codenet_run_ports(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                           uint64_t wgt_size, uint8_t *act, uint64_t act_size, uint32_t *cycles) {
    uint32_t cyc = 0, status = codenet_check(desc, desc_size, n_layers, wgt_size, act_size);
    if (status == CN_STATUS_OK) {
        // the descriptor table is read as 32-bit words: copy to aligned storage if needed
        std::lock_guard<std::mutex> lock(g_engine_mutex);
        static uint32_t table[CN_MAX_LAYERS * CN_DESC_WORDS];
        const uint8_t *p = desc;
        for (uint64_t k = 0; k < (uint64_t)n_layers * CN_DESC_WORDS; k++)
            table[k] = (uint32_t)p[4 * k] | ((uint32_t)p[4 * k + 1] << 8) | ((uint32_t)p[4 * k + 2] << 16) |
                       ((uint32_t)p[4 * k + 3] << 24);
        codenet_top(table, n_layers, wgt, act, act, &status, &cyc);
    }
    if (cycles) *cycles = cyc;
    return status;
}

uint32_t codenet_run(uint8_t *dram, uint64_t dram_size, uint64_t desc_addr, uint32_t n_layers, uint64_t wgt_addr,
                     uint64_t act_addr, uint32_t *cycles) {
    if (desc_addr > dram_size || wgt_addr > dram_size || act_addr > dram_size) {
        if (cycles) *cycles = 0;
        return CN_STATUS_BAD_ADDR;
    }
    // each region extends to the end of the image (the hardware has no notion of sizes)
    return codenet_run_ports(dram + desc_addr, dram_size - desc_addr, n_layers, dram + wgt_addr,
                             dram_size - wgt_addr, dram + act_addr, dram_size - act_addr, cycles);
}

}  // extern "C"
