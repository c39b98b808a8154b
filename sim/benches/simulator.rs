//! Placeholder until the simulator benchmarks land.
fn main() {}
