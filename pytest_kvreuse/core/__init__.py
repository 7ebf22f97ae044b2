"""The analyses: pure functions over the flat arrays of a BlockStream (blocks, reuse
intervals, LRU and OPT stack distances, reuse times, the ReuseAnalysis). numpy only: no
pytest, matplotlib or jinja2."""
