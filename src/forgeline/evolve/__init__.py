"""The evolution loop of note 000: a daemon that finds work in a repository (``signals``,
``scan``), the implementation agent that does it (the normal pipeline, ``agent``), and the
change tracker (CTRM) that records every change (``tracker``; its pure domain is
``core/rsi.py``). ``reads`` is the read API for the CLI and the server. See docs/evolve.md.
"""
