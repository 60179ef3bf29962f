"""The paper's nets and the registry that builds them by name."""
from resnet_jax.models.blocks import unroll_scanned
from resnet_jax.models.registry import ModelSpec, create, names, parse

__all__ = ['ModelSpec', 'create', 'names', 'parse', 'unroll_scanned']
