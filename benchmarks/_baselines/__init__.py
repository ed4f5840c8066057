"""Baseline model servers the benchmarks compare deployer against (same model, same machine, same run)."""
