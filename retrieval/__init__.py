"""Retrieval: evaluation, baseline descriptors, FAISS indexes and query expansion.

Pure numpy / faiss code that takes vectors, not models: ``evaluation`` is the one scoring
path, ``baselines`` the white-box descriptors, ``index`` the FAISS gallery index and
``expansion`` the optional αQE / DBA post-processing.
"""
