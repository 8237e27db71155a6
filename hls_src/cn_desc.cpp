// cn_desc.cpp -- decode a descriptor, check it against the static limits, derive its loop plan.
//
// One checker for every consumer: the engine calls decode_desc before running a descriptor (an
// error stops the run with a status), the emulation library adds the address proof of
// desc_extent against the buffers it was given, and the Python compiler runs the same check
// through the library (codenet_pynq/accel/emulib.py) on every table it writes in the tests.
// After CN_STATUS_OK every on-chip index the processes compute is in range (README.md
// "Descriptor format" lists the bounds and the process that relies on each).
#include "codenet_engine.h"

namespace codenet {

static inline int cdiv(int a, int b) { return (a + b - 1) / b; }

static void decode_stage(const uint32_t w[CN_DESC_WORDS], int base, stage_t &s) {
    s.w_addr = w[base];
    s.q_addr = w[base + 1];
    s.lo = (int16_t)(uint16_t)(w[base + 2] & 0xFFFF);
    s.hi = (int16_t)(uint16_t)(w[base + 2] >> 16);
    s.wbits = (uint8_t)(w[base + 3] & 0xFF);
}

static bool aligned(uint32_t a) { return a % CN_WORD_BYTES == 0; }

static bool stage_ok(const stage_t &s) {
    // an 8-bit range: s8 (lo >= -128, hi <= 127) or u8 (lo >= 0, hi <= 255)
    return (s.wbits == 4 || s.wbits == 8) && aligned(s.w_addr) && aligned(s.q_addr) && s.lo <= s.hi &&
           s.lo >= -128 && s.hi <= 255 && !(s.lo < 0 && s.hi > 127);
}

int decode_desc(const uint32_t w[CN_DESC_WORDS], desc_t &d, plan_t &p) {
    const uint32_t h = w[CN_D_HEADER];
    if ((h >> 16) != CN_DESC_MAGIC || ((h >> 8) & 0xFF) != CN_DESC_VERSION) return CN_STATUS_BAD_MAGIC;
    d.op = (uint8_t)(h & 0xFF);
    d.flags = w[CN_D_FLAGS];
    d.in_h = (uint16_t)(w[CN_D_IN_HW] & 0xFFFF);
    d.in_w = (uint16_t)(w[CN_D_IN_HW] >> 16);
    d.out_h = (uint16_t)(w[CN_D_OUT_HW] & 0xFFFF);
    d.out_w = (uint16_t)(w[CN_D_OUT_HW] >> 16);
    d.cin = (uint16_t)(w[CN_D_CH] & 0xFFFF);
    d.cout = (uint16_t)(w[CN_D_CH] >> 16);
    const uint32_t g = w[CN_D_GEOM];
    d.k = g & 0xF;
    d.stride = (g >> 4) & 0xF;
    d.pad = (g >> 8) & 0xFF;
    d.dil = (g >> 16) & 0xFF;
    d.max_off = (g >> 24) & 0xFF;
    d.nseg = (uint8_t)(w[CN_D_NSEG] & 0xFF);
    d.out_addr = w[CN_D_OUT_ADDR];
    d.off_addr = w[CN_D_OFF_ADDR];
    d.off_ch = (uint16_t)(w[CN_D_OFF_CH] & 0xFFFF);
    d.off_groups = (uint16_t)(w[CN_D_OFF_CH] >> 16);
    decode_stage(w, CN_D_W_ADDR, d.main);
    decode_stage(w, CN_D_PW_W_ADDR, d.pw);
    decode_stage(w, CN_D_OF_W_ADDR, d.of);
    if (d.op < CN_OP_DENSE || d.op > CN_OP_MOVE) return CN_STATUS_BAD_OP;
    if (w[CN_D_NSEG] < 1 || w[CN_D_NSEG] > CN_MAX_SEGS) return CN_STATUS_BAD_SIZE;
    if (d.flags & ~(uint32_t)31) return CN_STATUS_BAD_OP;

    // ---- sizes against the static limits
    if (d.in_h < 1 || d.in_w < 1 || d.out_h < 1 || d.out_w < 1) return CN_STATUS_BAD_SIZE;
    if (d.in_h > CN_MAX_W || d.in_w > CN_MAX_W || d.out_h > CN_MAX_W || d.out_w > CN_MAX_W) return CN_STATUS_BAD_SIZE;
    if (d.cin < 1 || d.cin > CN_MAX_C || d.cout < 1 || d.cout > CN_MAX_C) return CN_STATUS_BAD_SIZE;
    const bool up = (d.flags & CN_FLAG_UPSAMPLE) != 0;
    if (up && (2 * d.out_h > CN_MAX_W || 2 * d.out_w > CN_MAX_W)) return CN_STATUS_BAD_SIZE;
    if (!aligned(d.out_addr)) return CN_STATUS_BAD_SIZE;

    // ---- segments: distinct source buffers (consecutive segments of one buffer share its row)
    int total = 0;
    p.n_src = 0;
    p.src_row_words = 0;
    for (int s = 0; s < CN_MAX_SEGS; s++) {
        const uint32_t *sw = w + CN_D_SEG_BASE + s * CN_D_SEG_WORDS;
        d.seg[s].addr = sw[0];
        d.seg[s].groups = (uint16_t)(sw[1] & 0xFFFF);
        d.seg[s].ch0 = (uint16_t)(sw[2] & 0xFFFF);
        d.seg[s].count = (uint16_t)(sw[3] & 0xFFFF);
        if (s >= d.nseg) continue;
        const seg_t &sg = d.seg[s];
        if (sg.count < 1 || sg.groups < 1 || sg.groups > CN_MAX_G || !aligned(sg.addr)) return CN_STATUS_BAD_SIZE;
        if ((int)sg.ch0 + sg.count > CN_LANES * (int)sg.groups) return CN_STATUS_BAD_SIZE;
        total += sg.count;
        if (p.n_src == 0 || p.src_addr[p.n_src - 1] != sg.addr || p.src_groups[p.n_src - 1] != sg.groups) {
            p.src_addr[p.n_src] = sg.addr;
            p.src_groups[p.n_src] = sg.groups;
            p.src_off[p.n_src] = (uint16_t)p.src_row_words;
            p.src_row_words += (int)d.in_w * sg.groups;
            if (p.src_row_words > CN_SRC_WORDS) return CN_STATUS_BAD_SIZE;
            p.n_src++;
        }
        p.seg_src[s] = (uint8_t)(p.n_src - 1);
    }
    if (total != d.cin) return CN_STATUS_BAD_SIZE;

    const bool has_pw = (d.flags & CN_FLAG_HAS_PW) != 0;
    const bool off_chip = (d.flags & CN_FLAG_OFF_ONCHIP) != 0;
    const bool off_dram = (d.flags & CN_FLAG_OFF_DRAM) != 0;
    if (d.op != CN_OP_DWBLOCK && (has_pw || off_chip || off_dram)) return CN_STATUS_BAD_OP;
    p.n_in = cdiv(d.cin, CN_LANES);
    p.n_mid = cdiv(d.cout, CN_LANES);
    p.n_kt = p.n_in;
    p.chunk_g = p.n_mid;
    p.n_chunks = 1;
    p.pass_g = p.n_mid;
    p.n_passes = 1;
    p.mac_h = d.in_h;
    p.mac_w = d.in_w;
    p.reach = 0;

    if (d.op == CN_OP_DENSE) {
        if (d.k != 1 && d.k != 3) return CN_STATUS_BAD_OP;
        if (!stage_ok(d.main) || !(d.stride == 1 || d.stride == 2 || d.stride == 4)) return CN_STATUS_BAD_SIZE;
        if (d.k == 3 && (d.dil != 1 || d.pad > 2 || (int)d.in_w * p.n_in > CN_IM2COL_WORDS)) return CN_STATUS_BAD_SIZE;
        if (d.k == 1 && d.pad > 0) return CN_STATUS_BAD_SIZE;
        // output size must be what the geometry gives (the loops trust it)
        const int ext = d.k == 3 ? 2 * d.dil : 0;
        if ((int)d.out_h != ((int)d.in_h + 2 * d.pad - ext - 1) / d.stride + 1 ||
            (int)d.out_w != ((int)d.in_w + 2 * d.pad - ext - 1) / d.stride + 1)
            return CN_STATUS_BAD_SIZE;
        p.n_kt = cdiv((int)d.k * d.k * d.cin, CN_LANES);
        if (p.n_kt > CN_MAX_KT) return CN_STATUS_BAD_SIZE;
        const int per_g = p.n_kt * (d.main.wbits == 8 ? 2 : 1);
        int cg = CN_WBUF_BLOCKS / per_g;
        const int row_g = CN_LB_WORDS / d.out_w;
        if (row_g < cg) cg = row_g;
        if (cg < 1) return CN_STATUS_BAD_SIZE;
        p.chunk_g = cg < p.n_mid ? cg : p.n_mid;
        p.n_chunks = cdiv(p.n_mid, p.chunk_g);
        p.pass_g = p.chunk_g;
        p.mac_h = d.out_h;
        p.mac_w = d.out_w;
    } else if (d.op == CN_OP_DWBLOCK) {
        if (!stage_ok(d.main) || d.k != 3 || d.stride < 1 || d.stride > 2 || d.dil < 1) return CN_STATUS_BAD_SIZE;
        if (off_chip && off_dram) return CN_STATUS_BAD_OP;
        if (off_chip && !has_pw) return CN_STATUS_BAD_OP;
        const bool offs = off_chip || off_dram;
        if (offs && d.stride != 1) return CN_STATUS_BAD_OP;
        if (d.max_off > CN_MAX_OFFSET || (!offs && d.max_off != 0)) return CN_STATUS_BAD_SIZE;
        if (off_chip && (!stage_ok(d.of) || d.of.lo < 0 || d.of.hi > d.max_off)) return CN_STATUS_BAD_SIZE;
        if (off_dram && (d.off_groups < 1 || d.off_groups > CN_MAX_G || d.off_ch >= CN_LANES * d.off_groups ||
                         !aligned(d.off_addr) || (int)d.in_w * d.off_groups > CN_SRC_WORDS))
            return CN_STATUS_BAD_SIZE;
        p.reach = d.dil + (offs ? d.max_off : 0);
        if (2 * p.reach + 1 > CN_LB_ROWS || d.pad > 2 * d.dil) return CN_STATUS_BAD_SIZE;
        if ((int)d.out_h != ((int)d.in_h + 2 * d.pad - 2 * d.dil - 1) / d.stride + 1 ||
            (int)d.out_w != ((int)d.in_w + 2 * d.pad - 2 * d.dil - 1) / d.stride + 1)
            return CN_STATUS_BAD_SIZE;
        if (has_pw) {
            if (!stage_ok(d.pw)) return CN_STATUS_BAD_SIZE;
            if (p.n_mid * p.n_kt * (d.pw.wbits == 8 ? 2 : 1) > CN_WBUF_BLOCKS) return CN_STATUS_BAD_SIZE;
            if ((int)d.in_w * p.n_mid > CN_LB_WORDS || p.n_kt > CN_MAX_KT) return CN_STATUS_BAD_SIZE;
        } else {
            if (d.cout != d.cin) return CN_STATUS_BAD_SIZE;
            int pg = CN_LB_WORDS / d.in_w;
            if (pg < 1) return CN_STATUS_BAD_SIZE;
            p.pass_g = pg < p.n_mid ? pg : p.n_mid;
            p.n_passes = cdiv(p.n_mid, p.pass_g);
            if (offs && p.n_passes > 1 && off_chip) return CN_STATUS_BAD_SIZE;
        }
    } else if (d.op == CN_OP_MAXPOOL) {
        if (d.cout != d.cin) return CN_STATUS_BAD_SIZE;
        if ((int)d.out_h != ((int)d.in_h - 1) / 2 + 1 || (int)d.out_w != ((int)d.in_w - 1) / 2 + 1)
            return CN_STATUS_BAD_SIZE;
        int pg = CN_LB_WORDS / d.in_w;
        if (pg < 1) return CN_STATUS_BAD_SIZE;
        p.pass_g = pg < p.n_mid ? pg : p.n_mid;
        p.n_passes = cdiv(p.n_mid, p.pass_g);
        p.reach = 1;
    } else {  // MOVE
        if (d.cout != d.cin || d.out_h != d.in_h || d.out_w != d.in_w) return CN_STATUS_BAD_SIZE;
        int pg = CN_LB_WORDS / d.in_w;
        p.pass_g = pg < p.n_mid ? pg : p.n_mid;
        p.n_passes = cdiv(p.n_mid, p.pass_g);
    }
    if ((int)p.mac_w > CN_MAX_W) return CN_STATUS_BAD_SIZE;
    return CN_STATUS_OK;
}

extent_t desc_extent(const desc_t &d, const plan_t &p) {
    extent_t e;
    const uint64_t W = CN_WORD_BYTES;
    uint64_t act_end = 0;
    for (int s = 0; s < p.n_src; s++) {
        const uint64_t end = p.src_addr[s] + (uint64_t)d.in_h * d.in_w * p.src_groups[s] * W;
        if (end > act_end) act_end = end;
    }
    if (d.flags & CN_FLAG_OFF_DRAM) {
        const uint64_t end = d.off_addr + (uint64_t)d.in_h * d.in_w * d.off_groups * W;
        if (end > act_end) act_end = end;
    }
    const uint64_t up = (d.flags & CN_FLAG_UPSAMPLE) ? 2 : 1;
    const uint64_t out_end = d.out_addr + (uint64_t)d.out_h * up * d.out_w * up * p.n_mid * W;
    if (out_end > act_end) act_end = out_end;
    e.act_end = act_end;

    uint64_t wgt_end = 0;
    const uint64_t qw = (uint64_t)(p.n_mid * CN_LANES / 2) * W;  // two channels per word, whole groups
    if (d.op == CN_OP_DENSE) {
        const uint64_t blk = d.main.wbits == 8 ? 16 : 8;
        const uint64_t a = d.main.w_addr + (uint64_t)p.n_mid * p.n_kt * blk * W;
        const uint64_t b = d.main.q_addr + qw;
        wgt_end = a > b ? a : b;
    } else if (d.op == CN_OP_DWBLOCK) {
        const uint64_t rec = d.main.wbits == 8 ? 9 : 5;
        const uint64_t a = d.main.w_addr + (uint64_t)p.n_mid * rec * W, b = d.main.q_addr + qw;
        wgt_end = a > b ? a : b;
        if (d.flags & CN_FLAG_HAS_PW) {
            const uint64_t blk = d.pw.wbits == 8 ? 16 : 8;
            const uint64_t c = d.pw.w_addr + (uint64_t)p.n_mid * p.n_kt * blk * W, q = d.pw.q_addr + qw;
            if (c > wgt_end) wgt_end = c;
            if (q > wgt_end) wgt_end = q;
        }
        if (d.flags & CN_FLAG_OFF_ONCHIP) {
            const uint64_t c = d.of.w_addr + (uint64_t)p.n_mid * W, q = d.of.q_addr + W;
            if (c > wgt_end) wgt_end = c;
            if (q > wgt_end) wgt_end = q;
        }
    }
    e.wgt_end = wgt_end;
    return e;
}

}  // namespace codenet
