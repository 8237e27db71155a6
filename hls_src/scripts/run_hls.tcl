# run_hls.tcl -- Vitis HLS flow for the CoDeNet accelerator (Vitis HLS 2022.2 or newer).
#
#   cd hls_src && vitis_hls -f scripts/run_hls.tcl        (or: make -C hls_src hls)
#
# Creates the project codenet_hls/ (solution "ultra96v2"), adds the engine and the C-simulation
# testbench, targets the Ultra96-V2 part (xczu3eg-sbva484-1-e) at 250 MHz, runs C synthesis and
# exports the IP catalog zip (codenet_hls/ultra96v2/impl/ip/*.zip) that overlays/ultra96v2 uses.
# Environment overrides: CODENET_PART, CODENET_CLOCK_NS, CODENET_CSIM_VECTORS (a vector folder:
# when set, C simulation runs first against it), CODENET_COSIM=1 (RTL co-simulation too).

set here [file dirname [file normalize [info script]]]
set src  [file normalize [file join $here ..]]
cd $src

set part     xczu3eg-sbva484-1-e
set clock_ns 4.0
if {[info exists ::env(CODENET_PART)]}     { set part $::env(CODENET_PART) }
if {[info exists ::env(CODENET_CLOCK_NS)]} { set clock_ns $::env(CODENET_CLOCK_NS) }

open_project -reset codenet_hls
set_top codenet_top
add_files codenet_engine.cpp -cflags "-I$src -std=c++14"
add_files -tb tb/tb_codenet.cpp -cflags "-I$src -std=c++14"
add_files -tb codenet_emu.cpp -cflags "-I$src -std=c++14"

open_solution -reset ultra96v2 -flow_target vivado
set_part $part
create_clock -period $clock_ns -name default
config_interface -m_axi_addr64=true -m_axi_alignment_byte_size 64 -m_axi_max_widen_bitwidth 128
config_compile -pipeline_loops 64

if {[info exists ::env(CODENET_CSIM_VECTORS)]} {
    csim_design -argv $::env(CODENET_CSIM_VECTORS)
}
csynth_design
if {[info exists ::env(CODENET_COSIM)] && [info exists ::env(CODENET_CSIM_VECTORS)]} {
    cosim_design -argv $::env(CODENET_CSIM_VECTORS)
}
export_design -format ip_catalog -vendor codenet -library hls -version 1.0 \
    -description "CoDeNet W4A8 accelerator: one start per frame from a layer descriptor table"
exit
