"""Benchmarks: `python -m resnet_jax.bench train|compile|data ...` (see __main__)."""
