"""Small helpers shared across the package and its benchmarks."""
