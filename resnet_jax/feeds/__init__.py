"""What the trainer is fed: the Feed interface and open_feed's choice (interface.py)
between the on-device CIFAR input (on_device.py) and the streamed ImageNet input
(streamed.py), with streamed evaluation (streamed_eval.py)."""
from resnet_jax.feeds.interface import Feed, open_feed

__all__ = ['Feed', 'open_feed']
