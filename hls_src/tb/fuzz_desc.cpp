// fuzz_desc.cpp -- descriptor fuzzer for the emulation library's checker and engine.
//
// Usage: fuzz_desc ITERATIONS SEED VECTOR_DIR [VECTOR_DIR ...]
// Each folder is a C-sim vector folder (codenet_pynq/accel/vectors.py) whose descriptor table,
// weight blob and activation region seed the mutations: random words, bit flips, small and
// boundary values, words copied between descriptors, whole random descriptors with a valid
// header, and damaged requantisation parameters.  Every mutated table goes through
// codenet_run_ports over heap buffers of exactly the region sizes, so a read or write the checker
// did not prove safe is caught by AddressSanitizer; UndefinedBehaviorSanitizer catches shifts and
// overflows.  Built by `make -C hls_src fuzz` with -fsanitize=address,undefined and
// -fno-sanitize-recover, so the first report aborts the run with a non-zero exit.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../codenet_emu.h"
#include "../codenet_params.h"

namespace {

struct Seed {
    std::vector<uint8_t> desc, wgt, act;
    uint32_t n_layers = 0;
};

uint64_t g_rng = 88172645463325252ull;
uint64_t next() {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
uint32_t below(uint32_t n) { return n ? (uint32_t)(next() % n) : 0; }

bool load(const std::string &dir, Seed &s) {
    std::ifstream meta(dir + "/meta.txt");
    std::string line, dram_file;
    uint64_t desc_addr = 0, wgt_addr = 0, act_addr = 0;
    while (std::getline(meta, line)) {
        std::istringstream ls(line);
        std::string key;
        if (!(ls >> key)) continue;
        if (key == "dram") ls >> dram_file;
        else if (key == "desc_addr") ls >> desc_addr;
        else if (key == "n_layers") ls >> s.n_layers;
        else if (key == "wgt_addr") ls >> wgt_addr;
        else if (key == "act_addr") ls >> act_addr;
    }
    std::ifstream f(dir + "/" + dram_file, std::ios::binary);
    std::vector<uint8_t> dram((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (dram.empty() || act_addr > dram.size() || wgt_addr > act_addr) return false;
    s.desc.assign(dram.begin() + desc_addr, dram.begin() + desc_addr + (size_t)s.n_layers * CN_DESC_WORDS * 4);
    s.wgt.assign(dram.begin() + wgt_addr, dram.begin() + act_addr);
    s.act.assign(dram.begin() + act_addr, dram.end());
    s.act.resize(s.act.size() / CN_WORD_BYTES * CN_WORD_BYTES);
    s.wgt.resize(s.wgt.size() / CN_WORD_BYTES * CN_WORD_BYTES);
    return true;
}

uint32_t get(const std::vector<uint8_t> &d, size_t w) {
    uint32_t v;
    std::memcpy(&v, &d[4 * w], 4);
    return v;
}
void put(std::vector<uint8_t> &d, size_t w, uint32_t v) { std::memcpy(&d[4 * w], &v, 4); }

void mutate(std::vector<uint8_t> &desc, std::vector<uint8_t> &wgt, uint32_t n_layers) {
    const size_t words = (size_t)n_layers * CN_DESC_WORDS;
    const int n_mut = 1 + (int)below(4);
    for (int m = 0; m < n_mut; m++) {
        const size_t layer = below(n_layers);
        const size_t w = layer * CN_DESC_WORDS + (below(4) == 0 ? below(CN_DESC_WORDS) : below(40));
        const uint32_t old = get(desc, w);
        switch (below(8)) {
            case 0: put(desc, w, (uint32_t)next()); break;
            case 1: put(desc, w, old ^ (1u << below(32))); break;
            case 2: put(desc, w, below(24)); break;
            case 3: {
                static const uint32_t edge[] = {0, 1, 15, 16, 17, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF};
                put(desc, w, edge[below(sizeof(edge) / sizeof(edge[0]))]);
                break;
            }
            case 4: put(desc, w, (old & 0xFFFF0000u) | below(600)); break;       // lo half
            case 5: put(desc, w, (old & 0xFFFFu) | (below(600) << 16)); break;  // hi half
            case 6: put(desc, w, get(desc, below(n_layers) * CN_DESC_WORDS + w % CN_DESC_WORDS)); break;
            default: {  // a whole random descriptor behind a valid header
                const size_t base = layer * CN_DESC_WORDS;
                for (int k = 1; k < CN_DESC_WORDS; k++) put(desc, base + k, below(3) ? below(300) : (uint32_t)next());
                put(desc, base, (CN_DESC_MAGIC << 16) | (CN_DESC_VERSION << 8) | (1 + below(4)));
            }
        }
        (void)words;
    }
    if (below(6) == 0 && wgt.size() >= 8) {  // damage a requantisation record (M or S out of range)
        const size_t r = below((uint32_t)(wgt.size() / 8)) * 8;
        const uint32_t v = (uint32_t)next();
        std::memcpy(&wgt[r + 4], &v, 4);
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s ITERATIONS SEED VECTOR_DIR [VECTOR_DIR ...]\n", argv[0]);
        return 2;
    }
    const long iters = std::atol(argv[1]);
    g_rng ^= (uint64_t)std::atoll(argv[2]) * 0x9E3779B97F4A7C15ull;
    std::vector<Seed> seeds;
    for (int i = 3; i < argc; i++) {
        Seed s;
        if (!load(argv[i], s) || s.n_layers == 0) {
            std::fprintf(stderr, "%s: not a vector folder\n", argv[i]);
            return 2;
        }
        seeds.push_back(s);
    }
    std::map<uint32_t, long> by_status;
    long ran = 0;
    for (long it = 0; it < iters; it++) {
        const Seed &s = seeds[below((uint32_t)seeds.size())];
        std::vector<uint8_t> desc = s.desc, wgt = s.wgt;
        mutate(desc, wgt, s.n_layers);
        // exact-size heap copies: one byte past a region is outside the allocation
        uint8_t *w = (uint8_t *)std::malloc(wgt.size());
        uint8_t *a = (uint8_t *)std::malloc(s.act.size());
        std::memcpy(w, wgt.data(), wgt.size());
        std::memcpy(a, s.act.data(), s.act.size());
        uint32_t cycles = 0;
        const uint32_t st = codenet_run_ports(desc.data(), desc.size(), s.n_layers, w, wgt.size(), a, s.act.size(),
                                              &cycles, 0, 0);
        by_status[st & 0xFFFF]++;
        if ((st & 0xFFFF) == CN_STATUS_OK) ran++;
        std::free(w);
        std::free(a);
    }
    std::printf("fuzz: %ld mutated descriptor tables, %ld accepted and run;", iters, ran);
    for (const auto &kv : by_status) std::printf(" status %u: %ld;", kv.first, kv.second);
    std::printf(" 0 sanitizer reports\n");
    return 0;
}
