"""Benchmarks of the mailmigrate engine against mbsync, on this machine, in one run.

``python -m bench.run [--quick] [--out DIR]`` (``make bench``, ``make bench-quick``) starts two
local Dovecot servers (legacy layout to modern layout, as in the tests), seeds a corpus, copies it
with the engine and with mbsync into fresh destination accounts over several alternating rounds,
and writes JSON, a Markdown table and a PNG plot to ``bench/results/`` (see ``bench/README.md``).
"""
