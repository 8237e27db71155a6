// codenet_engine.h -- CoDeNet accelerator: types, configuration, descriptor, top function.
//
// The engine runs an integer layer program (codenet_pynq/program.py, compiled by
// codenet_pynq/accel/compile.py) from a table of layer descriptors in DRAM, with one start per
// frame.  Arithmetic follows codenet_pynq/intmath.py exactly (see requant() below).
//
// Builds:
//   * Vitis HLS synthesis and C simulation: ap_int / hls_stream types (default);
//   * host emulation library with -DCN_EMU_NATIVE: the same source with native C integer types
//     of at least the same widths (faster on a CPU).  The two are equal because the compiler
//     refuses any layer whose accumulator bound needs more than CN_ACC_BITS bits; the test-suite
//     runs both builds on the same vectors.
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
#else
#include "ap_int.h"
typedef ap_int<9> act_t;
typedef ap_int<8> wgt_t;
typedef ap_int<CN_ACC_BITS> acc_t;
typedef ap_int<64> wide_t;
#endif

namespace codenet {

// Hardware configuration, hls4ml-style: every kernel is a template over one of these.
struct engine_config {
    static const int pa = CN_PA;                      // reduction lanes of the MAC array
    static const int pe = CN_PE;                      // output-channel lanes of the MAC array
    static const int dw_pe = CN_DW_PE;                // depthwise channel lanes
    static const int lb_rows = CN_LB_ROWS;            // line-buffer rows
    static const int lb_row_elems = CN_LB_ROW_ELEMS;  // line-buffer row: width x channels
    static const int wbuf_elems = CN_WBUF_ELEMS;      // weight buffer elements
    static const int max_w = CN_MAX_W;
    static const int max_c = CN_MAX_C;
    static const int max_k = 9 * CN_MAX_C;            // dense 3x3 reduction length
    static const int max_offset = CN_MAX_OFFSET;
    static const int max_segs = CN_MAX_SEGS;
};

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

// One input segment: `count` channels of one buffer, read as
//   act[addr + (y * in_w + x) * pix_stride + k * ch_stride],  k = 0 .. count-1,
// and (per-channel ops) written to output channel byte offset out_off + k * out_stride.
struct seg_t {
    uint32_t addr;
    uint32_t pix_stride;
    uint16_t count, ch_stride;
    uint16_t out_off, out_stride;
};

// A decoded layer descriptor (field meanings: README.md "Descriptor format").
struct desc_t {
    uint8_t op;
    uint32_t flags;
    uint16_t in_h, in_w, out_h, out_w;
    uint16_t cin, cout;
    uint8_t k, stride, pad, dil, max_off;
    uint8_t nseg;
    uint32_t out_addr, out_pix, out_ch;
    uint32_t off_addr, off_pix;
    stage_t main, pw, of;
    seg_t seg[CN_MAX_SEGS];
};

// Decode and check one descriptor against the static limits; returns a CN_STATUS_* code.
int decode_desc(const uint32_t words[CN_DESC_WORDS], desc_t &d);

}  // namespace codenet

// The HLS top function: one start per frame.
//   desc      descriptor table, n_layers x CN_DESC_WORDS little-endian 32-bit words
//   n_layers  descriptors to run, in order
//   wgt       weight region (packed weights + bias/M/S tables); descriptors address it by offset
//   act_rd    activation region (input image, intermediates, outputs), read port
//   act_wr    the same activation region, write port (the driver writes the same address)
//   status    CN_STATUS_* | failing layer << 16
//   cycles    modelled cycle count (pipelined-loop trip counts, II = 1; see README)
extern "C" void codenet_top(const uint32_t *desc, uint32_t n_layers, const uint8_t *wgt,
                            const uint8_t *act_rd, uint8_t *act_wr, uint32_t *status,
                            uint32_t *cycles);

#endif  // CODENET_ENGINE_H_
