"""mcsync benchmarks: `python -m benchmarks [--quick] [--only NAME]` (docs/performance.md)."""
