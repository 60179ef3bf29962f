"""Fault injection: tiny training runs killed, preempted, fed damaged checkpoints or bad
configs, checked against an uninterrupted run. `python -m resnet_jax.faults` writes the
table of docs/reliability.md; tests/test_faults.py calls the same scenarios."""
