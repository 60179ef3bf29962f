"""Config files (experiments/*.py) are loaded by path, as --config loads them, not as a
package: a config that builds on another (a study on its nets' config) loads it this way."""
import importlib.util
import pathlib
import types


def sibling_config(config_file: str, name: str) -> types.ModuleType:
  """The config file `name`.py in the folder of `config_file` (a config's __file__), as a
  module: its get_config, constants and helpers."""
  return module_at(pathlib.Path(config_file).with_name(f'{name}.py'))


def module_at(path: pathlib.Path) -> types.ModuleType:
  """The Python file at `path`, loaded as a module named after it (not imported as part of a
  package): config files, and scripts such as benchmarks/torch_resnet.py."""
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
