# codenet_bd.tcl -- Vivado block design of the CoDeNet overlay for the Ultra96-V2 (ZU3EG).
#
# Targets Vivado 2022.2 or newer (the same release as the Vitis HLS that exported the IP).
# Run through ../build.sh (vivado -mode batch -source ultra96v2/codenet_bd.tcl -tclargs <ip_repo> <out_dir>).
#
#   Zynq UltraScale+ PS:  M_AXI_HPM0_FPD -> AXI-Lite control of codenet_top
#                         S_AXI_HP0..HP3_FPD (128 bit) <- m_axi gmem_desc, gmem_wgt, gmem_rd, gmem_wr
#                         pl_clk0 = 250 MHz, pl_resetn0, pl_ps_irq0 <- interrupt
#   codenet_top (codenet:hls:codenet_top:1.0) from hls_src/codenet_hls/ultra96v2/impl/ip
# Produces <out_dir>/codenet.bit and <out_dir>/codenet.hwh (the pair PYNQ's Overlay loads).

set ip_repo [file normalize [lindex $argv 0]]
set out_dir [file normalize [lindex $argv 1]]
set part xczu3eg-sbva484-1-e
set proj_dir [file join $out_dir vivado_codenet]

create_project -force codenet $proj_dir -part $part
# board files are optional: with them the PS gets the Ultra96-V2 DDR/MIO preset
set board [lindex [lsort [get_board_parts -quiet *ultra96v2*]] end]
if {$board ne ""} { set_property board_part $board [current_project] }
set_property ip_repo_paths $ip_repo [current_project]
update_ip_catalog

create_bd_design codenet
set ps [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e zynq_ultra_ps_e_0]
if {$board ne ""} {
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps
}
set_property -dict [list \
    CONFIG.PSU__USE__M_AXI_GP0 {1} CONFIG.PSU__USE__M_AXI_GP1 {0} CONFIG.PSU__USE__M_AXI_GP2 {0} \
    CONFIG.PSU__USE__S_AXI_GP2 {1} CONFIG.PSU__SAXIGP2__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP3 {1} CONFIG.PSU__SAXIGP3__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP4 {1} CONFIG.PSU__SAXIGP4__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP5 {1} CONFIG.PSU__SAXIGP5__DATA_WIDTH {128} \
    CONFIG.PSU__FPGA_PL0_ENABLE {1} CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ {250} \
    CONFIG.PSU__USE__IRQ0 {1} \
] $ps

set acc [create_bd_cell -type ip -vlnv codenet:hls:codenet_top:1.0 codenet_top_0]
set clk {/zynq_ultra_ps_e_0/pl_clk0 (250 MHz)}

# AXI-Lite control from the PS
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list Clk_master $clk Clk_slave Auto Clk_xbar Auto \
    Master /zynq_ultra_ps_e_0/M_AXI_HPM0_FPD Slave /codenet_top_0/s_axi_control ddr_seg Auto \
    intc_ip {New AXI SmartConnect} master_apm 0] [get_bd_intf_pins codenet_top_0/s_axi_control]

# one HP port per AXI master: descriptors, weights, activation reads, activation writes
foreach {master hp} {m_axi_gmem_desc S_AXI_HP0_FPD m_axi_gmem_wgt S_AXI_HP1_FPD \
                     m_axi_gmem_rd S_AXI_HP2_FPD m_axi_gmem_wr S_AXI_HP3_FPD} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config [list Clk_master Auto Clk_slave $clk Clk_xbar $clk \
        Master /codenet_top_0/$master Slave /zynq_ultra_ps_e_0/$hp ddr_seg Auto \
        intc_ip {New AXI SmartConnect} master_apm 0] [get_bd_intf_pins zynq_ultra_ps_e_0/$hp]
}
connect_bd_net [get_bd_pins codenet_top_0/interrupt] [get_bd_pins zynq_ultra_ps_e_0/pl_ps_irq0]

assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files codenet.bd]
make_wrapper -files $bd_file -top
add_files -norecurse [file join $proj_dir codenet.gen sources_1 bd codenet hdl codenet_wrapper.v]
set_property top codenet_wrapper [current_fileset]
generate_target all $bd_file

launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "implementation failed: see $proj_dir/codenet.runs/impl_1"
}
file mkdir $out_dir
file copy -force [glob [file join $proj_dir codenet.runs impl_1 *.bit]] [file join $out_dir codenet.bit]
file copy -force [lindex [glob [file join $proj_dir codenet.gen sources_1 bd codenet hw_handoff *.hwh]] 0] \
    [file join $out_dir codenet.hwh]
puts "wrote $out_dir/codenet.bit and $out_dir/codenet.hwh"
