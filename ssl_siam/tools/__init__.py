"""Tools apart from the library: throughput benchmarks, the demo, reports across runs, synthetic data."""
