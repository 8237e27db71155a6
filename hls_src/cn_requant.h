// cn_requant.h -- the integer contract's requantisation and the weight / parameter decoders.
#ifndef CN_REQUANT_H_
#define CN_REQUANT_H_

#include "codenet_engine.h"

namespace codenet {

// intmath.requantize: acc already holds acc + bias;
//   y = clamp((acc * M + (1 << (S - 1))) >> S, lo, hi)   in 64 bits, arithmetic shift.
// S is in [1, CN_MAX_SHIFT] (checked when the parameters are loaded).
static inline act_t requant(acc_t acc, const qparam_t &q, int16_t lo, int16_t hi) {
#pragma HLS INLINE
    wide_t t = (wide_t)acc * (wide_t)q.m;
    t += ((wide_t)1) << (q.s - 1);
    t = t >> q.s;
    if (t < (wide_t)lo) return (act_t)lo;
    if (t > (wide_t)hi) return (act_t)hi;
    return (act_t)t;
}

static inline act_t decode_act(uint8_t b, bool sgn) {
#pragma HLS INLINE
    return sgn ? (act_t)(int8_t)b : (act_t)b;
}

static inline wgt_t sext4(uint8_t nib) {
#pragma HLS INLINE
    return (wgt_t)((nib & 8) ? (int)nib - 16 : (int)nib);
}

// Weight element e (0..) of a packed record held in 128-bit words: int4 two per byte, low
// nibble first; int8 one per byte.
static inline wgt_t packed_weight(const word_t *rec, int e, int wbits) {
#pragma HLS INLINE
    if (wbits == 8) return (wgt_t)(int8_t)lane_get(rec[e >> 4], e & 15);
    const uint8_t b = lane_get(rec[e >> 5], (e >> 1) & 15);
    return sext4((e & 1) ? (uint8_t)(b >> 4) : (uint8_t)(b & 15));
}

static inline uint32_t word_u32(const word_t &w, int k) {
#pragma HLS INLINE
    return (uint32_t)lane_get(w, 4 * k) | ((uint32_t)lane_get(w, 4 * k + 1) << 8) |
           ((uint32_t)lane_get(w, 4 * k + 2) << 16) | ((uint32_t)lane_get(w, 4 * k + 3) << 24);
}

// Decode the (bias, M | S << 16) pair k (0 or 1) of a qparam word; false when M or S is out of range.
static inline bool decode_qparam(const word_t &w, int k, qparam_t &q) {
#pragma HLS INLINE
    q.bias = (int32_t)word_u32(w, 2 * k);
    const uint32_t ms = word_u32(w, 2 * k + 1);
    const uint32_t m = ms & 0xFFFF, s = (ms >> 16) & 0xFFFF;
    q.m = (uint16_t)m;
    q.s = (uint8_t)(s & 0xFF);
    return m < (1u << CN_M_BITS) && s >= 1 && s <= CN_MAX_SHIFT;
}

}  // namespace codenet

#endif  // CN_REQUANT_H_
