// codenet_engine.h -- CoDeNet accelerator: types, descriptor, checker, top function.
//
// The engine runs an integer layer program (codenet_pynq/program.py, compiled by
// codenet_pynq/accel/compile.py) from a table of layer descriptors in DRAM, one start per frame.
// Each descriptor runs as one DATAFLOW region of four processes joined by streams:
//
//   cn_load (cn_load.h)   burst-reads input rows (128-bit words, 16 channels each) from every
//                         source buffer, packs the descriptor's channel segments into dense
//                         words, builds 3x3 im2col vectors  ->  in_s
//   cn_mac  (cn_mac.h)    the one PA x PE MAC array: dense 1x1 / 3x3 convs and the pointwise
//                         stage of a fused block, requantisation, on-chip offset conv  ->  mid_s, off_s
//   cn_dw   (cn_dw.h)     line buffer + dilated 3x3 depthwise (per-pixel square offsets) or
//                         3x3/2 max pool, requantisation  ->  out_s
//   cn_store (cn_store.h) collects an output row and burst-writes it (x2 upsample on write)
//
// Arithmetic follows codenet_pynq/intmath.py exactly (cn_requant.h).  Builds:
//   * Vitis HLS synthesis and C simulation: ap_int / hls_stream types (default);
//   * host emulation library with -DCN_EMU_NATIVE: the same source with native C integer types of
//     at least the same widths; the compiler refuses any layer whose accumulator needs more than
//     CN_ACC_BITS bits, so the two agree (the tests run both on the same vectors).
// Outside synthesis the processes also keep the cycle account (cn_account.h).
#ifndef CODENET_ENGINE_H_
#define CODENET_ENGINE_H_

#include <stdint.h>

#include "codenet_params.h"
#include "hls_stream.h"

#ifdef CN_EMU_NATIVE
typedef int16_t act_t;   // decoded activation, u8 or s8 (9 bits in hardware)
typedef int8_t wgt_t;    // weight, int4 or int8
typedef int32_t acc_t;   // MAC accumulator, bias included (CN_ACC_BITS in hardware)
typedef int64_t wide_t;  // requantisation intermediate
// one 128-bit AXI word: 16 int8 lanes, little endian (lane l = byte l)
struct word_t {
    uint8_t b[CN_LANES];
};
static inline uint8_t lane_get(const word_t &w, int l) { return w.b[l]; }
static inline void lane_set(word_t &w, int l, uint8_t v) { w.b[l] = v; }
static inline word_t word_zero() {
    word_t w;
    for (int l = 0; l < CN_LANES; l++) w.b[l] = 0;
    return w;
}
#else
#include "ap_int.h"
typedef ap_int<9> act_t;
typedef ap_int<8> wgt_t;
typedef ap_int<CN_ACC_BITS> acc_t;
typedef ap_int<64> wide_t;
typedef ap_uint<CN_AXI_DATA_BITS> word_t;
static inline uint8_t lane_get(const word_t &w, int l) {
#pragma HLS INLINE
    return (uint8_t)w.range(8 * l + 7, 8 * l);
}
static inline void lane_set(word_t &w, int l, uint8_t v) {
#pragma HLS INLINE
    w.range(8 * l + 7, 8 * l) = v;
}
static inline word_t word_zero() {
#pragma HLS INLINE
    return word_t(0);
}
#endif

// Internal op of the region that runs before the first descriptor: no work, only the prefetch of
// the first descriptor's parameters and MAC weight chunk 0 (decode_desc refuses op 0 in a table).
#define CN_OP_PREFETCH 0

namespace codenet {

// Per output channel requantisation parameters (bias in accumulator units, M, S).
struct qparam_t {
    int32_t bias;
    uint16_t m;
    uint8_t s;
};

// One conv stage of a descriptor (main, pointwise or offset).
struct stage_t {
    uint32_t w_addr;  // weights, byte offset from the weight base
    uint32_t q_addr;  // bias/M/S table, byte offset from the weight base
    int16_t lo, hi;   // output clamp
    uint8_t wbits;    // 4 or 8
};

// One input segment: channels [ch0, ch0 + count) of a buffer of `groups` 16-channel groups
// whose word (0, 0, 0) is at byte `addr` of the activation region; segments are read in order
// and packed densely (the descriptor's input channel j = the j-th channel of the segment list).
struct seg_t {
    uint32_t addr;
    uint16_t groups;
    uint16_t ch0, count;
};

// A decoded layer descriptor (field meanings: README.md "Descriptor format").
struct desc_t {
    uint8_t op;
    uint32_t flags;
    uint16_t in_h, in_w, out_h, out_w;
    uint16_t cin, cout;
    uint8_t k, stride, pad, dil, max_off;
    uint8_t nseg;
    uint32_t out_addr;
    uint32_t off_addr;
    uint16_t off_ch, off_groups;
    stage_t main, pw, of;
    seg_t seg[CN_MAX_SEGS];
};

// Derived loop bounds of a descriptor (computed once by plan_desc; every process reads them).
struct plan_t {
    int n_in;       // packed input words per input pixel: ceil(cin / 16)
    int n_kt;       // reduction words per output pixel of the MAC array (k*k*cin / 16, rounded up)
    int n_mid;      // groups of the MAC / DW stage's channels: ceil(cout / 16)
    int chunk_g;    // output groups per weight chunk (MAC array)
    int n_chunks;   // weight chunks (MAC array); 1 for ops without it
    int pass_g;     // channel groups per depthwise / max-pool pass
    int n_passes;   // passes over the image (>1 only without a MAC stage)
    int mac_h, mac_w;  // pixels the MAC stage (or bypass) produces per pass: the DW stage's input
    int n_src;      // distinct source buffers
    uint32_t src_addr[CN_MAX_SEGS];  // per distinct source buffer: base address
    uint16_t src_groups[CN_MAX_SEGS];
    uint16_t src_off[CN_MAX_SEGS];   // its row's first word in the load row store
    uint8_t seg_src[CN_MAX_SEGS];    // segment -> distinct source
    int src_row_words;               // sum of W * groups over the distinct sources
    int reach;      // depthwise: largest tap distance from the centre row (dil + max offset)
};

// Decode one descriptor and check it against the engine's static limits (every on-chip index
// in range).  Returns a CN_STATUS_* code; on CN_STATUS_OK `d` and `p` are filled.
int decode_desc(const uint32_t words[CN_DESC_WORDS], desc_t &d, plan_t &p);

// Byte extents a checked descriptor touches (for the host-side address proof):
// one past the last byte read or written in the activation and weight regions.
struct extent_t {
    uint64_t act_end;
    uint64_t wgt_end;
};
extent_t desc_extent(const desc_t &d, const plan_t &p);

}  // namespace codenet

// The HLS top function: one start per frame.
//   desc      descriptor table, n_layers x CN_DESC_WORDS little-endian 32-bit words
//   n_layers  descriptors to run, in order
//   wgt       weight region (packed weights + bias/M/S tables), 128-bit words
//   act_rd    activation region (input image, intermediates, outputs), read port, 128-bit words
//   act_wr    the same activation region, write port (the driver writes the same address)
//   status    CN_STATUS_* | failing layer << 16
//   cycles    counted cycles of the run (C simulation / emulation; 0 from synthesised hardware,
//             where the driver measures wall time)
extern "C" void codenet_top(const uint32_t *desc, uint32_t n_layers, const word_t *wgt, const word_t *act_rd,
                            word_t *act_wr, uint32_t *status, uint32_t *cycles);

#endif  // CODENET_ENGINE_H_
