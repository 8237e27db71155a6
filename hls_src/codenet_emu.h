/* codenet_emu.h -- C ABI of the host emulation library (hls_src/build/libcodenet_emu.so).
 *
 * The arguments mirror the accelerator's AXI masters and AXI-Lite registers one to one:
 *   desc      -> m_axi gmem_desc (register CN_REG_DESC),    n_layers -> CN_REG_N_LAYERS
 *   wgt       -> m_axi gmem_wgt  (register CN_REG_WGT)
 *   act       -> m_axi gmem_rd and gmem_wr (registers CN_REG_ACT_RD, CN_REG_ACT_WR: same buffer)
 *   return    -> CN_REG_STATUS,  *cycles -> CN_REG_CYCLES (counted, see README "Cycle account")
 * All multi-byte values in the buffers are little-endian.  Before running, the library proves
 * every descriptor safe against the buffers it was given (codenet_check): static limits,
 * every DRAM extent, every requantisation M and S.  The engine is not re-entrant: calls are
 * serialised by a mutex.
 */
#ifndef CODENET_EMU_H_
#define CODENET_EMU_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CN_DESC_VERSION the library was built with. */
uint32_t codenet_desc_version(void);

/* 1 when built with native C integer types (-DCN_EMU_NATIVE), 0 with ap_int types. */
uint32_t codenet_native_types(void);

/* sizeof(acct_desc_t) (cn_account.h): ctypes checks its mirror of the record against it. */
uint32_t codenet_acct_record_size(void);

/* Decode and prove a descriptor table safe without running it: CN_STATUS_* | layer << 16. */
uint32_t codenet_check(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                       uint64_t wgt_size, uint64_t act_size);

/* Run n_layers descriptors over three separate buffers; returns the status register.
 * records (may be null): receives one acct_desc_t per descriptor (capacity entries). */
uint32_t codenet_run_ports(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers, const uint8_t *wgt,
                           uint64_t wgt_size, uint8_t *act, uint64_t act_size, uint32_t *cycles, void *records,
                           uint32_t capacity);

/* Tests only: codenet_run_ports without the host's M / S proof, so the engine's own parameter
 * check (in the prefetch, one descriptor ahead) decides the status; no account records. */
uint32_t codenet_run_ports_engine_params(const uint8_t *desc, uint64_t desc_size, uint32_t n_layers,
                                         const uint8_t *wgt, uint64_t wgt_size, uint8_t *act, uint64_t act_size,
                                         uint32_t *cycles);

/* Same over one DRAM image; *_addr are byte offsets into it (the register values minus the
 * image's physical base address). */
uint32_t codenet_run(uint8_t *dram, uint64_t dram_size, uint64_t desc_addr, uint32_t n_layers, uint64_t wgt_addr,
                     uint64_t act_addr, uint32_t *cycles);

/* Counted cycles of one account record at a PL clock of f_mhz (the DDR model scales with it). */
double codenet_desc_cycles(const void *record, double f_mhz);

#ifdef __cplusplus
}
#endif

#endif /* CODENET_EMU_H_ */
