"""``python -m codenet_pynq``: the ``codenet-pynq`` command (detect, info, benchmark)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m codenet_pynq"))
