"""The one exception the data package raises for bad input."""
from resnet_jax.errors import ConfigError


class DataError(ConfigError):
  """Bad data or data config; the message names the problem and the fix."""
