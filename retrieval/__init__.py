"""Retrieval: the one evaluation module, metrics, item ranking, baselines, FAISS indexes and
query expansion.

``evaluation`` is the one path every figure goes through (training's validation, the
evaluate stage, ``street2shop eval``, the benchmarks); ``metrics`` scores vectors, ``ranking``
turns photo hits into item rankings (shared with the service), ``baselines`` are white-box
descriptors, ``index`` the FAISS gallery index, ``expansion`` αQE / DBA, ``report`` the HTML
report's pages.
"""
