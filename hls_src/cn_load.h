// cn_load.h -- process 1: burst-read input rows, pack channel segments, build im2col vectors.
//
// DRAM is read only by loops over one buffer row (W * groups consecutive words), so every read
// is a burst.  The descriptor's input channels (a list of channel ranges of one or more buffers:
// slices, concats and channel shuffles of earlier outputs) are packed densely into 16-lane words
// on chip by a funnel packer that takes at most one source word and emits at most one word per
// cycle.  Dense 3x3 convs keep three packed rows and stream each output pixel's 9 x cin
// reduction vector, packed densely across taps.
#ifndef CN_LOAD_H_
#define CN_LOAD_H_

#include "cn_account.h"
#include "codenet_engine.h"

namespace codenet {

// One step of the packer: `n` lanes starting at lane `lo` of one source word; `last` ends a pixel
// (the packer flushes its partial word); a step with n == 0 only flushes.
struct piece_t {
    uint8_t src;   // distinct source buffer (LOAD) / tap (im2col)
    uint8_t g;     // group within the source pixel (LOAD) / packed word of the tap (im2col)
    uint8_t lo, n;
    bool last;
};

#define CN_MAX_PIECES (CN_MAX_G + 2 * CN_MAX_SEGS + 2)
#define CN_MAX_IM2COL_PIECES (CN_MAX_KT + 2)

// Funnel packer: 32 lanes of state; append up to 16 lanes, emit one full (or final) word.
struct packer_t {
    uint8_t acc[2 * CN_LANES];
    int fill;
};

static inline void packer_reset(packer_t &pk) {
#pragma HLS INLINE
    pk.fill = 0;
    for (int l = 0; l < 2 * CN_LANES; l++) pk.acc[l] = 0;
}

// Append lanes [lo, lo + n) of w; returns true and sets `out` when a word is complete (or the
// pixel ends with a partial word).
static inline bool packer_step(packer_t &pk, const word_t &w, int lo, int n, bool last, word_t &out) {
#pragma HLS INLINE
    for (int l = 0; l < CN_LANES; l++) {
#pragma HLS UNROLL
        if (l < n) pk.acc[pk.fill + l] = lane_get(w, lo + l);
    }
    pk.fill += n;
    if (pk.fill >= CN_LANES || (last && pk.fill > 0)) {
        out = word_zero();
        for (int l = 0; l < CN_LANES; l++) {
#pragma HLS UNROLL
            if (l < pk.fill) lane_set(out, l, pk.acc[l]);
        }
        const int rest = pk.fill > CN_LANES ? pk.fill - CN_LANES : 0;
        for (int l = 0; l < CN_LANES; l++) {
#pragma HLS UNROLL
            pk.acc[l] = l < rest ? pk.acc[CN_LANES + l] : (uint8_t)0;
            pk.acc[CN_LANES + l] = 0;
        }
        pk.fill = rest;
        return true;
    }
    return false;
}

// Split a list of lane counts into packer pieces; adds a flush-only piece when the pixel's last
// piece would have to emit twice.  Returns the number of pieces.
static int finish_pieces(piece_t *pieces, int np) {
    int fill = 0;
FINISH:
    for (int i = 0; i < CN_MAX_PIECES; i++) {
        if (i >= np) break;
        fill += pieces[i].n;
        const bool full = fill >= CN_LANES;
        if (full) fill -= CN_LANES;
        if (pieces[i].last && full && fill > 0) {
            pieces[i].last = false;
            pieces[np].src = 0;
            pieces[np].g = 0;
            pieces[np].lo = 0;
            pieces[np].n = 0;
            pieces[np].last = true;
            return np + 1;
        }
        if (pieces[i].last) fill = 0;
    }
    return np;
}

// Pieces of one input pixel: the segments' channel ranges, word by word.
static int segment_pieces(const desc_t &d, const plan_t &p, piece_t pieces[CN_MAX_PIECES]) {
    int np = 0;
SEG_PIECES:
    for (int s = 0; s < CN_MAX_SEGS; s++) {
        if (s >= d.nseg) break;
        int c = d.seg[s].ch0;
        const int end = d.seg[s].ch0 + d.seg[s].count;
    SEG_WORDS:
        for (int k = 0; k < CN_MAX_G + 1; k++) {
            if (c >= end) break;
            const int lo = c % CN_LANES;
            const int n = (CN_LANES - lo < end - c) ? CN_LANES - lo : end - c;
            pieces[np].src = p.seg_src[s];
            pieces[np].g = (uint8_t)(c / CN_LANES);
            pieces[np].lo = (uint8_t)lo;
            pieces[np].n = (uint8_t)n;
            pieces[np].last = false;
            np++;
            c += n;
        }
    }
    pieces[np - 1].last = true;
    return finish_pieces(pieces, np);
}

// Burst-read input row r of every distinct source buffer into the row store.
static void read_src_rows(const desc_t &d, const plan_t &p, const word_t *act, int r,
                          word_t srcrow[CN_SRC_WORDS]) {
SRC_BUFS:
    for (int s = 0; s < CN_MAX_SEGS; s++) {
        if (s >= p.n_src) break;
        const int n = (int)d.in_w * p.src_groups[s];
        const uint32_t base = p.src_addr[s] / CN_WORD_BYTES + (uint32_t)r * n;
        const int off = p.src_off[s];
    SRC_READ:
        for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 2048
            srcrow[off + i] = act[base + i];
            CN_ACCT_AXI(PORT_RD, base + i);
        }
        CN_ACCT_AXI_END(PORT_RD);
        CN_ACCT_LOOP(PROC_LOAD, n, 1, CN_DEPTH_AXI);
    }
}

// Pack the pixels x0, x0 + step, ... (n_px of them) of the row store; pixel words
// [w0, w0 + nw) go to `out` (all of them when nw == n_in), others are dropped.
static void pack_row(const plan_t &p, const piece_t pieces[CN_MAX_PIECES], int np, const word_t srcrow[CN_SRC_WORDS],
                     int x0, int n_px, int step, int w0, int nw, hls::stream<word_t> &out, word_t *ring) {
    packer_t pk;
    packer_reset(pk);
    int x = 0, j = 0, k = 0;
    const int trip = n_px * np;
PACK:
    for (int it = 0; it < trip; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 8192
        const piece_t &pc = pieces[j];
        const int xs = x0 + x * step;
        const word_t w = srcrow[p.src_off[pc.src] + xs * p.src_groups[pc.src] + pc.g];
        word_t o;
        if (packer_step(pk, w, pc.lo, pc.n, pc.last, o)) {
            if (ring) ring[x * p.n_in + k] = o;
            else if (k >= w0 && k < w0 + nw) out.write(o);
            k++;
        }
        if (++j == np) {
            j = 0;
            k = 0;
            x++;
        }
    }
    CN_ACCT_LOOP(PROC_LOAD, trip, 1, CN_DEPTH_PACK);
}

// DRAM offset map (OFF_DRAM): one byte per pixel of input row r, clamped to max_off.
static void read_off_row(const desc_t &d, const word_t *act, int r, uint8_t offrow[CN_MAX_W]) {
    const int g = d.off_ch / CN_LANES, l = d.off_ch % CN_LANES;
    const uint32_t base = d.off_addr / CN_WORD_BYTES + (uint32_t)r * d.in_w * d.off_groups + g;
OFF_READ:
    for (int x = 0; x < d.in_w; x++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 512
        const uint8_t o = lane_get(act[base + (uint32_t)x * d.off_groups], l);
        CN_ACCT_AXI(PORT_RD, base + (uint32_t)x * d.off_groups);
        offrow[x] = o > d.max_off ? d.max_off : o;
    }
    CN_ACCT_AXI_END(PORT_RD);
    CN_ACCT_LOOP(PROC_LOAD, d.in_w, 1, CN_DEPTH_AXI);
}

// im2col of one output row of a dense 3x3 conv (dilation 1) from the packed-row ring.
static void im2col_row(const desc_t &d, const plan_t &p, const word_t ring[CN_IM2COL_ROWS * CN_IM2COL_WORDS], int oy,
                       hls::stream<word_t> &in_s) {
    static piece_t pieces[CN_MAX_IM2COL_PIECES];
    int np = 0;
IM2COL_TAPS:
    for (int t = 0; t < 9; t++) {
    IM2COL_WORDS_T:
        for (int w = 0; w < CN_MAX_KT / 9; w++) {
            if (w >= p.n_in) break;
            const int rest = d.cin - CN_LANES * w;
            pieces[np].src = (uint8_t)t;
            pieces[np].g = (uint8_t)w;
            pieces[np].lo = 0;
            pieces[np].n = (uint8_t)(rest < CN_LANES ? rest : CN_LANES);
            pieces[np].last = false;
            np++;
        }
    }
    pieces[np - 1].last = true;
    np = finish_pieces(pieces, np);
    packer_t pk;
    packer_reset(pk);
    int ox = 0, j = 0;
    const int trip = d.out_w * np;
IM2COL:
    for (int it = 0; it < trip; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 8192
        const piece_t &pc = pieces[j];
        const int iy = oy * d.stride - d.pad + pc.src / 3;
        const int ix = ox * d.stride - d.pad + pc.src % 3;
        const bool in = pc.n > 0 && iy >= 0 && ix >= 0 && iy < d.in_h && ix < d.in_w;
        const word_t w = in ? ring[(iy % CN_IM2COL_ROWS) * CN_IM2COL_WORDS + ix * p.n_in + pc.g] : word_zero();
        word_t o;
        if (packer_step(pk, w, pc.lo, pc.n, pc.last, o)) in_s.write(o);
        if (++j == np) {
            j = 0;
            ox++;
        }
    }
    CN_ACCT_LOOP(PROC_LOAD, trip, 1, CN_DEPTH_PACK);
}

// Number of groups of rep r (weight chunk or channel pass) of a plan.
static inline int rep_groups(const plan_t &p, int r) {
    const int per = p.n_chunks > 1 ? p.chunk_g : p.pass_g;
    const int left = p.n_mid - r * per;
    return left < per ? left : per;
}

static inline int n_reps(const plan_t &p) { return p.n_chunks > 1 ? p.n_chunks : p.n_passes; }

// The LOAD process.
static void cn_load(const desc_t &d, const plan_t &p, const word_t *act, hls::stream<word_t> &in_s,
                    hls::stream<uint8_t> &offd_s) {
    static word_t srcrow[CN_SRC_WORDS];
    static word_t ring[CN_IM2COL_ROWS * CN_IM2COL_WORDS];
    static piece_t pieces[CN_MAX_PIECES];
    static uint8_t offrow[CN_MAX_W];
    if (d.op == CN_OP_PREFETCH) return;  // the first descriptor's parameter prefetch: nothing to read
    const int np = segment_pieces(d, p, pieces);
    const bool off_dram = (d.flags & CN_FLAG_OFF_DRAM) != 0;
    const int reps = n_reps(p);
LOAD_REPS:
    for (int r = 0; r < reps; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
        if (d.op == CN_OP_DENSE && d.k == 3) {
            int next = 0;  // next input row to pack into the ring
        LOAD_ROWS3:
            for (int oy = 0; oy < d.out_h; oy++) {
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 128
                int last = oy * d.stride - d.pad + 2;
                if (last > d.in_h - 1) last = d.in_h - 1;
            RING_FILL:
                for (; next <= last; next++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 4
                    read_src_rows(d, p, act, next, srcrow);
                    pack_row(p, pieces, np, srcrow, 0, d.in_w, 1, 0, p.n_in, in_s,
                             ring + (next % CN_IM2COL_ROWS) * CN_IM2COL_WORDS);
                }
                im2col_row(d, p, ring, oy, in_s);
            }
        } else if (d.op == CN_OP_DENSE) {
        LOAD_ROWS1:
            for (int oy = 0; oy < d.out_h; oy++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 256
                read_src_rows(d, p, act, oy * d.stride, srcrow);
                pack_row(p, pieces, np, srcrow, 0, d.out_w, d.stride, 0, p.n_in, in_s, 0);
            }
        } else {
            const int w0 = (d.flags & CN_FLAG_HAS_PW) ? 0 : r * p.pass_g;
            const int nw = (d.flags & CN_FLAG_HAS_PW) ? p.n_in : rep_groups(p, r);
        LOAD_ROWS:
            for (int y = 0; y < d.in_h; y++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 256
                read_src_rows(d, p, act, y, srcrow);
                if (off_dram) {
                    read_off_row(d, act, y, offrow);
                    // pixel words then its offset, interleaved as the depthwise stage reads them
                OFF_PIXELS:
                    for (int x = 0; x < d.in_w; x++) {
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 512
                        pack_row(p, pieces, np, srcrow, x, 1, 1, w0, nw, in_s, 0);
                        offd_s.write(offrow[x]);
                    }
                } else {
                    pack_row(p, pieces, np, srcrow, 0, d.in_w, 1, w0, nw, in_s, 0);
                }
            }
        }
    }
}

}  // namespace codenet

#endif  // CN_LOAD_H_
