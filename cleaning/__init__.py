"""Clean data: the good/noise photo filter, near-duplicate merging and leakage-free splits."""
