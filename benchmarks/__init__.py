"""mcsync benchmarks: `python -m benchmarks [--quick] [--only NAME]` (see the README's "Performance" section)."""
