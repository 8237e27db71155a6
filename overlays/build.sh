#!/usr/bin/env bash
# overlays/build.sh -- build a CoDeNet overlay (.bit + .hwh) for a board.
#
#   overlays/build.sh [board]        (default board: ultra96v2)
#
# Needs Vitis HLS and Vivado 2022.2 or newer on PATH (source <install>/settings64.sh).
# 1. exports the accelerator IP (make -C hls_src hls) unless it already exists,
# 2. runs the board's block design Tcl in Vivado batch mode,
# 3. leaves overlays/<board>/codenet.bit and overlays/<board>/codenet.hwh.
# Takes about an hour on a laptop; nothing here runs in CI (the C simulation does).
set -euo pipefail
board="${1:-ultra96v2}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bd="$here/$board/codenet_bd.tcl"
[ -f "$bd" ] || { echo "ERROR: no block design for board '$board' ($bd)" >&2; exit 1; }
for tool in vitis_hls vivado; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "ERROR: $tool not found on PATH: install Vitis/Vivado 2022.2+ and source settings64.sh" >&2; exit 1; }
done
ip_repo="$root/hls_src/codenet_hls/ultra96v2/impl/ip"
if ! ls "$ip_repo"/*.zip >/dev/null 2>&1; then
  make -C "$root/hls_src" hls
fi
vivado -mode batch -nojournal -log "$here/$board/vivado.log" -source "$bd" -tclargs "$ip_repo" "$here/$board"
# the driver checks a model against the parameters the overlay was built with
cp "$root/hls_src/codenet_params.h" "$here/$board/codenet_params.h"
echo "overlay ready: $here/$board/codenet.bit + codenet.hwh (+ codenet_params.h)"
