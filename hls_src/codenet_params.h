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
#define CN_DESC_VERSION 2          // bits 15..8 of descriptor word 0; bump on any format change
#define CN_DESC_WORDS 96           // one descriptor = 96 little-endian 32-bit words (384 bytes)
#define CN_MAX_SEGS 16             // input segments per descriptor (words 32..95, 4 words each)
#define CN_MAX_LAYERS 4096         // descriptors per start

// descriptor word indices (see README.md "Descriptor format"); 16-bit pairs are lo | hi << 16.
// Every address is a byte offset into its region, a multiple of CN_WORD_BYTES.
#define CN_D_HEADER 0              // magic << 16 | version << 8 | op
#define CN_D_FLAGS 1               // CN_FLAG_* bits
#define CN_D_IN_HW 2               // in_h | in_w << 16 (input tensor of the descriptor)
#define CN_D_OUT_HW 3              // out_h | out_w << 16 (before the x2 upsample on write)
#define CN_D_CH 4                  // cin | cout << 16 (cin = channels read = sum of segment counts)
#define CN_D_GEOM 5                // k | stride << 4 | pad << 8 | dil << 16 | max_off << 24
#define CN_D_NSEG 6                // number of input segments (1..CN_MAX_SEGS)
#define CN_D_OUT_ADDR 7            // output buffer (act): word (0, 0, 0); it has ceil(cout/16) groups
#define CN_D_OFF_ADDR 8            // OFF_DRAM: buffer holding the offset map (act)
#define CN_D_OFF_CH 9              // OFF_DRAM: channel of the offset map | buffer groups << 16
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
#define CN_D_SEG_WORDS 4           // per segment: buffer address (act), buffer groups,
                                   //              first channel, channel count

// op codes (descriptor word 0, bits 7..0)
#define CN_OP_DENSE 1              // dense k x k conv (k = 1 or 3), groups 1
#define CN_OP_DWBLOCK 2            // fused [1x1 pointwise] -> [offset 1x1 conv] -> 3x3 depthwise
#define CN_OP_MAXPOOL 3            // 3x3 stride-2 pad-1 max pool
#define CN_OP_MOVE 4               // pack segments into a fresh buffer (gather; upsample on write)

// descriptor flags (word 1)
#define CN_FLAG_IN_SIGNED 1        // input activations are s8 (else u8)
#define CN_FLAG_UPSAMPLE 2         // nearest x2 upsample applied on write
#define CN_FLAG_HAS_PW 4           // DWBLOCK: pointwise 1x1 stage present (else DW reads DRAM)
#define CN_FLAG_OFF_ONCHIP 8       // DWBLOCK: per-pixel offsets from the on-chip 1x1 offset conv
#define CN_FLAG_OFF_DRAM 16        // DWBLOCK: per-pixel offsets read from a DRAM tensor (u8)

// ---------------------------------------------------------------- memory layout
// Activations: every buffer is NHWC in 128-bit words of 16 channels ("groups"):
//   word (y, x, g) at byte  base + ((y * W + x) * G + g) * 16,  lane l = channel 16 g + l;
// lanes past the channel count are zero.  A row of a buffer is one contiguous run of W * G words.
#define CN_LANES 16                // channels per word
#define CN_WORD_BYTES 16           // one AXI beat (128 bits)

// ---------------------------------------------------------------- compute parallelism
#define CN_PA 16                   // 1x1 / dense conv: input-channel (reduction) lanes = CN_LANES
#define CN_PE 16                   // 1x1 / dense conv: output-channel lanes (PA x PE MACs/cycle)
#define CN_DW_PE 16                // depthwise: channel lanes = CN_LANES (DW_PE x 9 MACs per output word)

// ---------------------------------------------------------------- square deformable conv
#define CN_MAX_OFFSET 8            // B: largest whole-pixel square offset (dilation 1 + B)
#define CN_LB_ROWS 19              // line-buffer rows = 2 * (MAX_OFFSET + 1) + 1 = 2*B + 3

// ---------------------------------------------------------------- on-chip buffer sizes
#define CN_MAX_W 512               // largest feature-map width (and height) in pixels
#define CN_MAX_C 2048              // largest channel count of any tensor read or written (2.0x conv5)
#define CN_LB_WORDS 512            // depthwise line buffer: words per row (W x groups of one pass)
#define CN_SRC_WORDS 2048          // load: one row of every source buffer of a descriptor (words)
#define CN_IM2COL_WORDS 1024       // load: one packed input row for 3x3 dense convs (words)
#define CN_IM2COL_ROWS 3           // rows kept for 3x3 dense convs (dilation 1)
#define CN_WBUF_BLOCKS 1024        // weight buffer: 1024-bit entries (16 x 16 int4, or 8 x 16 int8)
#define CN_MAX_KT 144              // reduction words per output pixel (9 * cin / 16 for 3x3 dense)
#define CN_MAX_G 128               // channel groups of one tensor = CN_MAX_C / CN_LANES

// ---------------------------------------------------------------- arithmetic widths
#define CN_ACC_BITS 32             // MAC accumulator, bias included (a tiny offset-conv weight scale makes
                                   // the bias large in accumulator units); compiler proves it
#define CN_M_BITS 15               // requant multiplier 1 <= M < 2^15
#define CN_MAX_SHIFT 47            // requant shift 1 <= S <= 47 (64-bit intermediate)
#define CN_QPARAM_BYTES 8          // per output channel: int32 bias, uint32 (M | S << 16)

// ---------------------------------------------------------------- AXI
#define CN_AXI_DATA_BITS 128       // m_axi data width of every port (one word = 16 int8 lanes)
#define CN_AXI_ADDR_BITS 64        // m_axi address width (Zynq UltraScale+: 40 used)
#define CN_AXI_BURST_MAX 256       // beats per AXI4 burst (HLS max_*_burst_length)
#define CN_AXI_OUTSTANDING 16      // outstanding bursts per port (HLS num_*_outstanding)
#define CN_MEM_ALIGN 64            // byte alignment of every buffer the compiler places

// ---------------------------------------------------------------- cycle account (C-sim; see README)
// Pipeline depths charged on every entry of a pipelined loop: estimates until a csynth report
// replaces them (README "Cycle account").  DDR model of the Ultra96-V2 LPDDR4 (2 GB, 32 bit,
// 2133 MT/s = 8.5 GB/s peak): sustained fraction, first-beat latency.
#define CN_DEPTH_AXI 4             // a burst-read / burst-write loop
#define CN_DEPTH_PACK 4            // the segment packer
#define CN_DEPTH_MAC 9             // MAC array: weight read 2 + multiply 3 + adder tree 4
#define CN_DEPTH_REQ 6             // requantisation (32 x 15 multiply, round, shift, clamp)
#define CN_DEPTH_DW 12             // depthwise: line buffer read 2 + multiply 3 + 9-input tree 4 + requant
#define CN_DDR_PEAK_MBPS 8533      // LPDDR4-2133 x 32 bit
#define CN_DDR_EFF_PCT 70          // sustained fraction of the peak for long bursts
#define CN_DDR_LAT_NS 160          // read latency from address to first beat (PS DDR controller + HP port)
#define CN_DII_DW 3                // declared II of the depthwise tap loop (9 reads, 2 copies x 2 ports)

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
#define CN_REG_CYCLES 0x58         // cycles out: counted cycles of the run in C-sim / emulation (0 on hardware)
#define CN_REG_CYCLES_CTRL 0x5C    // bit0 cycles_ap_vld (clear on read); 0x60, 0x64 reserved
#define CN_REG_ADDR_BITS 7         // s_axi_control address width: the map spans 0x00..0x7F

// status codes (low 16 bits of the status register; bits 31..16 = failing layer index)
#define CN_STATUS_OK 0
#define CN_STATUS_BAD_MAGIC 1      // word 0 magic or version mismatch
#define CN_STATUS_BAD_OP 2         // unknown op code or flag combination
#define CN_STATUS_BAD_SIZE 3       // a size beyond the static limits above
#define CN_STATUS_BAD_COUNT 4      // n_layers out of range
#define CN_STATUS_BAD_ADDR 5       // (host emulation only) an access outside a buffer
#define CN_STATUS_BAD_PARAM 6      // (host emulation only) a requantisation M or S out of range

#endif  // CODENET_PARAMS_H_
