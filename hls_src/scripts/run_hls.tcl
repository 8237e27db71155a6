# run_hls.tcl -- Vitis HLS flow for the CoDeNet accelerator (Vitis HLS 2022.2 or newer).
#
#   cd hls_src && vitis_hls -f scripts/run_hls.tcl        (or: make -C hls_src hls)
#
# Creates the project codenet_hls/ (solution "ultra96v2"), adds the engine and the C-simulation
# testbench, targets the Ultra96-V2 part (xczu3eg-sbva484-1-i, the part of the Avnet board files)
# at 250 MHz, runs C synthesis, checks its report (estimated clock, resources against the part),
# exports the IP catalog zip (codenet_hls/ultra96v2/impl/ip/*.zip) that overlays/ultra96v2 uses and
# checks the generated register map (xcodenet_top_hw.h) against CN_REG_* of codenet_params.h.
#
# Environment:
#   CODENET_PART, CODENET_CLOCK_NS     override part and clock period
#   CODENET_CSIM_VECTORS=<folder>      run C simulation inside Vitis first, on that vector folder
#   CODENET_COSIM=1                    also run RTL co-simulation on CODENET_CSIM_VECTORS (required
#                                      then); the testbench must meet hls_src/README.md "Co-simulation"
#   CODENET_COSIM_TRACE=all            keep waveforms (default none: much faster)
#   CODENET_NO_EXPORT=1                stop after synthesis (and co-simulation)

set here [file dirname [file normalize [info script]]]
set src  [file normalize [file join $here ..]]
cd $src

set part     xczu3eg-sbva484-1-i
set clock_ns 4.0
if {[info exists ::env(CODENET_PART)]}     { set part $::env(CODENET_PART) }
if {[info exists ::env(CODENET_CLOCK_NS)]} { set clock_ns $::env(CODENET_CLOCK_NS) }
set vectors ""
if {[info exists ::env(CODENET_CSIM_VECTORS)]} { set vectors [file normalize $::env(CODENET_CSIM_VECTORS)] }
set cosim [expr {[info exists ::env(CODENET_COSIM)] && $::env(CODENET_COSIM) ne "" && $::env(CODENET_COSIM) ne "0"}]
if {$cosim && $vectors eq ""} {
    error "ERROR: CODENET_COSIM=1 needs CODENET_CSIM_VECTORS=<vector folder> (python -m codenet_pynq.accel.vectors\
--random 2 --out <folder>; keep it small: co-simulation runs the RTL cycle by cycle)"
}
if {$vectors ne "" && ![file isdirectory $vectors]} {
    error "ERROR: CODENET_CSIM_VECTORS=$vectors is not a folder of test vectors"
}

open_project -reset codenet_hls
set_top codenet_top
add_files codenet_engine.cpp -cflags "-I$src -std=c++14"
add_files -tb tb/tb_codenet.cpp -cflags "-I$src -std=c++14"
add_files -tb codenet_emu.cpp -cflags "-I$src -std=c++14"

open_solution -reset ultra96v2 -flow_target vivado
set_part $part
create_clock -period $clock_ns -name default
# 64-bit m_axi addresses: the register map (codenet_params.h CN_REG_*) has 12-byte pointer slots
config_interface -m_axi_addr64=true -m_axi_alignment_byte_size 64 -m_axi_max_widen_bitwidth 128
config_compile -pipeline_loops 64

if {$vectors ne ""} {
    csim_design -argv $vectors
}
csynth_design

# ------------------------------------------------------------------ synthesis report checks
proc report_value {xml path} {
    # text of the element at path {outer ... inner} of the csynth.xml, or "" when absent
    foreach tag $path {
        if {![regexp "<$tag>(.*?)</$tag>" $xml -> xml]} { return "" }
    }
    return [string trim $xml]
}
set report [file join codenet_hls ultra96v2 syn report codenet_top_csynth.xml]
if {![file exists $report]} {
    error "ERROR: C synthesis wrote no report ($report): see vitis_hls.log"
}
set fh [open $report r]
set xml [read $fh]
close $fh
set est [report_value $xml {SummaryOfTimingAnalysis EstimatedClockPeriod}]
puts "csynth: estimated clock $est ns (target $clock_ns ns)"
if {[string is double -strict $est] && $est > $clock_ns} {
    puts "WARNING: the estimated clock ($est ns) misses the target ($clock_ns ns); implementation will likely fail timing"
}
set over {}
foreach res {BRAM_18K DSP FF LUT URAM} {
    set used [report_value $xml [list AreaEstimates Resources $res]]
    set avail [report_value $xml [list AreaEstimates AvailableResources $res]]
    if {[string is integer -strict $used] && [string is integer -strict $avail] && $avail > 0} {
        puts [format "csynth: %-8s %8d of %8d (%5.1f%%)" $res $used $avail [expr {100.0 * $used / $avail}]]
        if {$used > $avail} { lappend over "$res $used > $avail" }
    }
}
if {[llength $over]} {
    error "ERROR: the synthesised engine does not fit $part: [join $over {, }] (see $report)"
}

if {$cosim} {
    # RTL co-simulation of the same vectors; the m_axi depths of the INTERFACE pragmas must equal the
    # sizes of the buffers the testbench passes (see hls_src/README.md, "Co-simulation")
    set trace none
    if {[info exists ::env(CODENET_COSIM_TRACE)]} { set trace $::env(CODENET_COSIM_TRACE) }
    cosim_design -rtl verilog -tool xsim -trace_level $trace -argv $vectors
}
if {![info exists ::env(CODENET_NO_EXPORT)]} {
    export_design -format ip_catalog -vendor codenet -library hls -version 1.0 \
        -description "CoDeNet W4A8 accelerator: one start per frame from a layer descriptor table"
}

# ------------------------------------------------------------------ generated register map vs the header
# every XCODENET_TOP_CONTROL_ADDR_<X>[_DATA] of the generated driver header must equal CN_REG_<X>
set hw_h [lindex [glob -nocomplain [file join codenet_hls ultra96v2 impl misc drivers * src xcodenet_top_hw.h] \
                                   [file join codenet_hls ultra96v2 impl ip drivers * src xcodenet_top_hw.h]] 0]
if {$hw_h eq ""} {
    puts "WARNING: no generated xcodenet_top_hw.h found: compare the register map with codenet_params.h by hand"
} else {
    set fh [open codenet_params.h r]; set params [read $fh]; close $fh
    set fh [open $hw_h r]; set generated [read $fh]; close $fh
    set want [dict create]
    foreach {- name value} [regexp -all -inline -line {^#define CN_REG_(\w+)\s+(0[xX][0-9a-fA-F]+|\d+)} $params] {
        if {$name ne "ADDR_BITS"} { dict set want $name [expr {$value}] }
    }
    set got [dict create]
    foreach {- name value} [regexp -all -inline -line {^#define XCODENET_TOP_CONTROL_ADDR_(\w+)\s+(0x[0-9a-fA-F]+)} $generated] {
        regsub {_DATA$} $name {} name
        dict set got $name [expr {$value}]
    }
    set diff {}
    foreach name [lsort -unique [concat [dict keys $want] [dict keys $got]]] {
        set w none
        set g none
        if {[dict exists $want $name]} { set w [format 0x%02x [dict get $want $name]] }
        if {[dict exists $got $name]} { set g [format 0x%02x [dict get $got $name]] }
        if {$w ne $g} { lappend diff "$name: generated $g, codenet_params.h $w" }
    }
    if {[llength $diff]} {
        error "ERROR: the generated register map ($hw_h) differs from CN_REG_* in codenet_params.h:\
[join $diff {; }]. The driver would refuse this IP: fix codenet_params.h (and codenet_pynq/registers.py) or\
the top function's signature"
    }
    puts "register map: $hw_h matches CN_REG_* of codenet_params.h"
}
exit
