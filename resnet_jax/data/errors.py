"""The one exception the data package raises for bad input."""


class DataError(ValueError):
  """Bad data or data config; the message names the problem and the fix."""
