// codenet_params.h -- THE hardware parameters of the CoDeNet accelerator.
//
// One header, read by three consumers:
//   * the HLS engine (codenet_engine.h/.cpp) and its testbench,
//   * the host emulation library (codenet_emu.cpp),
//   * Python: codenet_pynq/accel/params.py parses every `#define CN_<NAME> <integer>` line below
//     (decimal or hex integer literals only, optionally in parentheses; no expressions), so no
//     number is written twice.
// Change a parameter here, rebuild (`make -C hls_src lib csim`), and the compiler, the tests and
// the emulator follow.  Keep every value a plain integer literal.
#ifndef CODENET_PARAMS_H_
#define CODENET_PARAMS_H_

// ---------------------------------------------------------------- descriptor format
#define CN_DESC_MAGIC 0xC0DE       // bits 31..16 of descriptor word 0
#define CN_DESC_VERSION 1          // bits 15..8 of descriptor word 0; bump on any format change
#define CN_DESC_WORDS 96           // one descriptor = 96 little-endian 32-bit words (384 bytes)
#define CN_MAX_SEGS 16             // input segments per descriptor (words 32..95, 4 words each)
#define CN_MAX_LAYERS 4096         // descriptors per start

// descriptor word indices (see README.md "Descriptor format"); 16-bit pairs are lo | hi << 16
#define CN_D_HEADER 0              // magic << 16 | version << 8 | op
#define CN_D_FLAGS 1               // CN_FLAG_* bits
#define CN_D_IN_HW 2               // in_h | in_w << 16 (input tensor of the descriptor)
#define CN_D_OUT_HW 3              // out_h | out_w << 16 (before the x2 upsample on write)
#define CN_D_CH 4                  // cin | cout << 16 (cin = channels read = sum of segments)
#define CN_D_GEOM 5                // k | stride << 4 | pad << 8 | dil << 16 | max_off << 24
#define CN_D_NSEG 6                // number of input segments (1..CN_MAX_SEGS)
#define CN_D_OUT_ADDR 7            // output: byte address of pixel (0,0), first channel (act)
#define CN_D_OUT_PIX 8             // output: bytes per pixel of the output buffer
#define CN_D_OUT_CH 9              // output: byte step per output channel (dense / PW outputs)
#define CN_D_OFF_ADDR 10           // OFF_DRAM: offsets tensor address of pixel (0,0) (act)
#define CN_D_OFF_PIX 11            // OFF_DRAM: bytes per pixel of the offsets buffer
#define CN_D_W_ADDR 12             // main stage (dense conv or depthwise): weights (wgt)
#define CN_D_Q_ADDR 13             // main stage: per-channel bias/M/S table (wgt)
#define CN_D_CLAMP 14              // main stage: lo (int16) | hi (int16) << 16
#define CN_D_WBITS 15              // main stage: weight bits, 4 or 8
#define CN_D_PW_W_ADDR 16          // DWBLOCK pointwise stage: weights
#define CN_D_PW_Q_ADDR 17          // DWBLOCK pointwise stage: bias/M/S
#define CN_D_PW_CLAMP 18           // DWBLOCK pointwise stage: lo | hi << 16
#define CN_D_PW_WBITS 19           // DWBLOCK pointwise stage: weight bits
#define CN_D_OF_W_ADDR 20          // DWBLOCK offset conv: weights
#define CN_D_OF_Q_ADDR 21          // DWBLOCK offset conv: bias/M/S (one channel)
#define CN_D_OF_CLAMP 22           // DWBLOCK offset conv: lo | hi << 16 (within 0..MAX_OFFSET)
#define CN_D_OF_WBITS 23           // DWBLOCK offset conv: weight bits
#define CN_D_SEG_BASE 32           // first segment word
#define CN_D_SEG_WORDS 4           // per segment: addr, pix_stride, count | ch_stride << 16,
                                   //              out_off | out_stride << 16

// op codes (descriptor word 0, bits 7..0)
#define CN_OP_DENSE 1              // dense k x k conv (k = 1 or 3), groups 1
#define CN_OP_DWBLOCK 2            // fused [1x1 pointwise] -> [offset 1x1 conv] -> 3x3 depthwise
#define CN_OP_MAXPOOL 3            // 3x3 stride-2 pad-1 max pool
#define CN_OP_MOVE 4               // gather / scatter copy (channel slice/concat/shuffle, upsample)

// descriptor flags (word 1)
#define CN_FLAG_IN_SIGNED 1        // input activations are s8 (else u8)
#define CN_FLAG_UPSAMPLE 2         // nearest x2 upsample applied on write
#define CN_FLAG_HAS_PW 4           // DWBLOCK: pointwise 1x1 stage present (else DW reads DRAM)
#define CN_FLAG_OFF_ONCHIP 8       // DWBLOCK: per-pixel offsets from the on-chip 1x1 offset conv
#define CN_FLAG_OFF_DRAM 16        // DWBLOCK: per-pixel offsets read from a DRAM tensor (u8)

// ---------------------------------------------------------------- compute parallelism
#define CN_PA 16                   // 1x1 / dense conv: input-channel (reduction) lanes
#define CN_PE 16                   // 1x1 / dense conv: output-channel lanes (PA x PE MACs/cycle)
#define CN_DW_PE 16                // depthwise: channel lanes (DW_PE x 9 MACs/cycle)

// ---------------------------------------------------------------- square deformable conv
#define CN_MAX_OFFSET 8            // B: largest whole-pixel square offset (dilation 1 + B)
#define CN_LB_ROWS 19              // line-buffer rows = 2 * (MAX_OFFSET + 1) + 1 = 2*B + 3

// ---------------------------------------------------------------- on-chip buffer sizes
#define CN_MAX_W 512               // largest feature-map width (and height) in pixels
#define CN_MAX_C 2048              // largest channel count of any tensor read or written (2.0x conv5)
#define CN_LB_ROW_ELEMS 16384      // one line-buffer row: width x channels elements (9 bit)
#define CN_WBUF_ELEMS 262144       // on-chip weight buffer (elements) for the PA x PE array

// ---------------------------------------------------------------- arithmetic widths
#define CN_ACC_BITS 32             // MAC accumulator, initialised with the bias (a tiny offset-conv weight
                                   // scale makes the bias large in accumulator units); compiler proves it
#define CN_M_BITS 15               // requant multiplier M < 2^15
#define CN_MAX_SHIFT 47            // requant shift 1 <= S <= 47 (64-bit intermediate)
#define CN_QPARAM_BYTES 8          // per output channel: int32 bias, uint32 (M | S << 16)

// ---------------------------------------------------------------- AXI
#define CN_AXI_DATA_BITS 128       // HP port data width (m_axi max_widen_bitwidth)
#define CN_AXI_ADDR_BITS 64        // m_axi address width (Zynq UltraScale+: 40 used)
#define CN_AXI_BURST_MAX 64        // beats per burst
#define CN_MEM_ALIGN 64            // byte alignment of every buffer the compiler places

// ---------------------------------------------------------------- AXI-Lite register map
// Offsets of the s_axilite "control" bundle exactly as Vitis HLS 2020.2+ lays them out for
// codenet_top(desc, n_layers, wgt, act_rd, act_wr, status, cycles) with 64-bit m_axi addresses:
// registers from 0x10 in argument order; a 32-bit input scalar takes 8 bytes (data, reserved), a
// 64-bit pointer (offset=slave) 12 bytes (lo, hi, reserved), an output scalar with ap_vld 16 bytes
// (data, ctrl with bit0 = ap_vld clear-on-read, 2 reserved).  Sources and the rule checked against
// generated headers: overlays/README.md "Register map".  The driver refuses an overlay whose .hwh
// register map differs from these (codenet_pynq/registers.py); the emulated IP uses them as is.
#define CN_REG_AP_CTRL 0x00        // bit0 ap_start, bit1 ap_done (COR), bit2 ap_idle, bit3 ap_ready (COR)
#define CN_REG_GIE 0x04            // global interrupt enable (hwh name GIER)
#define CN_REG_IER 0x08            // interrupt enable, bit0 done, bit1 ready (IP_IER)
#define CN_REG_ISR 0x0C            // interrupt status, toggle on write (IP_ISR)
#define CN_REG_DESC 0x10           // desc address: lo 0x10 (desc_1), hi 0x14 (desc_2), 0x18 reserved
#define CN_REG_N_LAYERS 0x1C       // n_layers (0x20 reserved)
#define CN_REG_WGT 0x24            // wgt address: lo 0x24, hi 0x28, 0x2C reserved
#define CN_REG_ACT_RD 0x30         // act_rd address: lo 0x30, hi 0x34, 0x38 reserved
#define CN_REG_ACT_WR 0x3C         // act_wr address: lo 0x3C, hi 0x40, 0x44 reserved (same buffer as act_rd)
#define CN_REG_STATUS 0x48         // status out: 0 ok, else error code | (layer << 16)
#define CN_REG_STATUS_CTRL 0x4C    // bit0 status_ap_vld (clear on read); 0x50, 0x54 reserved
#define CN_REG_CYCLES 0x58         // cycles out: modelled cycle count of the run (low 32 bits)
#define CN_REG_CYCLES_CTRL 0x5C    // bit0 cycles_ap_vld (clear on read); 0x60, 0x64 reserved
#define CN_REG_ADDR_BITS 7         // s_axi_control address width: the map spans 0x00..0x7F

// status codes (low 16 bits of the status register; bits 31..16 = failing layer index)
#define CN_STATUS_OK 0
#define CN_STATUS_BAD_MAGIC 1      // word 0 magic or version mismatch
#define CN_STATUS_BAD_OP 2         // unknown op code or flag combination
#define CN_STATUS_BAD_SIZE 3       // a size beyond the static limits above
#define CN_STATUS_BAD_COUNT 4      // n_layers out of range
#define CN_STATUS_BAD_ADDR 5       // (host emulation only) an access outside a buffer

#endif  // CODENET_PARAMS_H_
