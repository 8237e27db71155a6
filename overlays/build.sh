#!/usr/bin/env bash
# overlays/build.sh -- build a CoDeNet overlay (.bit + .hwh) for a board.
#
#   overlays/build.sh [board]        (default board: ultra96v2)
#
# Needs Vitis HLS and Vivado 2022.2 or newer on PATH (source <install>/settings64.sh) and the
# board's Vivado board files (Ultra96-V2: https://github.com/Avnet/bdf; point CODENET_BOARD_REPO
# at the clone, or copy it under <Vivado>/data/boards/board_files).
# 1. exports the accelerator IP (make -C hls_src hls) unless it already exists,
# 2. runs the board's block design Tcl in Vivado batch mode, which stops with an error on missing
#    board files, a PL clock the PS cannot make, a failed implementation or negative setup/hold slack,
# 3. leaves overlays/<board>/codenet.bit, codenet.hwh, codenet_params.h and reports/.
# Takes about an hour on a laptop; nothing here runs in CI (the C simulation does). See overlays/README.md.
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
if [ -n "${CODENET_BOARD_REPO:-}" ] && [ ! -d "$CODENET_BOARD_REPO" ]; then
  echo "ERROR: CODENET_BOARD_REPO=$CODENET_BOARD_REPO is not a folder (a clone of https://github.com/Avnet/bdf)" >&2
  exit 1
fi
ip_repo="$root/hls_src/codenet_hls/ultra96v2/impl/ip"
if ! ls "$ip_repo"/*.zip >/dev/null 2>&1; then
  make -C "$root/hls_src" hls
fi
out="$here/$board"
rm -f "$out/codenet.bit" "$out/codenet.hwh"   # never leave an old pair behind a failed build
if ! vivado -mode batch -nojournal -log "$out/vivado.log" -source "$bd" -tclargs "$ip_repo" "$out"; then
  echo "ERROR: the overlay build failed (board files, clock, implementation or timing): see $out/vivado.log" >&2
  exit 1
fi
for f in codenet.bit codenet.hwh; do
  [ -s "$out/$f" ] || { echo "ERROR: Vivado finished but $out/$f is missing: see $out/vivado.log" >&2; exit 1; }
done
# the driver checks a model against the parameters the overlay was built with
cp "$root/hls_src/codenet_params.h" "$out/codenet_params.h"
grep -E "^timing:|^pl_clk0:" "$out/vivado.log" || true
echo "overlay ready: $out/codenet.bit + codenet.hwh (+ codenet_params.h, reports/)"
