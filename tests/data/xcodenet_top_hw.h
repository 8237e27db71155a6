// Test fixture: the register part of the driver header Vitis HLS 2020.2+ writes for the CoDeNet IP
// (impl/misc/drivers/codenet_top_v1_0/src/xcodenet_top_hw.h), written by hand in the generated
// format for codenet_top(desc, n_layers, wgt, act_rd, act_wr, status, cycles) with 64-bit m_axi
// addresses, from the layout rule in overlays/README.md ("Register map").
// control
// 0x00 : Control signals
//        bit 0  - ap_start (Read/Write/COH)
//        bit 1  - ap_done (Read/COR)
//        bit 2  - ap_idle (Read)
//        bit 3  - ap_ready (Read/COR)
//        bit 7  - auto_restart (Read/Write)
//        bit 9  - interrupt (Read)
//        others - reserved
// 0x04 : Global Interrupt Enable Register
//        bit 0  - Global Interrupt Enable (Read/Write)
//        others - reserved
// 0x08 : IP Interrupt Enable Register (Read/Write)
//        bit 0 - enable ap_done interrupt (Read/Write)
//        bit 1 - enable ap_ready interrupt (Read/Write)
//        others - reserved
// 0x0c : IP Interrupt Status Register (Read/TOW)
//        bit 0 - ap_done (Read/TOW)
//        bit 1 - ap_ready (Read/TOW)
//        others - reserved
// 0x10 : Data signal of desc
//        bit 31~0 - desc[31:0] (Read/Write)
// 0x14 : Data signal of desc
//        bit 31~0 - desc[63:32] (Read/Write)
// 0x18 : reserved
// 0x1c : Data signal of n_layers
//        bit 31~0 - n_layers[31:0] (Read/Write)
// 0x20 : reserved
// 0x24 : Data signal of wgt
//        bit 31~0 - wgt[31:0] (Read/Write)
// 0x28 : Data signal of wgt
//        bit 31~0 - wgt[63:32] (Read/Write)
// 0x2c : reserved
// 0x30 : Data signal of act_rd
//        bit 31~0 - act_rd[31:0] (Read/Write)
// 0x34 : Data signal of act_rd
//        bit 31~0 - act_rd[63:32] (Read/Write)
// 0x38 : reserved
// 0x3c : Data signal of act_wr
//        bit 31~0 - act_wr[31:0] (Read/Write)
// 0x40 : Data signal of act_wr
//        bit 31~0 - act_wr[63:32] (Read/Write)
// 0x44 : reserved
// 0x48 : Data signal of status
//        bit 31~0 - status[31:0] (Read)
// 0x4c : Control signal of status
//        bit 0  - status_ap_vld (Read/COR)
//        others - reserved
// 0x58 : Data signal of cycles
//        bit 31~0 - cycles[31:0] (Read)
// 0x5c : Control signal of cycles
//        bit 0  - cycles_ap_vld (Read/COR)
//        others - reserved
// (SC = Self Clear, COR = Clear on Read, TOW = Toggle on Write, COH = Clear on Handshake)

#define XCODENET_TOP_CONTROL_ADDR_AP_CTRL       0x00
#define XCODENET_TOP_CONTROL_ADDR_GIE           0x04
#define XCODENET_TOP_CONTROL_ADDR_IER           0x08
#define XCODENET_TOP_CONTROL_ADDR_ISR           0x0c
#define XCODENET_TOP_CONTROL_ADDR_DESC_DATA     0x10
#define XCODENET_TOP_CONTROL_BITS_DESC_DATA     64
#define XCODENET_TOP_CONTROL_ADDR_N_LAYERS_DATA 0x1c
#define XCODENET_TOP_CONTROL_BITS_N_LAYERS_DATA 32
#define XCODENET_TOP_CONTROL_ADDR_WGT_DATA      0x24
#define XCODENET_TOP_CONTROL_BITS_WGT_DATA      64
#define XCODENET_TOP_CONTROL_ADDR_ACT_RD_DATA   0x30
#define XCODENET_TOP_CONTROL_BITS_ACT_RD_DATA   64
#define XCODENET_TOP_CONTROL_ADDR_ACT_WR_DATA   0x3c
#define XCODENET_TOP_CONTROL_BITS_ACT_WR_DATA   64
#define XCODENET_TOP_CONTROL_ADDR_STATUS_DATA   0x48
#define XCODENET_TOP_CONTROL_BITS_STATUS_DATA   32
#define XCODENET_TOP_CONTROL_ADDR_STATUS_CTRL   0x4c
#define XCODENET_TOP_CONTROL_ADDR_CYCLES_DATA   0x58
#define XCODENET_TOP_CONTROL_BITS_CYCLES_DATA   32
#define XCODENET_TOP_CONTROL_ADDR_CYCLES_CTRL   0x5c
