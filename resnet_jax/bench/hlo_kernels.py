"""The kernels of an optimized XLA program (`compiled.as_text()`), by kind: what one call
launches, counting the body of a loop with a known trip count that many times."""
import collections
import re

KINDS = ('conv/matmul', 'fusion', 'copy/transpose', 'collective', 'other')
# Instructions that launch nothing: values, tuples, control flow (its bodies are counted),
# the second halves of asynchronous pairs.
_NOT_KERNELS = {'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast', 'while',
                'conditional', 'call', 'after-all', 'partition-id', 'replica-id',
                'opt-barrier', 'add-dependency', 'domain'}
_COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'collective-permute', 'all-to-all',
                'collective-broadcast', 'ragged-all-to-all')
_HEADER = re.compile(r'^(ENTRY )?%?([\w.\-]+) .*\{$')
_INSTRUCTION = re.compile(r'^\s+(?:ROOT )?%?[\w.\-]+ = (.*)$')
_CALLS = re.compile(r'(?:calls|body|to_apply|branch_computations)=\{?%?([\w.\-, %]+)\}?')
_CONDITION = re.compile(r'condition=%?([\w.\-]+)')
_INT_CONSTANT = re.compile(r'^s32\[\]\S* constant\((\d+)\)')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_SCALAR = re.compile(r'^\w+\[\]')  # A TPU runs a bare scalar op on its scalar unit, no kernel.
_MATMUL_TARGETS = ('conv', 'gemm', 'matmul', 'cublas', 'cudnn')


def count(hlo_text: str) -> collections.Counter:
  """Kernels one call of the program launches, by KINDS."""
  computations, entry = _computations(hlo_text)
  kernels = collections.Counter()
  _count_into(kernels, computations, entry, 1)
  return kernels


def _computations(hlo_text: str) -> tuple[dict[str, list[str]], str]:
  computations, entry, current = {}, None, None
  for line in hlo_text.splitlines():
    header = _HEADER.match(line)
    if header and not line.startswith(' '):
      current = computations.setdefault(header.group(2), [])
      entry = header.group(2) if header.group(1) else entry
    elif line.startswith('}'):
      current = None
    elif current is not None and _INSTRUCTION.match(line):
      current.append(_INSTRUCTION.match(line).group(1))
  return computations, entry


def _opcode(rhs: str) -> str:
  """The opcode of an instruction's right-hand side: what follows its shape."""
  if rhs.startswith('('):  # A tuple shape: skip to its closing parenthesis.
    depth = 0
    for end, char in enumerate(rhs):
      depth += {'(': 1, ')': -1}.get(char, 0)
      if depth == 0:
        break
    rhs = rhs[end + 1:]
  else:
    rhs = rhs.split(' ', 1)[1] if ' ' in rhs else ''
  return rhs.strip().split('(', 1)[0]


def _count_into(kernels, computations, name: str, times: int) -> None:
  for rhs in computations.get(name, ()):
    opcode = _opcode(rhs)
    if opcode in ('while', 'conditional', 'call'):
      trips = _trip_count(rhs, computations) if opcode == 'while' else 1
      for called in _called(rhs):
        _count_into(kernels, computations, called, times * trips)
    elif opcode not in _NOT_KERNELS and not opcode.endswith('-done') and not (
        _SCALAR.match(rhs) and opcode != 'fusion'):
      kernels[_kind(opcode, rhs, computations)] += times


def _trip_count(rhs: str, computations) -> int:
  """A while loop's trips: XLA's known_trip_count (GPU), else the one integer constant its
  condition compares the counter with (TPU: a scan from 0 to N); 1 if neither says."""
  known = _TRIP_COUNT.search(rhs)
  if known:
    return int(known.group(1))
  condition = _CONDITION.search(rhs)
  bounds = [int(bound) for line in computations.get(condition.group(1) if condition else '', ())
            for bound in _INT_CONSTANT.findall(line)]
  return bounds[0] if len(bounds) == 1 else 1


def _called(rhs: str) -> list[str]:
  names = []
  for match in _CALLS.finditer(rhs):
    names += [name.strip(' %') for name in match.group(1).split(',')]
  return names


def _kind(opcode: str, rhs: str, computations) -> str:
  base = opcode.removesuffix('-start')
  if base in _COLLECTIVES:
    return 'collective'
  if base in ('copy', 'transpose'):
    return 'copy/transpose'
  if base in ('convolution', 'dot'):
    return 'conv/matmul'
  if base == 'custom-call':
    target = re.search(r'custom_call_target="([^"]*)"', rhs)
    return 'conv/matmul' if target and any(
        word in target.group(1).lower() for word in _MATMUL_TARGETS) else 'other'
  if base == 'fusion':
    fused = [_opcode(line) for name in _called(rhs) for line in computations.get(name, ())]
    if {'convolution', 'dot'} & set(fused) or 'gemm' in rhs:
      return 'conv/matmul'
    if fused and set(fused) <= {'parameter', 'copy', 'transpose', 'bitcast', 'tuple'}:
      return 'copy/transpose'
    return 'fusion'
  return 'other'
