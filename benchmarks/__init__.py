"""Side-by-side benchmarks: esdb's public API against JetStream used as an event store."""
