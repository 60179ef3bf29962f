"""Input data: whole data sets as numpy arrays for CIFAR-scale training (load_dataset), and
the streamed ImageNet input (imagenet.open_streamed), which needs no TensorFlow.
TensorFlow is imported only by load_dataset's TFDS source."""
from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.cifar.loader import SOURCES, default_data_config, load_dataset
from resnet_jax.data.errors import DataError
from resnet_jax.data.imagenet import default_imagenet_data_config, open_streamed

__all__ = ['ArraySplits', 'DataError', 'SOURCES', 'default_data_config',
           'default_imagenet_data_config', 'load_dataset', 'open_streamed']
