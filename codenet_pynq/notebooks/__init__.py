"""The CoDeNet notebooks, shipped with the package (``pynq get-notebooks codenet-pynq`` copies them).

This folder is the target of the ``pynq.notebooks`` entry point of setup.py: PYNQ copies the
folder of that module into ``./pynq-notebooks/codenet-pynq/``.
"""
