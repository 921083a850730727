"""The demo shop: a generated marketplace (catalogue, seller and customer photos, ground
truth) served over HTTP with optional faults, for crawling, training and benchmarks."""
