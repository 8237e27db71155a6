# codenet_bd.tcl -- Vivado block design of the CoDeNet overlay for the Ultra96-V2 (ZU3EG).
#
# Targets Vivado 2022.2 or newer (the same release as the Vitis HLS that exported the IP).
# Run through ../build.sh (vivado -mode batch -source ultra96v2/codenet_bd.tcl -tclargs <ip_repo> <out_dir>).
#
#   Zynq UltraScale+ PS:  M_AXI_HPM0_FPD -> SmartConnect -> s_axi_control of codenet_top
#                         S_AXI_HP0..HP3_FPD (128 bit) <- SmartConnect <- m_axi gmem_desc, gmem_wgt, gmem_rd, gmem_wr
#                         pl_clk0 (PL0_REF_CTRL set to CODENET_CLOCK_MHZ, default 250) clocks everything,
#                         pl_resetn0 -> proc_sys_reset, pl_ps_irq0 <- interrupt
#   codenet_top (codenet:hls:codenet_top:1.0) from hls_src/codenet_hls/ultra96v2/impl/ip
#
# Fails (Tcl error, non-zero exit of vivado) when: the Avnet Ultra96-V2 board files are missing,
# the PS cannot make the requested PL clock, the implementation run does not reach a bitstream,
# or the routed design has negative setup (WNS), hold (WHS) or pulse-width (WPWS) slack.
# Produces <out_dir>/codenet.bit and <out_dir>/codenet.hwh (the pair PYNQ's Overlay loads) and
# <out_dir>/reports/ (timing summary, utilization). See ../README.md for what to check.
#
# Environment: CODENET_BOARD_REPO (folder holding the board files, e.g. a clone of
# https://github.com/Avnet/bdf), CODENET_PART, CODENET_CLOCK_MHZ, CODENET_JOBS.

set ip_repo [file normalize [lindex $argv 0]]
set out_dir [file normalize [lindex $argv 1]]
# Ultra96-V2: the Avnet board files (1.2, 1.3) name the industrial-grade part
set part xczu3eg-sbva484-1-i
set clock_mhz 250
set jobs 4
if {[info exists ::env(CODENET_PART)]}      { set part $::env(CODENET_PART) }
if {[info exists ::env(CODENET_CLOCK_MHZ)]} { set clock_mhz $::env(CODENET_CLOCK_MHZ) }
if {[info exists ::env(CODENET_JOBS)]}      { set jobs $::env(CODENET_JOBS) }
set proj_dir [file join $out_dir vivado_codenet]
set report_dir [file join $out_dir reports]

# ------------------------------------------------------------------ board files (required)
if {[info exists ::env(CODENET_BOARD_REPO)]} {
    set_param board.repoPaths [list [file normalize $::env(CODENET_BOARD_REPO)]]
}
set board [lindex [lsort [get_board_parts -quiet -latest_file_version {*ultra96v2*}]] end]
if {$board eq ""} {
    error "ERROR: the Avnet Ultra96-V2 board files are not installed, so the PS would miss the board's DDR,\
MIO and clock presets. Install them: git clone https://github.com/Avnet/bdf, then either set\
CODENET_BOARD_REPO=<that folder> before overlays/build.sh or copy its ultra96v2 folder to\
<Vivado install>/data/boards/board_files/ (Vivado: Tools > Vivado Store > Boards also works)."
}
puts "board part: $board"

create_project -force codenet $proj_dir -part $part
set_property board_part $board [current_project]
set proj_part [get_property PART [current_project]]
if {$proj_part ne $part} {
    error "ERROR: the board files say the Ultra96-V2 part is $proj_part, the script targets $part:\
export the HLS IP for $proj_part too (CODENET_PART=$proj_part for both scripts)"
}
set_property ip_repo_paths $ip_repo [current_project]
update_ip_catalog
if {[llength [get_ipdefs -quiet codenet:hls:codenet_top:*]] == 0} {
    error "ERROR: no codenet_top IP in $ip_repo: run make -C hls_src hls first (overlays/build.sh does)"
}

# ------------------------------------------------------------------ block design
create_bd_design codenet
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps
set_property -dict [list \
    CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} CONFIG.PSU__USE__M_AXI_GP2 {0} \
    CONFIG.PSU__USE__S_AXI_GP2 {1} CONFIG.PSU__SAXIGP2__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP3 {1} CONFIG.PSU__SAXIGP3__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP4 {1} CONFIG.PSU__SAXIGP4__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP5 {1} CONFIG.PSU__SAXIGP5__DATA_WIDTH {128} \
    CONFIG.PSU__FPGA_PL0_ENABLE {1} CONFIG.PSU__FPGA_PL1_ENABLE {0} \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz \
    CONFIG.PSU__USE__IRQ0 {1} \
] $ps
set acc [create_bd_cell -type ip -vlnv codenet:hls:codenet_top:1.0 codenet_top_0]
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl_clk0]

# one clock, by pin name: pl_clk0 drives the PS port clocks, the IP, the reset block and the interconnects
set clk_pins [list [get_bd_pins zynq_ultra_ps_e_0/pl_clk0] [get_bd_pins codenet_top_0/ap_clk] \
    [get_bd_pins rst_pl_clk0/slowest_sync_clk] [get_bd_pins zynq_ultra_ps_e_0/maxihpm0_fpd_aclk]]
foreach hp {0 1 2 3} { lappend clk_pins [get_bd_pins zynq_ultra_ps_e_0/saxihp${hp}_fpd_aclk] }
set rstn_pins [list [get_bd_pins rst_pl_clk0/peripheral_aresetn] [get_bd_pins codenet_top_0/ap_rst_n]]
connect_bd_net [get_bd_pins zynq_ultra_ps_e_0/pl_resetn0] [get_bd_pins rst_pl_clk0/ext_reset_in]

# AXI-Lite control: M_AXI_HPM0_FPD -> SmartConnect -> s_axi_control
set sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect sc_ctrl]
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $sc
connect_bd_intf_net [get_bd_intf_pins zynq_ultra_ps_e_0/M_AXI_HPM0_FPD] [get_bd_intf_pins sc_ctrl/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins sc_ctrl/M00_AXI] [get_bd_intf_pins codenet_top_0/s_axi_control]
lappend clk_pins [get_bd_pins sc_ctrl/aclk]
lappend rstn_pins [get_bd_pins sc_ctrl/aresetn]

# one HP port per AXI master: descriptors, weights, activation reads, activation writes
foreach {master hp} {m_axi_gmem_desc 0 m_axi_gmem_wgt 1 m_axi_gmem_rd 2 m_axi_gmem_wr 3} {
    set name sc_hp$hp
    set cell [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect $name]
    set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] $cell
    connect_bd_intf_net [get_bd_intf_pins codenet_top_0/$master] [get_bd_intf_pins $name/S00_AXI]
    connect_bd_intf_net [get_bd_intf_pins $name/M00_AXI] [get_bd_intf_pins zynq_ultra_ps_e_0/S_AXI_HP${hp}_FPD]
    lappend clk_pins [get_bd_pins $name/aclk]
    lappend rstn_pins [get_bd_pins $name/aresetn]
}
connect_bd_net {*}$clk_pins
connect_bd_net {*}$rstn_pins
connect_bd_net [get_bd_pins codenet_top_0/interrupt] [get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0]

assign_bd_address
validate_bd_design
# the PS divides a PLL: check the frequency pl_clk0 really has (off by more than 1% fails)
set freq_hz [get_property CONFIG.FREQ_HZ [get_bd_pins zynq_ultra_ps_e_0/pl_clk0]]
puts "pl_clk0: requested $clock_mhz MHz, the PS makes $freq_hz Hz"
if {$freq_hz eq "" || abs($freq_hz - $clock_mhz * 1e6) > 0.01 * $clock_mhz * 1e6} {
    error "ERROR: the PS makes '$freq_hz' Hz on pl_clk0, not $clock_mhz MHz: choose another CODENET_CLOCK_MHZ"
}
save_bd_design

set bd_file [get_files codenet.bd]
make_wrapper -files $bd_file -top
add_files -norecurse [file join $proj_dir codenet.gen sources_1 bd codenet hdl codenet_wrapper.v]
set_property top codenet_wrapper [current_fileset]
generate_target all $bd_file

# ------------------------------------------------------------------ implementation and its checks
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
set impl [get_runs impl_1]
set status [get_property STATUS $impl]
puts "impl_1 status: $status"
if {![string match "*write_bitstream Complete*" $status]} {
    error "ERROR: implementation did not produce a bitstream (status '$status'): see $proj_dir/codenet.runs/impl_1/runme.log"
}

# timing of the routed design: worst setup (WNS), hold (WHS) and pulse-width (WPWS) slack
open_run impl_1
file mkdir $report_dir
report_timing_summary -max_paths 20 -file [file join $report_dir timing_summary.rpt]
report_utilization -file [file join $report_dir utilization.rpt]
set setup_paths [get_timing_paths -max_paths 1 -nworst 1 -setup]
set hold_paths [get_timing_paths -max_paths 1 -nworst 1 -hold]
if {[llength $setup_paths] == 0 || [llength $hold_paths] == 0} {
    error "ERROR: no timed paths in the routed design (is the clock constrained?): see $report_dir/timing_summary.rpt"
}
set wns [get_property SLACK [lindex $setup_paths 0]]
set whs [get_property SLACK [lindex $hold_paths 0]]
set wpws [get_property -quiet STATS.WPWS $impl]
puts [format "timing: WNS %s ns, WHS %s ns, WPWS %s ns (run stats: WNS %s, WHS %s, TNS %s, THS %s)" \
    $wns $whs $wpws [get_property -quiet STATS.WNS $impl] [get_property -quiet STATS.WHS $impl] \
    [get_property -quiet STATS.TNS $impl] [get_property -quiet STATS.THS $impl]]
if {![string is double -strict $wns] || ![string is double -strict $whs]} {
    error "ERROR: worst slack is not a number (WNS '$wns', WHS '$whs'): see $report_dir/timing_summary.rpt"
}
if {$wns < 0 || $whs < 0 || ([string is double -strict $wpws] && $wpws < 0)} {
    error "ERROR: timing not met at $clock_mhz MHz (WNS $wns ns, WHS $whs ns, WPWS $wpws ns): no bitstream is\
copied. See $report_dir/timing_summary.rpt; rebuild the IP and overlay at a lower clock\
(CODENET_CLOCK_NS for HLS, CODENET_CLOCK_MHZ here)"
}

file mkdir $out_dir
set bits [glob -nocomplain [file join $proj_dir codenet.runs impl_1 *.bit]]
set hwhs [glob -nocomplain [file join $proj_dir codenet.gen sources_1 bd codenet hw_handoff *.hwh]]
if {[llength $bits] != 1 || [llength $hwhs] != 1} {
    error "ERROR: expected one .bit and one .hwh, found bit: $bits, hwh: $hwhs"
}
file copy -force [lindex $bits 0] [file join $out_dir codenet.bit]
file copy -force [lindex $hwhs 0] [file join $out_dir codenet.hwh]
puts "timing met (WNS $wns ns, WHS $whs ns); wrote $out_dir/codenet.bit and $out_dir/codenet.hwh"
