"""Multi-stage workflows the commands and tools run: the demo pipeline, the
compression curve, the kill probe, benchmarks, latency tables, teachers."""
