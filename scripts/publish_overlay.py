"""Write ``codenet_pynq/overlays/<board>/codenet.link`` for a built overlay a maintainer publishes.

``python scripts/publish_overlay.py ultra96v2 overlays/ultra96v2 https://example.org/codenet/v0.1.0/ultra96v2``

Upload ``codenet.bit``, ``codenet.hwh`` and ``codenet_params.h`` of the built overlay folder to the
base URL first; the link records each file's URL, sha256 and md5sum (PYNQ's field), which
``python -m codenet_pynq.boards fetch`` verifies on the board before it puts a file in place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codenet_pynq.boards import write_link  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("board")
    p.add_argument("folder", help="folder with codenet.bit, codenet.hwh, codenet_params.h (overlays/build.sh output)")
    p.add_argument("base_url", help="where the three files are published")
    a = p.parse_args()
    folder = Path(a.folder)
    missing = [n for n in ("codenet.bit", "codenet.hwh") if not (folder / n).is_file()]
    if missing:
        p.error(f"{folder}: {', '.join(missing)} missing; build the overlay with overlays/build.sh {a.board}")
    params = folder / "codenet_params.h"
    out = write_link(a.board, folder / "codenet.bit", folder / "codenet.hwh", a.base_url,
                     params=params if params.is_file() else None)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
