// cn_store.h -- process 4: collect one output row on chip, then burst-write it (twice, each pixel
// twice, with the nearest x2 upsample on write).  When a descriptor writes all groups of its
// output buffer (one weight chunk / one pass), a row is one run of consecutive words.
#ifndef CN_STORE_H_
#define CN_STORE_H_

#include "cn_account.h"
#include "cn_load.h"
#include "codenet_engine.h"

namespace codenet {

static void cn_store(const desc_t &d, const plan_t &p, word_t *act, hls::stream<word_t> &out_s) {
    static word_t orow[CN_LB_WORDS];
    const bool up = (d.flags & CN_FLAG_UPSAMPLE) != 0;
    const int G = p.n_mid;
    const int ow = up ? 2 * d.out_w : d.out_w;
    const uint32_t base = d.out_addr / CN_WORD_BYTES;
    const int reps = n_reps(p);
ST_REPS:
    for (int r = 0; r < reps; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 8
        const int gw = rep_groups(p, r);
        const int g0 = r * (p.n_chunks > 1 ? p.chunk_g : p.pass_g);
    ST_ROWS:
        for (int oy = 0; oy < d.out_h; oy++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 256
            const int n = d.out_w * gw;
        ST_COLLECT:
            for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 512
                orow[i] = out_s.read();
            }
            CN_ACCT_LOOP(PROC_STORE, n, 1, 2);
        ST_COPIES:
            for (int rr = 0; rr < (up ? 2 : 1); rr++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2
                const int y = up ? 2 * oy + rr : oy;
                const uint32_t row = base + (uint32_t)y * ow * G;
                if (gw == G) {  // the whole row is one run of words
                    const int m = ow * G;
                    int x = 0, g = 0;
                ST_WRITE:
                    for (int i = 0; i < m; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 16 max = 2048
                        act[row + i] = orow[(up ? x / 2 : x) * gw + g];
                        CN_ACCT_AXI(PORT_WR, row + i);
                        if (++g == G) {
                            g = 0;
                            x++;
                        }
                    }
                    CN_ACCT_AXI_END(PORT_WR);
                    CN_ACCT_LOOP(PROC_STORE, m, 1, CN_DEPTH_AXI);
                } else {  // a chunk / pass of groups: one run per pixel
                ST_PIXELS:
                    for (int x = 0; x < ow; x++) {
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 512
                        const uint32_t a = row + (uint32_t)x * G + g0;
                        const int src = (up ? x / 2 : x) * gw;
                    ST_WRITE_PX:
                        for (int g = 0; g < gw; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 64
                            act[a + g] = orow[src + g];
                            CN_ACCT_AXI(PORT_WR, a + g);
                        }
                        CN_ACCT_AXI_END(PORT_WR);
                        CN_ACCT_LOOP(PROC_STORE, gw, 1, CN_DEPTH_AXI);
                    }
                }
            }
        }
    }
}

}  // namespace codenet

#endif  // CN_STORE_H_
