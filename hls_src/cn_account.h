// cn_account.h -- the cycle and burst account of a run (C simulation and emulation only).
//
// Every pipelined loop of the engine reports, on each entry, its trip count, its declared II and
// its pipeline depth (CN_ACCT_LOOP); every m_axi access reports its word address (CN_ACCT_AXI) and
// every loop that touches a port closes its open burst on exit (CN_ACCT_AXI_END).  Bursts are
// what Vitis HLS infers from such loops: maximal runs of consecutive words, at most
// CN_AXI_BURST_MAX beats, never across a 4 KB boundary.  The per-descriptor time follows the
// dataflow structure (README.md "Cycle account"):
//   t = t_desc + t_first + max(t_load, t_mac, t_dw, t_store, t_fetch, t_ddr) + t_fill
// where a process that owns a port takes the larger of its loop cycles and the port's time
// under the DDR model (beats, per-burst issue cost under the outstanding-transaction limit,
// first-beat latency per loop entry), t_fetch is the prefetch process (cn_fetch: this
// descriptor's weight chunks 1.. and the next descriptor's parameters and chunk 0) on the weight
// bundle, t_mac / t_dw include the tail loops that pop what the prefetch has not delivered
// during their loops, t_first is the serial load of the first descriptor's parameters and
// chunk 0 (zero for every other descriptor), and t_ddr is the descriptor's bytes at the DDR's
// sustained bandwidth.  Under __SYNTHESIS__ every macro is empty.
#ifndef CN_ACCOUNT_H_
#define CN_ACCOUNT_H_

#include <stdint.h>

#include "codenet_params.h"

namespace codenet {

// PROC_WGT: the serial load of the first descriptor's parameters and MAC chunk 0 (the prefetch
// region before descriptor 0); PROC_FETCH: the prefetch process (cn_fetch) inside each region
enum acct_proc_t { PROC_DESC = 0, PROC_WGT, PROC_LOAD, PROC_MAC, PROC_DW, PROC_STORE, PROC_FETCH, PROC_COUNT };
// PORT_PAR: the first descriptor's serial parameter / chunk-0 load; PORT_WGT: the prefetch traffic
// of cn_fetch during the regions (both on the weight m_axi bundle, accounted apart because the
// first is serial and the second concurrent with the stages)
enum acct_port_t { PORT_DESC = 0, PORT_PAR, PORT_WGT, PORT_RD, PORT_WR, PORT_COUNT };

// Per-descriptor record (plain C layout: the emulation library exports an array of these).
struct acct_desc_t {
    uint64_t loop_cycles[PROC_COUNT];  // sum over loop entries of trip * II + depth
    uint64_t beats[PORT_COUNT];        // 128-bit beats
    uint64_t bursts[PORT_COUNT];       // inferred bursts
    uint64_t issue[PORT_COUNT];        // sum over bursts of max(length, issue floor) (beats)
    uint64_t entries[PORT_COUNT];      // loop entries that touched the port (one latency each)
    uint64_t fill_rows;                // rows the DW stage needs before its first output (0: none)
    uint64_t rows;                     // rows the DW / store stage produces (fill granularity)
    uint64_t macs;                     // multiply-accumulates done by the MAC array and DW unit
    uint64_t tail_words;               // prefetched words popped by tail loops (not hidden by the stages)
};

#ifndef __SYNTHESIS__
struct acct_port_state_t {
    uint64_t next;  // word address that would continue the open burst
    uint32_t run;   // beats in the open burst (0: none open)
};

struct account_t {
    acct_desc_t *cur;  // record of the descriptor being run (null: not recording)
    acct_port_state_t port[PORT_COUNT];
};

extern account_t g_acct;

static inline uint64_t acct_issue_floor() {
#pragma HLS INLINE
    // a short burst still occupies the port for latency / outstanding cycles (at 250 MHz)
    const uint64_t lat = (uint64_t)CN_DDR_LAT_NS * 250 / 1000;
    return (lat + CN_AXI_OUTSTANDING - 1) / CN_AXI_OUTSTANDING;
}

static inline void acct_close(int port) {
#pragma HLS INLINE
    acct_port_state_t &s = g_acct.port[port];
    if (g_acct.cur && s.run) {
        const uint64_t fl = acct_issue_floor();
        g_acct.cur->bursts[port] += 1;
        g_acct.cur->issue[port] += s.run > fl ? s.run : fl;
    }
    s.run = 0;
}

static inline void acct_axi(int port, uint64_t word) {
#pragma HLS INLINE
    if (!g_acct.cur) return;
    acct_port_state_t &s = g_acct.port[port];
    const bool cont = s.run && word == s.next && s.run < CN_AXI_BURST_MAX && (word * CN_WORD_BYTES) % 4096 != 0;
    if (!cont) acct_close(port);
    s.run += 1;
    s.next = word + 1;
    g_acct.cur->beats[port] += 1;
}

static inline void acct_axi_end(int port) {
#pragma HLS INLINE
    if (!g_acct.cur) return;
    if (g_acct.port[port].run) g_acct.cur->entries[port] += 1;
    acct_close(port);
}

static inline void acct_loop(int proc, uint64_t trip, int ii, int depth) {
#pragma HLS INLINE
    if (g_acct.cur && trip) g_acct.cur->loop_cycles[proc] += trip * (uint64_t)ii + (uint64_t)depth;
}

#define CN_ACCT_LOOP(proc, trip, ii, depth) ::codenet::acct_loop((proc), (uint64_t)(trip), (ii), (depth))
#define CN_ACCT_AXI(port, word) ::codenet::acct_axi((port), (uint64_t)(word))
#define CN_ACCT_AXI_END(port) ::codenet::acct_axi_end((port))
#define CN_ACCT_SET(field, value) \
    do {                          \
        if (::codenet::g_acct.cur) ::codenet::g_acct.cur->field = (value); \
    } while (0)
#define CN_ACCT_ADD(field, value) \
    do {                          \
        if (::codenet::g_acct.cur) ::codenet::g_acct.cur->field += (value); \
    } while (0)
#else
#define CN_ACCT_LOOP(proc, trip, ii, depth)
#define CN_ACCT_AXI(port, word)
#define CN_ACCT_AXI_END(port)
#define CN_ACCT_SET(field, value)
#define CN_ACCT_ADD(field, value)
#endif

// Cycles of one descriptor at a PL clock of f_mhz under the DDR model (see the file comment).
static inline double acct_port_time(const acct_desc_t &a, int q, double lat) {
    return (double)a.issue[q] + lat * (double)a.entries[q];
}

#ifndef __SYNTHESIS__
// The prefetch region before descriptor 0 (recorded in `pre`) is serial: fold it into descriptor
// 0's record as its parameter load (PROC_WGT: the longest of the region's concurrent processes;
// PORT_PAR: the region's traffic on the weight bundle).
static inline void acct_fold_first(acct_desc_t &rec, const acct_desc_t &pre) {
    uint64_t t = 0;
    for (int i = 0; i < PROC_COUNT; i++)
        if (pre.loop_cycles[i] > t) t = pre.loop_cycles[i];
    rec.loop_cycles[PROC_WGT] += t;
    rec.beats[PORT_PAR] += pre.beats[PORT_WGT];
    rec.bursts[PORT_PAR] += pre.bursts[PORT_WGT];
    rec.issue[PORT_PAR] += pre.issue[PORT_WGT];
    rec.entries[PORT_PAR] += pre.entries[PORT_WGT];
}
#endif

static inline double acct_desc_cycles(const acct_desc_t &a, double f_mhz) {
    const double lat = (double)CN_DDR_LAT_NS * f_mhz / 1000.0;  // first-beat latency in cycles
    const double bytes_per_cycle = (double)CN_DDR_PEAK_MBPS * CN_DDR_EFF_PCT / 100.0 / f_mhz;
    const double t_desc = (double)a.loop_cycles[PROC_DESC] + lat * (double)a.entries[PORT_DESC];
    // serial: the first descriptor's parameters and chunk 0 (zero in every other record)
    double t_first = (double)a.loop_cycles[PROC_WGT];
    if (acct_port_time(a, PORT_PAR, 0) > t_first) t_first = acct_port_time(a, PORT_PAR, 0);
    t_first += lat * (double)a.entries[PORT_PAR];
    // concurrent: the prefetch of this descriptor's chunks 1.. and the next descriptor's parameters
    // and chunk 0 on the weight bundle; the stages' loop cycles include their un-hidden tail fills
    double t_fetch = (double)a.loop_cycles[PROC_FETCH];
    if (acct_port_time(a, PORT_WGT, lat) > t_fetch) t_fetch = acct_port_time(a, PORT_WGT, lat);
    double t_load = (double)a.loop_cycles[PROC_LOAD];
    if (acct_port_time(a, PORT_RD, lat) > t_load) t_load = acct_port_time(a, PORT_RD, lat);
    double t_store = (double)a.loop_cycles[PROC_STORE];
    if (acct_port_time(a, PORT_WR, lat) > t_store) t_store = acct_port_time(a, PORT_WR, lat);
    const double t_ddr =
        (double)(a.beats[PORT_RD] + a.beats[PORT_WR] + a.beats[PORT_WGT]) * CN_WORD_BYTES / bytes_per_cycle;
    double t = t_load;
    const double others[5] = {(double)a.loop_cycles[PROC_MAC], (double)a.loop_cycles[PROC_DW], t_store, t_fetch, t_ddr};
    for (int i = 0; i < 5; i++)
        if (others[i] > t) t = others[i];
    // fill: the depthwise stage waits for fill_rows input rows, made at the pace of the slowest stage
    const double fill = a.rows ? t * (double)a.fill_rows / (double)a.rows : 0.0;
    return t_desc + t_first + t + fill;
}

}  // namespace codenet

#endif  // CN_ACCOUNT_H_
