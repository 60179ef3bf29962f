"""TensorFlow and TFDS, imported only by the sources that need them."""
import functools
import types

from resnet_jax.errors import MissingPackageError


@functools.cache
def import_tensorflow() -> tuple[types.ModuleType, types.ModuleType]:
  """(tensorflow, tensorflow_datasets), with GPUs hidden from TensorFlow.

  TensorFlow would otherwise reserve the GPU memory JAX needs.
  """
  try:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise MissingPackageError(
        f"TFDS data needs TensorFlow Datasets, which is not importable ({error}); install it "
        f"with `pip install '.[tfds]'` in the checkout, or use data.source='archive', 'folder' "
        f"or 'synthetic', which do not need it.") from None
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:
    pass  # TensorFlow was initialized before us; its devices can no longer change.
  return tf, tfds
