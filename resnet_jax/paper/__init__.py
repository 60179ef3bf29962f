"""The paper's campaign: the degradation studies, the whole-paper capstone, its plan and its
report (the commands are resnet_jax.study and resnet_jax.reproduce)."""
