"""Input data: whole data sets as numpy arrays for CIFAR-scale training (load_dataset), and
per-host streaming iterators for ImageNet (imagenet_train_iterator, imagenet_eval_iterator).
TensorFlow is imported only by the TFDS paths."""
from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.errors import DataError
from resnet_jax.data.imagenet import (default_imagenet_data_config, imagenet_eval_iterator,
                                      imagenet_train_iterator)
from resnet_jax.data.loader import SOURCES, default_data_config, load_dataset

__all__ = ['ArraySplits', 'DataError', 'SOURCES', 'default_data_config',
           'default_imagenet_data_config', 'imagenet_eval_iterator', 'imagenet_train_iterator',
           'load_dataset']
