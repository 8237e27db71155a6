// codenet_engine.cpp -- the CoDeNet accelerator engine (Vitis HLS C++; also the host emulator).
//
// Structure (README.md has the diagram):
//   codenet_top: for each descriptor in the DRAM table -> decode -> run one of
//     run_dense    dense k x k conv (k = 1: pointwise, k = 3: first layer / plain 3x3) on the
//                  PA x PE MAC array; 3x3 reads through the line buffer (im2col of PA lanes)
//     run_dwblock  fused [pointwise -> offset conv] -> dilated depthwise, a DATAFLOW region of
//                  three processes: source (PW MACs + on-chip offset conv, or DRAM gather)
//                  -> depthwise (19-row line buffer, window re-centred per pixel) -> writer
//     run_maxpool  3x3 / 2 max pool through the line buffer
//     run_move     gather/scatter copy (slice, concat, shuffle, upsample that could not be
//                  absorbed into a producer or consumer)
//   Every writer applies the nearest x2 upsample on write and the output channel placement;
//   every reader applies the input segment table (channel slice/concat/shuffle).
//
// HLS rules kept: static array sizes, no recursion, no dynamic allocation, pointer arithmetic
// only on the m_axi ports.  Large on-chip buffers are static in codenet_top and passed down.
#include "codenet_engine.h"

namespace codenet {

typedef engine_config CFG;
static_assert(CN_PE == CN_DW_PE, "the pointwise -> depthwise stream carries PE = DW_PE lanes");
static_assert(CN_LB_ROWS == 2 * (CN_MAX_OFFSET + 1) + 1, "line buffer must cover dilation 1 + MAX_OFFSET");
static_assert(CN_MAX_W * CN_DW_PE <= CN_LB_ROW_ELEMS, "a line-buffer row must hold DW_PE channels");

// ------------------------------------------------------------------------------- helpers
static inline uint32_t rd32(const uint8_t *p, uint32_t a) {
#pragma HLS INLINE
    return (uint32_t)p[a] | ((uint32_t)p[a + 1] << 8) | ((uint32_t)p[a + 2] << 16) |
           ((uint32_t)p[a + 3] << 24);
}

static inline act_t decode_act(uint8_t b, bool sgn) {
#pragma HLS INLINE
    return sgn ? (act_t)(int8_t)b : (act_t)b;
}

static inline int16_t lo16(uint32_t w) { return (int16_t)(uint16_t)(w & 0xFFFF); }
static inline int16_t hi16(uint32_t w) { return (int16_t)(uint16_t)(w >> 16); }

static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The integer contract (intmath.requantize): acc already holds acc + bias.
//   y = clamp((acc * M + (1 << (S - 1))) >> S, lo, hi)   in 64 bits, arithmetic shift.
static inline act_t requant(acc_t acc, const qparam_t &q, int16_t lo, int16_t hi) {
#pragma HLS INLINE
    wide_t t = (wide_t)acc * (wide_t)q.m;
    t += ((wide_t)1) << (q.s - 1);
    t = t >> q.s;
    if (t < (wide_t)lo) return (act_t)lo;
    if (t > (wide_t)hi) return (act_t)hi;
    return (act_t)t;
}

// Sign-extended weight element e of a packed stream (int4: two per byte, low nibble first).
static inline wgt_t weight_at(const uint8_t *wgt, uint32_t addr, uint32_t e, int wbits) {
#pragma HLS INLINE
    if (wbits == 8) return (wgt_t)(int8_t)wgt[addr + e];
    uint8_t b = wgt[addr + (e >> 1)];
    int v = (e & 1) ? (b >> 4) : (b & 0xF);
    return (wgt_t)(v >= 8 ? v - 16 : v);
}

static void load_qparams(const uint8_t *wgt, uint32_t addr, int n, qparam_t q[CFG::max_c]) {
LOAD_Q:
    for (int c = 0; c < n; c++) {
#pragma HLS PIPELINE II = 1
        uint32_t a = addr + (uint32_t)c * CN_QPARAM_BYTES;
        q[c].bias = (int32_t)rd32(wgt, a);
        uint32_t ms = rd32(wgt, a + 4);
        q[c].m = (uint16_t)(ms & 0xFFFF);
        q[c].s = (uint8_t)((ms >> 16) & 0xFF);
    }
}

// Load `n` weight elements starting at element `first` of a packed stream into wbuf[0..n).
static void load_weights(const uint8_t *wgt, uint32_t addr, int wbits, uint32_t first, int n,
                         wgt_t wbuf[CFG::wbuf_elems], uint32_t &cyc) {
LOAD_W:
    for (int e = 0; e < n; e++) {
#pragma HLS PIPELINE II = 1
        wbuf[e] = weight_at(wgt, addr, first + (uint32_t)e, wbits);
    }
    cyc += (uint32_t)ceil_div(n * wbits, CN_AXI_DATA_BITS);
}

// Input channel table of a descriptor (read order j = the segments in order).
struct in_tables_t {
    uint32_t addr[CFG::max_c];  // byte address of channel j at pixel (0, 0)
    uint32_t pix[CFG::max_c];   // its pixel stride
};

static void build_in_table(const desc_t &d, in_tables_t &t) {
    int j = 0;
SEGS:
    for (int s = 0; s < CFG::max_segs; s++) {
        if (s >= d.nseg) break;
    SEG_CH:
        for (int k = 0; k < d.seg[s].count; k++) {
#pragma HLS PIPELINE II = 1
            t.addr[j] = d.seg[s].addr + (uint32_t)k * d.seg[s].ch_stride;
            t.pix[j] = d.seg[s].pix_stride;
            j++;
        }
    }
}

// Output channel placement: byte offset of output channel j within an output pixel.  Ops that
// compute new channels (dense, pointwise) use j * out_ch; per-channel ops (depthwise without a
// pointwise stage, max pool, move) carry each input segment's placement out_off + k * out_stride.
static void build_out_table(const desc_t &d, bool per_channel, uint32_t out_off[CFG::max_c]) {
    if (per_channel) {
        int j = 0;
    OSEGS:
        for (int s = 0; s < CFG::max_segs; s++) {
            if (s >= d.nseg) break;
        OSEG_CH:
            for (int k = 0; k < d.seg[s].count; k++) {
#pragma HLS PIPELINE II = 1
                out_off[j++] = d.seg[s].out_off + (uint32_t)k * d.seg[s].out_stride;
            }
        }
    } else {
    OUT_CH:
        for (int c = 0; c < d.cout; c++) {
#pragma HLS PIPELINE II = 1
            out_off[c] = (uint32_t)c * d.out_ch;
        }
    }
}

// Read input channels [c0, c0 + n) (read order) of pixel (y, x) into v[0..n).
static void gather_pixel(const uint8_t *act, const desc_t &d, const in_tables_t &t, int y, int x,
                         int c0, int n, act_t *v) {
    const bool sgn = (d.flags & CN_FLAG_IN_SIGNED) != 0;
    const uint32_t pix = (uint32_t)y * d.in_w + (uint32_t)x;
GATHER:
    for (int j = 0; j < n; j++) {
#pragma HLS PIPELINE II = 1
        v[j] = decode_act(act[t.addr[c0 + j] + pix * t.pix[c0 + j]], sgn);
    }
}

// Write one output element of pixel (oy, ox) at byte offset `ch` of the pixel; nearest x2
// upsample on write when the flag is set (one input pixel -> a 2 x 2 block).
static inline void write_out(uint8_t *act, const desc_t &d, int oy, int ox, uint32_t ch, act_t v) {
#pragma HLS INLINE
    const uint8_t b = (uint8_t)(int)v;
    if (d.flags & CN_FLAG_UPSAMPLE) {
        const uint32_t ow = 2u * d.out_w;
        const uint32_t p = (2u * oy) * ow + 2u * ox;
        const uint32_t base = d.out_addr + ch;
        act[base + p * d.out_pix] = b;
        act[base + (p + 1) * d.out_pix] = b;
        act[base + (p + ow) * d.out_pix] = b;
        act[base + (p + ow + 1) * d.out_pix] = b;
    } else {
        act[d.out_addr + ch + ((uint32_t)oy * d.out_w + ox) * d.out_pix] = b;
    }
}

static inline int lb_slot(int row) {
#pragma HLS INLINE
    return row % CFG::lb_rows;
}

// The PA x PE MAC array: acc[o] += sum_k w[o][k] * x[k] over n_kt tiles of PA lanes.
// wtile points at this output tile's weights in the on-chip buffer: [kt][o][i].
template <class C>
static inline void mac_array(const act_t *x, const wgt_t *wtile, int n_kt, acc_t acc[C::pe]) {
MAC_KT:
    for (int kt = 0; kt < n_kt; kt++) {
#pragma HLS PIPELINE II = 1
        const wgt_t *w = wtile + kt * C::pa * C::pe;
        const act_t *xv = x + kt * C::pa;
    MAC_O:
        for (int o = 0; o < C::pe; o++) {
#pragma HLS UNROLL
            acc_t s = 0;
        MAC_I:
            for (int i = 0; i < C::pa; i++) {
#pragma HLS UNROLL
                s += (acc_t)(w[o * C::pa + i] * xv[i]);
            }
            acc[o] += s;
        }
    }
}

// ------------------------------------------------------------------------------- decode
static void decode_stage(const uint32_t w[CN_DESC_WORDS], int base, stage_t &s) {
    s.w_addr = w[base];
    s.q_addr = w[base + 1];
    s.lo = lo16(w[base + 2]);
    s.hi = hi16(w[base + 2]);
    s.wbits = (uint8_t)w[base + 3];
}

int decode_desc(const uint32_t w[CN_DESC_WORDS], desc_t &d) {
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
    d.nseg = (uint8_t)w[CN_D_NSEG];
    d.out_addr = w[CN_D_OUT_ADDR];
    d.out_pix = w[CN_D_OUT_PIX];
    d.out_ch = w[CN_D_OUT_CH];
    d.off_addr = w[CN_D_OFF_ADDR];
    d.off_pix = w[CN_D_OFF_PIX];
    decode_stage(w, CN_D_W_ADDR, d.main);
    decode_stage(w, CN_D_PW_W_ADDR, d.pw);
    decode_stage(w, CN_D_OF_W_ADDR, d.of);
    int total = 0;
    for (int s = 0; s < CN_MAX_SEGS; s++) {
        const uint32_t *sw = w + CN_D_SEG_BASE + s * CN_D_SEG_WORDS;
        d.seg[s].addr = sw[0];
        d.seg[s].pix_stride = sw[1];
        d.seg[s].count = (uint16_t)(sw[2] & 0xFFFF);
        d.seg[s].ch_stride = (uint16_t)(sw[2] >> 16);
        d.seg[s].out_off = (uint16_t)(sw[3] & 0xFFFF);
        d.seg[s].out_stride = (uint16_t)(sw[3] >> 16);
        if (s < d.nseg) total += d.seg[s].count;
    }

    // ---- checks against the static limits (memory safety of every on-chip array)
    if (d.op < CN_OP_DENSE || d.op > CN_OP_MOVE) return CN_STATUS_BAD_OP;
    if (d.nseg < 1 || d.nseg > CN_MAX_SEGS || total != d.cin) return CN_STATUS_BAD_SIZE;
    if (d.in_h < 1 || d.in_w < 1 || d.out_h < 1 || d.out_w < 1) return CN_STATUS_BAD_SIZE;
    if (d.in_h > CN_MAX_W || d.in_w > CN_MAX_W || d.out_h > CN_MAX_W || d.out_w > CN_MAX_W)
        return CN_STATUS_BAD_SIZE;
    if (d.cin < 1 || d.cin > CN_MAX_C || d.cout < 1 || d.cout > CN_MAX_C) return CN_STATUS_BAD_SIZE;
    if (d.stride < 1 || d.stride > 2 || d.dil < 1) return CN_STATUS_BAD_SIZE;
    const bool has_pw = (d.flags & CN_FLAG_HAS_PW) != 0;
    const bool off_chip = (d.flags & CN_FLAG_OFF_ONCHIP) != 0;
    const bool off_dram = (d.flags & CN_FLAG_OFF_DRAM) != 0;
    if (d.op != CN_OP_DWBLOCK && (has_pw || off_chip || off_dram)) return CN_STATUS_BAD_OP;
    if (d.op == CN_OP_DENSE) {
        if (d.k != 1 && d.k != 3) return CN_STATUS_BAD_OP;
        if (d.main.wbits != 4 && d.main.wbits != 8) return CN_STATUS_BAD_OP;
        const int kk = d.k * d.k * d.cin;
        if (ceil_div(kk, CFG::pa) * CFG::pa * CFG::pe > CFG::wbuf_elems) return CN_STATUS_BAD_SIZE;
        if (d.k == 3 && ((int)d.in_w * d.cin > CFG::lb_row_elems ||
                         2 * d.dil + 1 > CFG::lb_rows || d.pad > 2 * d.dil))
            return CN_STATUS_BAD_SIZE;
    } else if (d.op == CN_OP_DWBLOCK) {
        if (off_chip && off_dram) return CN_STATUS_BAD_OP;
        if (off_chip && !has_pw) return CN_STATUS_BAD_OP;
        if (d.main.wbits != 4 && d.main.wbits != 8) return CN_STATUS_BAD_OP;
        if (has_pw) {
            if (d.pw.wbits != 4 && d.pw.wbits != 8) return CN_STATUS_BAD_OP;
            if ((int)d.in_w * d.cin > CFG::lb_row_elems || (int)d.in_w * d.cout > CFG::lb_row_elems)
                return CN_STATUS_BAD_SIZE;
            if (ceil_div(d.cin, CFG::pa) * CFG::pa * CFG::pe > CFG::wbuf_elems) return CN_STATUS_BAD_SIZE;
        } else {
            if (d.cout != d.cin) return CN_STATUS_BAD_SIZE;
            if ((int)d.in_w * CFG::dw_pe > CFG::lb_row_elems) return CN_STATUS_BAD_SIZE;
        }
        if (off_chip && (d.of.wbits != 4 && d.of.wbits != 8)) return CN_STATUS_BAD_OP;
        if (off_chip && (d.of.lo < 0 || d.of.hi > d.max_off)) return CN_STATUS_BAD_SIZE;
        const bool offs = off_chip || off_dram;
        if (offs && d.stride != 1) return CN_STATUS_BAD_OP;
        if (d.max_off > CN_MAX_OFFSET) return CN_STATUS_BAD_SIZE;
        const int reach = d.dil + (offs ? d.max_off : 0);
        if (2 * reach + 1 > CFG::lb_rows || d.pad > 2 * d.dil) return CN_STATUS_BAD_SIZE;
    } else if (d.op == CN_OP_MAXPOOL) {
        if (d.cout != d.cin || (int)d.in_w * CFG::dw_pe > CFG::lb_row_elems) return CN_STATUS_BAD_SIZE;
    } else {  // MOVE
        if (d.cout != d.cin || d.out_h != d.in_h || d.out_w != d.in_w) return CN_STATUS_BAD_SIZE;
    }
    return CN_STATUS_OK;
}

// ------------------------------------------------------------------------------- dense conv
// Output-channel chunks sized to the weight buffer (chunk-outer: weights load once per chunk,
// the input is re-read per chunk); per output pixel one reduction vector x[K] (K = k*k*cin:
// pointwise = the pixel's channels, 3x3 = im2col from the line buffer) feeds the MAC array.
static void run_dense(const desc_t &d, const uint8_t *wgt, const uint8_t *act_rd, uint8_t *act_wr,
                      act_t lb[CFG::lb_rows][CFG::lb_row_elems], wgt_t wbuf[CFG::wbuf_elems],
                      in_tables_t &tab, uint32_t out_off[CFG::max_c], qparam_t q[CFG::max_c], uint32_t &cyc) {
    static act_t x[CFG::max_k];
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = CN_PA
    const int cin = d.cin, kk = d.k * d.k * cin;
    const int n_kt = ceil_div(kk, CFG::pa);
    const int kpad = n_kt * CFG::pa;
    const int n_ct = ceil_div(d.cout, CFG::pe);
    const int tile_elems = n_kt * CFG::pa * CFG::pe;
    int tpc = CFG::wbuf_elems / tile_elems;
    if (tpc > n_ct) tpc = n_ct;
    build_in_table(d, tab);
    build_out_table(d, false, out_off);
    load_qparams(wgt, d.main.q_addr, d.cout, q);
    for (int k = kk; k < kpad; k++) x[k] = 0;

CHUNKS:
    for (int ct0 = 0; ct0 < n_ct; ct0 += tpc) {
        const int nt = (n_ct - ct0 < tpc) ? n_ct - ct0 : tpc;
        load_weights(wgt, d.main.w_addr, d.main.wbits, (uint32_t)ct0 * tile_elems, nt * tile_elems, wbuf,
                     cyc);
        int next_row = 0;
    ROWS:
        for (int oy = 0; oy < d.out_h; oy++) {
            if (d.k == 3) {  // keep input rows oy*s - pad .. + 2*dil in the line buffer
                const int first = oy * d.stride - d.pad;
                int last = first + 2 * d.dil;
                if (last > d.in_h - 1) last = d.in_h - 1;
                if (next_row < first) next_row = first;
            FILL:
                for (; next_row <= last; next_row++) {
                    act_t *row = lb[lb_slot(next_row)];
                FILL_X:
                    for (int xx = 0; xx < d.in_w; xx++) {
                        gather_pixel(act_rd, d, tab, next_row, xx, 0, cin, row + xx * cin);
                    }
                    cyc += (uint32_t)d.in_w * ceil_div(cin, CFG::pa);
                }
            }
        COLS:
            for (int ox = 0; ox < d.out_w; ox++) {
                if (d.k == 1) {
                    const int iy = oy * d.stride - d.pad, ix = ox * d.stride - d.pad;
                    if (iy < 0 || ix < 0 || iy >= d.in_h || ix >= d.in_w) {
                        for (int j = 0; j < cin; j++) x[j] = 0;
                    } else {
                        gather_pixel(act_rd, d, tab, iy, ix, 0, cin, x);
                    }
                } else {
                IM2COL:
                    for (int tap = 0; tap < 9; tap++) {
                        const int iy = oy * d.stride - d.pad + (tap / 3) * d.dil;
                        const int ix = ox * d.stride - d.pad + (tap % 3) * d.dil;
                        const bool in = iy >= 0 && ix >= 0 && iy < d.in_h && ix < d.in_w;
                        const act_t *src = lb[lb_slot(in ? iy : 0)] + (in ? ix : 0) * cin;
                    IM2COL_C:
                        for (int j = 0; j < cin; j++) {
#pragma HLS PIPELINE II = 1
                            x[tap * cin + j] = in ? src[j] : (act_t)0;
                        }
                    }
                }
            TILES:
                for (int t = 0; t < nt; t++) {
                    acc_t acc[CFG::pe];
#pragma HLS ARRAY_PARTITION variable = acc complete
                    const int co0 = (ct0 + t) * CFG::pe;
                    for (int o = 0; o < CFG::pe; o++) acc[o] = (co0 + o < d.cout) ? (acc_t)q[co0 + o].bias : (acc_t)0;
                    mac_array<CFG>(x, wbuf + t * tile_elems, n_kt, acc);
                WRITE:
                    for (int o = 0; o < CFG::pe; o++) {
#pragma HLS PIPELINE II = 1
                        const int co = co0 + o;
                        if (co < d.cout)
                            write_out(act_wr, d, oy, ox, out_off[co], requant(acc[o], q[co], d.main.lo, d.main.hi));
                    }
                }
                cyc += (uint32_t)nt * n_kt;
            }
        }
    }
}

// ------------------------------------------------------------------------------- DW block
// Stream element: CN_DW_PE channels of one pixel.
struct vec_t {
    act_t v[CN_DW_PE];
};

struct dw_params_t {
    wgt_t w[CFG::max_c][9];
    qparam_t q[CFG::max_c];
};

// Channel groups of a DW block: with a pointwise stage one group of all mid channels (the
// pointwise row is produced for all channels at once); otherwise groups of `gc` channels so
// that a line-buffer row holds width x gc elements.
static inline int dwb_group_channels(const desc_t &d) {
    if (d.flags & CN_FLAG_HAS_PW) return d.cout;
    int gc = (CFG::lb_row_elems / d.in_w) / CFG::dw_pe * CFG::dw_pe;
    if (gc > d.cout) gc = d.cout;
    return gc;
}

// Pointwise output tiles per weight chunk (tiles of PE channels) of a DW block.
static inline int dwb_tiles_per_chunk(const desc_t &d) {
    const int n_ct = ceil_div(d.cout, CFG::pe);
    if (!(d.flags & CN_FLAG_HAS_PW)) return n_ct;
    const int tile_elems = ceil_div(d.cin, CFG::pa) * CFG::pa * CFG::pe;
    int tpc = CFG::wbuf_elems / tile_elems;
    return tpc > n_ct ? n_ct : tpc;
}

// Process 1: produce the block's mid rows (pointwise conv of the input, or the input itself)
// as a stream of DW_PE-channel vectors, plus one offset per pixel (on-chip offset conv of the
// pointwise output, or read from DRAM).  Order per row: weight chunk, pixel, channel tile.
static void dwb_source(const desc_t &d, const uint8_t *wgt, const uint8_t *act_rd, wgt_t wbuf[CFG::wbuf_elems],
                       hls::stream<vec_t> &mid_s, hls::stream<uint8_t> &off_s, uint32_t &cyc) {
    static in_tables_t tab;
    static act_t xrow[CFG::lb_row_elems];
    static qparam_t pwq[CFG::max_c];
    static wgt_t ofw[CFG::max_c];
    static acc_t off_acc[CFG::max_w];
    qparam_t ofq[1];
    const bool has_pw = (d.flags & CN_FLAG_HAS_PW) != 0;
    const bool off_chip = (d.flags & CN_FLAG_OFF_ONCHIP) != 0;
    const bool off_dram = (d.flags & CN_FLAG_OFF_DRAM) != 0;
    const int W = d.in_w, H = d.in_h;
    const int cin = d.cin, cmid = d.cout;
    const int n_ct = ceil_div(cmid, CFG::pe);
    build_in_table(d, tab);

    if (has_pw) {
        const int n_kt = ceil_div(cin, CFG::pa);
        const int tile_elems = n_kt * CFG::pa * CFG::pe;
        const int tpc = dwb_tiles_per_chunk(d);
        const bool one_chunk = tpc >= n_ct;
        load_qparams(wgt, d.pw.q_addr, cmid, pwq);
        if (off_chip) {
            load_qparams(wgt, d.of.q_addr, 1, ofq);
            // offset conv weights: one output channel of a dense 1 x cmid layout ([kt][o][i], o = 0)
        LOAD_OFW:
            for (int c = 0; c < cmid; c++) {
                const uint32_t e = (uint32_t)(c / CFG::pa) * CFG::pa * CFG::pe + (c % CFG::pa);
                ofw[c] = weight_at(wgt, d.of.w_addr, e, d.of.wbits);
            }
        }
        if (one_chunk) load_weights(wgt, d.pw.w_addr, d.pw.wbits, 0, n_ct * tile_elems, wbuf, cyc);
    PW_ROWS:
        for (int r = 0; r < H; r++) {
        PW_GATHER:
            for (int xx = 0; xx < W; xx++) gather_pixel(act_rd, d, tab, r, xx, 0, cin, xrow + xx * cin);
            cyc += (uint32_t)W * n_kt;
            for (int xx = 0; xx < W; xx++) off_acc[xx] = off_chip ? (acc_t)ofq[0].bias : (acc_t)0;
        PW_CHUNKS:
            for (int ct0 = 0; ct0 < n_ct; ct0 += tpc) {
                const int nt = (n_ct - ct0 < tpc) ? n_ct - ct0 : tpc;
                if (!one_chunk)
                    load_weights(wgt, d.pw.w_addr, d.pw.wbits, (uint32_t)ct0 * tile_elems, nt * tile_elems, wbuf,
                                 cyc);
            PW_COLS:
                for (int xx = 0; xx < W; xx++) {
                    // the reduction vector: this pixel's channels, zero beyond cin (tile padding)
                    act_t x[CFG::max_c + CFG::pa];
                    for (int j = 0; j < n_kt * CFG::pa; j++) x[j] = (j < cin) ? xrow[xx * cin + j] : (act_t)0;
                PW_TILES:
                    for (int t = 0; t < nt; t++) {
                        acc_t acc[CFG::pe];
#pragma HLS ARRAY_PARTITION variable = acc complete
                        const int co0 = (ct0 + t) * CFG::pe;
                        for (int o = 0; o < CFG::pe; o++) acc[o] = (co0 + o < cmid) ? (acc_t)pwq[co0 + o].bias : (acc_t)0;
                        mac_array<CFG>(x, wbuf + t * tile_elems, n_kt, acc);
                        vec_t v;
                        acc_t part = 0;
                        for (int o = 0; o < CFG::pe; o++) {
#pragma HLS UNROLL
                            const int c = co0 + o;
                            v.v[o] = (c < cmid) ? requant(acc[o], pwq[c], d.pw.lo, d.pw.hi) : (act_t)0;
                            if (off_chip && c < cmid) part += (acc_t)(ofw[c] * v.v[o]);
                        }
                        off_acc[xx] += part;
                        mid_s.write(v);
                    }
                    cyc += (uint32_t)nt * n_kt;
                }
            }
            if (off_chip) {
            OFF_ROW:
                for (int xx = 0; xx < W; xx++) {
#pragma HLS PIPELINE II = 1
                    off_s.write((uint8_t)(int)requant(off_acc[xx], ofq[0], d.of.lo, d.of.hi));
                }
            }
            if (off_dram) {
                for (int xx = 0; xx < W; xx++) {
#pragma HLS PIPELINE II = 1
                    uint8_t o = act_rd[d.off_addr + ((uint32_t)r * W + xx) * d.off_pix];
                    off_s.write(o > d.max_off ? (uint8_t)d.max_off : o);
                }
            }
        }
    } else {
        const int gc = dwb_group_channels(d);
    GROUPS:
        for (int c0 = 0; c0 < cmid; c0 += gc) {
            const int n = (cmid - c0 < gc) ? cmid - c0 : gc;
        SRC_ROWS:
            for (int r = 0; r < H; r++) {
                for (int xx = 0; xx < W; xx++) {
                    for (int t = 0; t < ceil_div(n, CFG::dw_pe); t++) {
#pragma HLS PIPELINE II = 1
                        vec_t v;
                        const int cc = c0 + t * CFG::dw_pe;
                        const int m = (c0 + n - cc < CFG::dw_pe) ? c0 + n - cc : CFG::dw_pe;
                        for (int l = 0; l < CFG::dw_pe; l++) v.v[l] = 0;
                        gather_pixel(act_rd, d, tab, r, xx, cc, m, v.v);
                        mid_s.write(v);
                    }
                }
                cyc += (uint32_t)W * ceil_div(n, CFG::dw_pe);
                if (off_dram) {
                    for (int xx = 0; xx < W; xx++) {
#pragma HLS PIPELINE II = 1
                        uint8_t o = act_rd[d.off_addr + ((uint32_t)r * W + xx) * d.off_pix];
                        off_s.write(o > d.max_off ? (uint8_t)d.max_off : o);
                    }
                }
            }
        }
    }
}

// Process 2: the dilated depthwise conv.  Mid rows enter a CN_LB_ROWS-row ring as they are
// needed; output pixel (oy, ox) with offset s samples the 3 x 3 window centred at
// (oy*stride - pad + dil, ox*stride - pad + dil) with dilation dil + s (taps outside read 0).
static void dwb_depthwise(const desc_t &d, const dw_params_t &p, act_t lb[CFG::lb_rows][CFG::lb_row_elems],
                          hls::stream<vec_t> &mid_s, hls::stream<uint8_t> &off_s, hls::stream<vec_t> &out_s,
                          uint32_t &cyc) {
    static uint8_t off_ring[CFG::lb_rows][CFG::max_w];
    const bool has_off = (d.flags & (CN_FLAG_OFF_ONCHIP | CN_FLAG_OFF_DRAM)) != 0;
    const int W = d.in_w, H = d.in_h, C = d.cout;
    const int gc = dwb_group_channels(d);
    const int tpc = dwb_tiles_per_chunk(d);
    const int reach = d.dil + (has_off ? d.max_off : 0);

DW_GROUPS:
    for (int c0 = 0; c0 < C; c0 += gc) {
        const int n = (C - c0 < gc) ? C - c0 : gc;
        const int n_t = ceil_div(n, CFG::dw_pe);
        int next_row = 0;
    DW_ROWS:
        for (int oy = 0; oy <= d.out_h; oy++) {
            // rows needed by output row oy (all remaining rows after the last output row)
            int last = H - 1;
            if (oy < d.out_h) {
                const int cy = oy * d.stride - d.pad + d.dil;
                last = cy + reach;
                if (last > H - 1) last = H - 1;
            }
        DW_RECV:
            for (; next_row <= last; next_row++) {
                act_t *row = lb[lb_slot(next_row)];
                for (int ct0 = 0; ct0 < n_t; ct0 += tpc) {
                    const int nt = (n_t - ct0 < tpc) ? n_t - ct0 : tpc;
                    for (int xx = 0; xx < W; xx++) {
                        for (int t = ct0; t < ct0 + nt; t++) {
#pragma HLS PIPELINE II = 1
                            const vec_t v = mid_s.read();
                            for (int l = 0; l < CFG::dw_pe; l++) {
                                const int c = t * CFG::dw_pe + l;
                                if (c < n) row[xx * n + c] = v.v[l];
                            }
                        }
                    }
                }
                if (has_off) {
                    for (int xx = 0; xx < W; xx++) off_ring[lb_slot(next_row)][xx] = off_s.read();
                }
            }
            if (oy == d.out_h) break;
            const int cy = oy * d.stride - d.pad + d.dil;
        DW_COLS:
            for (int ox = 0; ox < d.out_w; ox++) {
                const int cx = ox * d.stride - d.pad + d.dil;
                const int dd = d.dil + (has_off ? (int)off_ring[lb_slot(oy)][ox] : 0);
            DW_TILES:
                for (int t = 0; t < n_t; t++) {
#pragma HLS PIPELINE II = 1
                    vec_t o;
                DW_LANES:
                    for (int l = 0; l < CFG::dw_pe; l++) {
#pragma HLS UNROLL
                        const int c = t * CFG::dw_pe + l;
                        if (c >= n) {
                            o.v[l] = 0;
                            continue;
                        }
                        acc_t acc = (acc_t)p.q[c0 + c].bias;
                    DW_TAPS:
                        for (int tap = 0; tap < 9; tap++) {
                            const int iy = cy + (tap / 3 - 1) * dd;
                            const int ix = cx + (tap % 3 - 1) * dd;
                            if (iy >= 0 && ix >= 0 && iy < H && ix < W)
                                acc += (acc_t)(p.w[c0 + c][tap] * lb[lb_slot(iy)][ix * n + c]);
                        }
                        o.v[l] = requant(acc, p.q[c0 + c], d.main.lo, d.main.hi);
                    }
                    out_s.write(o);
                }
                cyc += (uint32_t)n_t;
            }
        }
    }
}

// Process 3: write DW_PE-channel vectors to DRAM (channel placement + upsample on write).
static void dwb_writer(const desc_t &d, uint8_t *act_wr, hls::stream<vec_t> &out_s) {
    static uint32_t out_off[CFG::max_c];
    const int C = d.cout, gc = dwb_group_channels(d);
    build_out_table(d, !(d.flags & CN_FLAG_HAS_PW), out_off);
WR_GROUPS:
    for (int c0 = 0; c0 < C; c0 += gc) {
        const int n = (C - c0 < gc) ? C - c0 : gc;
        const int n_t = ceil_div(n, CFG::dw_pe);
        for (int oy = 0; oy < d.out_h; oy++) {
            for (int ox = 0; ox < d.out_w; ox++) {
                for (int t = 0; t < n_t; t++) {
#pragma HLS PIPELINE II = 1
                    const vec_t v = out_s.read();
                    for (int l = 0; l < CFG::dw_pe; l++) {
                        const int c = t * CFG::dw_pe + l;
                        if (c < n) write_out(act_wr, d, oy, ox, out_off[c0 + c], v.v[l]);
                    }
                }
            }
        }
    }
}

static void dwb_dataflow(const desc_t &d, const uint8_t *wgt, const uint8_t *act_rd, uint8_t *act_wr,
                         act_t lb[CFG::lb_rows][CFG::lb_row_elems], wgt_t wbuf[CFG::wbuf_elems],
                         const dw_params_t &p, uint32_t &cyc_src, uint32_t &cyc_dw) {
#pragma HLS DATAFLOW
    hls::stream<vec_t> mid_s("mid_s");
    hls::stream<uint8_t> off_s("off_s");
    hls::stream<vec_t> out_s("out_s");
#pragma HLS STREAM variable = mid_s depth = 64
#pragma HLS STREAM variable = off_s depth = 1024
#pragma HLS STREAM variable = out_s depth = 64
    dwb_source(d, wgt, act_rd, wbuf, mid_s, off_s, cyc_src);
    dwb_depthwise(d, p, lb, mid_s, off_s, out_s, cyc_dw);
    dwb_writer(d, act_wr, out_s);
}

static void run_dwblock(const desc_t &d, const uint8_t *wgt, const uint8_t *act_rd, uint8_t *act_wr,
                        act_t lb[CFG::lb_rows][CFG::lb_row_elems], wgt_t wbuf[CFG::wbuf_elems], uint32_t &cyc) {
    static dw_params_t p;
    load_qparams(wgt, d.main.q_addr, d.cout, p.q);
    // depthwise weights: [channel tile][tap][lane]
LOAD_DWW:
    for (int c = 0; c < d.cout; c++) {
        for (int tap = 0; tap < 9; tap++) {
#pragma HLS PIPELINE II = 1
            const uint32_t e = ((uint32_t)(c / CFG::dw_pe) * 9 + tap) * CFG::dw_pe + (c % CFG::dw_pe);
            p.w[c][tap] = weight_at(wgt, d.main.w_addr, e, d.main.wbits);
        }
    }
    cyc += (uint32_t)ceil_div(d.cout * 9 * d.main.wbits, CN_AXI_DATA_BITS);
    uint32_t c_src = 0, c_dw = 0;  // concurrent processes: the slower one sets the pace
    dwb_dataflow(d, wgt, act_rd, act_wr, lb, wbuf, p, c_src, c_dw);
    cyc += c_src > c_dw ? c_src : c_dw;
}

// ------------------------------------------------------------------------------- max pool
// 3 x 3, stride 2, pad 1; padding never wins (out-of-map taps are skipped).
static void run_maxpool(const desc_t &d, const uint8_t *act_rd, uint8_t *act_wr,
                        act_t lb[CFG::lb_rows][CFG::lb_row_elems], in_tables_t &tab, uint32_t out_off[CFG::max_c],
                        uint32_t &cyc) {
    build_in_table(d, tab);
    build_out_table(d, true, out_off);
    const int W = d.in_w, H = d.in_h, C = d.cout;
    const int gc = dwb_group_channels(d);
MP_GROUPS:
    for (int c0 = 0; c0 < C; c0 += gc) {
        const int n = (C - c0 < gc) ? C - c0 : gc;
        int next_row = 0;
    MP_ROWS:
        for (int oy = 0; oy < d.out_h; oy++) {
            const int first = 2 * oy - 1;
            int last = 2 * oy + 1;
            if (last > H - 1) last = H - 1;
            if (next_row < first) next_row = first;
            for (; next_row <= last; next_row++) {
                for (int xx = 0; xx < W; xx++)
                    gather_pixel(act_rd, d, tab, next_row, xx, c0, n, lb[lb_slot(next_row)] + xx * n);
                cyc += (uint32_t)W * ceil_div(n, CFG::dw_pe);
            }
        MP_COLS:
            for (int ox = 0; ox < d.out_w; ox++) {
                for (int c = 0; c < n; c++) {
#pragma HLS PIPELINE II = 1
                    act_t m = lb[lb_slot(2 * oy)][(2 * ox) * n + c];  // the centre is always inside
                    for (int tap = 0; tap < 9; tap++) {
                        const int iy = 2 * oy - 1 + tap / 3, ix = 2 * ox - 1 + tap % 3;
                        if (iy >= 0 && ix >= 0 && iy < H && ix < W) {
                            const act_t v = lb[lb_slot(iy)][ix * n + c];
                            if (v > m) m = v;
                        }
                    }
                    write_out(act_wr, d, oy, ox, out_off[c0 + c], m);
                }
                cyc += (uint32_t)ceil_div(n, CFG::dw_pe);
            }
        }
    }
}

// ------------------------------------------------------------------------------- move
static void run_move(const desc_t &d, const uint8_t *act_rd, uint8_t *act_wr, in_tables_t &tab,
                     uint32_t out_off[CFG::max_c], uint32_t &cyc) {
    build_in_table(d, tab);
    build_out_table(d, true, out_off);
    const uint32_t pix_total = (uint32_t)d.in_h * d.in_w;
MV_PIX:
    for (int y = 0; y < d.in_h; y++) {
        for (int xx = 0; xx < d.in_w; xx++) {
            const uint32_t pix = (uint32_t)y * d.in_w + xx;
        MV_CH:
            for (int j = 0; j < d.cin; j++) {
#pragma HLS PIPELINE II = 1
                write_out(act_wr, d, y, xx, out_off[j], (act_t)act_rd[tab.addr[j] + pix * tab.pix[j]]);
            }
        }
    }
    cyc += pix_total * (uint32_t)ceil_div(d.cin, CN_AXI_DATA_BITS / 8) * ((d.flags & CN_FLAG_UPSAMPLE) ? 4 : 1);
}

}  // namespace codenet

using namespace codenet;

// ------------------------------------------------------------------------------- top
extern "C" void codenet_top(const uint32_t *desc, uint32_t n_layers, const uint8_t *wgt, const uint8_t *act_rd,
                            uint8_t *act_wr, uint32_t *status, uint32_t *cycles) {
#pragma HLS INTERFACE m_axi port = desc bundle = gmem_desc offset = slave depth = 262144 max_read_burst_length = 64
#pragma HLS INTERFACE m_axi port = wgt bundle = gmem_wgt offset = slave depth = 4194304 max_widen_bitwidth = 128
#pragma HLS INTERFACE m_axi port = act_rd bundle = gmem_rd offset = slave depth = 33554432 max_widen_bitwidth = 128
#pragma HLS INTERFACE m_axi port = act_wr bundle = gmem_wr offset = slave depth = 33554432 max_widen_bitwidth = 128
#pragma HLS INTERFACE s_axilite port = desc bundle = control
#pragma HLS INTERFACE s_axilite port = n_layers bundle = control
#pragma HLS INTERFACE s_axilite port = wgt bundle = control
#pragma HLS INTERFACE s_axilite port = act_rd bundle = control
#pragma HLS INTERFACE s_axilite port = act_wr bundle = control
#pragma HLS INTERFACE s_axilite port = status bundle = control
#pragma HLS INTERFACE s_axilite port = cycles bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    static act_t lb[CFG::lb_rows][CFG::lb_row_elems];
    static wgt_t wbuf[CFG::wbuf_elems];
#pragma HLS ARRAY_PARTITION variable = wbuf cyclic factor = 256
#pragma HLS ARRAY_PARTITION variable = lb complete dim = 1
#pragma HLS ARRAY_PARTITION variable = lb cyclic factor = CN_DW_PE dim = 2
    static in_tables_t tab;
    static uint32_t out_off[CFG::max_c];
    static qparam_t q[CFG::max_c];
    uint32_t cyc = 0;
    uint32_t st = CN_STATUS_OK;
    if (n_layers > CN_MAX_LAYERS) {
        *status = CN_STATUS_BAD_COUNT;
        *cycles = 0;
        return;
    }
LAYERS:
    for (uint32_t i = 0; i < n_layers; i++) {
        uint32_t words[CN_DESC_WORDS];
    READ_DESC:
        for (int k = 0; k < CN_DESC_WORDS; k++) {
#pragma HLS PIPELINE II = 1
            words[k] = desc[i * CN_DESC_WORDS + k];
        }
        cyc += CN_DESC_WORDS * 32 / CN_AXI_DATA_BITS;
        desc_t d;
        const int code = decode_desc(words, d);
        if (code != CN_STATUS_OK) {
            st = (uint32_t)code | (i << 16);
            break;
        }
        switch (d.op) {
            case CN_OP_DENSE: run_dense(d, wgt, act_rd, act_wr, lb, wbuf, tab, out_off, q, cyc); break;
            case CN_OP_DWBLOCK: run_dwblock(d, wgt, act_rd, act_wr, lb, wbuf, cyc); break;
            case CN_OP_MAXPOOL: run_maxpool(d, act_rd, act_wr, lb, tab, out_off, cyc); break;
            default: run_move(d, act_rd, act_wr, tab, out_off, cyc); break;
        }
    }
    *status = st;
    *cycles = cyc;
}
