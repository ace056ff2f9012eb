"""mcsync benchmarks: `python -m benchmarks [--quick] [--only NAME]` (README: "Performance")."""
