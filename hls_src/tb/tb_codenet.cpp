// tb_codenet.cpp -- C-simulation testbench of the CoDeNet engine.
//
// Usage: tb_codenet [--separate-ports] VECTOR_DIR [VECTOR_DIR ...]
// Each folder is written by codenet_pynq/accel/vectors.py:
//   meta.txt       "key value" lines:
//                    codenet_vectors 1
//                    desc_version V            (must equal CN_DESC_VERSION)
//                    dram FILE                 the DRAM image (descriptors, weights, activations
//                                              with the input image already placed)
//                    desc_addr A / n_layers N / wgt_addr A / act_addr A
//                    check NAME H W C SIGNED EXPECT_FILE CHANMAP_FILE   (one per tensor)
//   EXPECT_FILE    H*W*C bytes, NHWC, the golden tensor (two's complement for s8)
//   CHANMAP_FILE   C pairs of little-endian int64 (addr, pix_stride): element (y, x, c) lives at
//                  act_addr + addr[c] + (y * W + x) * pix_stride[c] of the DRAM image.
// The testbench runs codenet_top through the emulation ABI (the same call the library makes),
// compares every element of every checked tensor, prints the first mismatches of each and
// exits 1 on any mismatch or error, 0 when all folders match exactly.
// --separate-ports: the co-simulation form (scripts/run_hls.tcl -cosim).  codenet_top is called
// directly, one start per descriptor, with separate act_rd / act_wr arrays of the declared m_axi
// depths (RTL co-simulation gives every m_axi port its own memory); after each start the testbench
// copies act_wr back into act_rd, which is what the shared DRAM buffer does on the board.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../codenet_emu.h"
#include "../codenet_engine.h"
#include "../codenet_params.h"

namespace {

bool g_separate_ports = false;

// declared m_axi depths of codenet_top (words of the port's width)
const size_t DEPTH_DESC = 393216, DEPTH_WGT = 262144, DEPTH_ACT = 2097152;

void bytes_to_words(const uint8_t *p, size_t n_bytes, std::vector<word_t> &w) {
    for (size_t i = 0; i * CN_WORD_BYTES < n_bytes && i < w.size(); i++)
        for (int l = 0; l < CN_LANES; l++) {
            const size_t b = i * CN_WORD_BYTES + l;
            lane_set(w[i], l, b < n_bytes ? p[b] : 0);
        }
}

// One start per descriptor over separate read / write buffers (the co-simulation form).
uint32_t run_separate(std::vector<uint8_t> &dram, uint64_t desc_addr, uint32_t n_layers, uint64_t wgt_addr,
                      uint64_t act_addr, uint32_t *cycles) {
    const size_t act_bytes = dram.size() - act_addr, wgt_bytes = act_addr - wgt_addr;
    if (act_bytes > DEPTH_ACT * CN_WORD_BYTES || wgt_bytes > DEPTH_WGT * CN_WORD_BYTES ||
        (size_t)n_layers * CN_DESC_WORDS > DEPTH_DESC)
        return CN_STATUS_BAD_SIZE;
    std::vector<uint32_t> desc(DEPTH_DESC, 0);
    for (size_t k = 0; k < (size_t)n_layers * CN_DESC_WORDS; k++) {
        const uint8_t *q = &dram[desc_addr + 4 * k];
        desc[k] = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
    }
    std::vector<word_t> wgt(DEPTH_WGT), rd(DEPTH_ACT), wr(DEPTH_ACT);
    bytes_to_words(&dram[wgt_addr], wgt_bytes, wgt);
    bytes_to_words(&dram[act_addr], act_bytes, rd);
    wr = rd;
    uint32_t total = 0;
    for (uint32_t i = 0; i < n_layers; i++) {
        uint32_t status = 0, cyc = 0;
        codenet_top(&desc[(size_t)i * CN_DESC_WORDS], 1, wgt.data(), rd.data(), wr.data(), &status, &cyc);
        if (status != CN_STATUS_OK) return (status & 0xFFFF) | (i << 16);
        total += cyc;
        rd = wr;  // the board's act_rd and act_wr are one DRAM buffer
    }
    for (size_t i = 0; i * CN_WORD_BYTES < act_bytes; i++)
        for (int l = 0; l < CN_LANES; l++) dram[act_addr + i * CN_WORD_BYTES + l] = lane_get(rd[i], l);
    *cycles = total;
    return CN_STATUS_OK;
}

bool read_file(const std::string &path, std::vector<uint8_t> &out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    f.seekg(0, std::ios::end);
    const std::streamoff n = f.tellg();
    f.seekg(0, std::ios::beg);
    out.resize((size_t)n);
    if (n > 0) f.read(reinterpret_cast<char *>(out.data()), n);
    return (bool)f;
}

int64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return (int64_t)v;
}

struct Check {
    std::string name, expect, chanmap;
    int h = 0, w = 0, c = 0, sgn = 0;
};

// Returns the number of mismatching elements (or -1 on a setup error).
long run_folder(const std::string &dir) {
    std::ifstream meta(dir + "/meta.txt");
    if (!meta) {
        std::fprintf(stderr, "%s: cannot open meta.txt\n", dir.c_str());
        return -1;
    }
    std::string line, dram_file;
    uint64_t desc_addr = 0, wgt_addr = 0, act_addr = 0;
    uint32_t n_layers = 0, version = 0;
    std::vector<Check> checks;
    while (std::getline(meta, line)) {
        std::istringstream ls(line);
        std::string key;
        if (!(ls >> key) || key[0] == '#') continue;
        if (key == "dram") ls >> dram_file;
        else if (key == "desc_addr") ls >> desc_addr;
        else if (key == "n_layers") ls >> n_layers;
        else if (key == "wgt_addr") ls >> wgt_addr;
        else if (key == "act_addr") ls >> act_addr;
        else if (key == "desc_version") ls >> version;
        else if (key == "check") {
            Check c;
            ls >> c.name >> c.h >> c.w >> c.c >> c.sgn >> c.expect >> c.chanmap;
            checks.push_back(c);
        }
    }
    if (version != CN_DESC_VERSION) {
        std::fprintf(stderr, "%s: vectors use descriptor version %u, engine has %d: regenerate them\n", dir.c_str(),
                     version, CN_DESC_VERSION);
        return -1;
    }
    std::vector<uint8_t> dram;
    if (!read_file(dir + "/" + dram_file, dram)) {
        std::fprintf(stderr, "%s: cannot read %s\n", dir.c_str(), dram_file.c_str());
        return -1;
    }
    uint32_t cycles = 0;
    const uint32_t status = g_separate_ports ? run_separate(dram, desc_addr, n_layers, wgt_addr, act_addr, &cycles)
                                             : codenet_run(dram.data(), dram.size(), desc_addr, n_layers, wgt_addr,
                                                           act_addr, &cycles);
    if (status != CN_STATUS_OK) {
        std::fprintf(stderr, "%s: engine status %u at layer %u\n", dir.c_str(), status & 0xFFFF, status >> 16);
        return -1;
    }
    long total_bad = 0;
    for (const Check &ck : checks) {
        std::vector<uint8_t> exp, map;
        if (!read_file(dir + "/" + ck.expect, exp) || !read_file(dir + "/" + ck.chanmap, map) ||
            exp.size() != (size_t)ck.h * ck.w * ck.c || map.size() != (size_t)ck.c * 16) {
            std::fprintf(stderr, "%s: bad expectation files for %s\n", dir.c_str(), ck.name.c_str());
            return -1;
        }
        long bad = 0;
        for (int c = 0; c < ck.c; c++) {
            const int64_t base = le64(&map[16 * c]), pix = le64(&map[16 * c + 8]);
            for (int y = 0; y < ck.h; y++) {
                for (int x = 0; x < ck.w; x++) {
                    const uint64_t a = act_addr + base + ((int64_t)y * ck.w + x) * pix;
                    const uint8_t got = a < dram.size() ? dram[a] : 0;
                    const uint8_t want = exp[((size_t)y * ck.w + x) * ck.c + c];
                    if (got != want) {
                        if (bad < 8) {
                            const int g = ck.sgn ? (int)(int8_t)got : (int)got;
                            const int e = ck.sgn ? (int)(int8_t)want : (int)want;
                            std::printf("  MISMATCH %s[y=%d, x=%d, c=%d]: engine %d, golden %d\n", ck.name.c_str(),
                                        y, x, c, g, e);
                        }
                        bad++;
                    }
                }
            }
        }
        std::printf("%s: %-28s %4dx%-4dx%-5d %ld mismatches\n", dir.c_str(), ck.name.c_str(), ck.h, ck.w, ck.c, bad);
        total_bad += bad;
    }
    std::printf("%s: %u layers, %zu tensors checked, counted cycles %u, %s\n", dir.c_str(), n_layers,
                checks.size(), cycles, total_bad ? "FAIL" : "PASS");
    return total_bad;
}

}  // namespace

int main(int argc, char **argv) {
    int first = 1;
    if (argc > 1 && std::strcmp(argv[1], "--separate-ports") == 0) {
        g_separate_ports = true;
        first = 2;
    }
    if (argc <= first) {
        std::fprintf(stderr, "usage: %s [--separate-ports] VECTOR_DIR [VECTOR_DIR ...]\n", argv[0]);
        return 2;
    }
    long bad = 0;
    int errors = 0;
    for (int i = first; i < argc; i++) {
        const long r = run_folder(argv[i]);
        if (r < 0) errors++;
        else bad += r;
    }
    std::printf("csim: %d folder(s), %ld mismatches, %d errors\n", argc - first, bad, errors);
    return (bad || errors) ? 1 : 0;
}
