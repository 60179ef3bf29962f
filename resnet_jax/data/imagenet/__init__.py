"""The streamed ImageNet input of Section 3.4, which needs no TensorFlow. open_streamed
(stream.py) is what the trainer sees; the batch it yields is read by sources.py, decoded
by decode.py, augmented by augment.py (train) or cut into test views by views.py (eval)
in the grain workers of pipeline.py (workers.py keeps them from outliving the run), and
normalized with the mean of stats.py."""
from resnet_jax.data.imagenet.stream import (EVAL, MEAN_RGB, MODES, NORMALIZATIONS, SOURCES,
                                             STDDEV_RGB, StreamedData,
                                             default_imagenet_data_config, normalize_on_device,
                                             open_streamed, per_host_batch_size)

__all__ = ['EVAL', 'MEAN_RGB', 'MODES', 'NORMALIZATIONS', 'SOURCES', 'STDDEV_RGB', 'StreamedData',
           'default_imagenet_data_config', 'normalize_on_device', 'open_streamed',
           'per_host_batch_size']
