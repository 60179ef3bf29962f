"""A PyTorch reference of the CIFAR nets of Section 4.2 and of their whole training step,
timed beside resnet_jax's by `python -m resnet_jax.bench train --torch`, and trained with the
paper's schedule on the arrays resnet_jax reads, to compare test errors on the same data:

  python benchmarks/torch_resnet.py --model resnet20 --data ../shared/data/cifar10-jpeg.tar.gz \
      --output /tmp/torch_resnet20.jsonl [--steps 64000] [--time-limit 600] [--compile]

It follows resnet_jax's recipe: 3x3 convs padded 1 on every side, BN (momentum 0.1,
eps 1e-5) after every conv and before the ReLU, option-A shortcuts, He (fan-out) init,
SGD momentum 0.9 with weight decay 1e-4 on every parameter; the uint8 data set sits on the
device and each batch is gathered, mean-subtracted, pad-4 cropped and flipped there.
Convs run channels-last; `precision='bfloat16'` runs under autocast with float32 weights.
"""
import argparse
import collections
import json
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CIFAR_PAD = 4  # "4 pixels are padded on each side" (Section 4.2).


class OptionAShortcut(nn.Module):
  """Subsample by the stride and zero-pad the new channels: no parameters (Section 3.3)."""

  def __init__(self, features: int, stride: int):
    super().__init__()
    self.features, self.stride = features, stride

  def forward(self, x):
    x = x[:, :, ::self.stride, ::self.stride]
    return F.pad(x, (0, 0, 0, 0, 0, self.features - x.shape[1]))


class BasicBlock(nn.Module):
  """Two 3x3 convs with BN; the residual version adds the shortcut before the last ReLU."""

  def __init__(self, in_features: int, features: int, stride: int, residual: bool):
    super().__init__()
    self.conv1 = nn.Conv2d(in_features, features, 3, stride, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, 1, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.shortcut = None
    if residual:
      changes = stride != 1 or in_features != features
      self.shortcut = OptionAShortcut(features, stride) if changes else nn.Identity()

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.shortcut is not None:
      y = y + self.shortcut(x)
    return F.relu(y)


class CifarNet(nn.Module):
  """6n+2 layers: a 3x3 conv, three stages of 2n 3x3 convs (16/32/64 filters), global
  average pooling and a linear classifier. Module names follow resnet_jax's variables."""

  def __init__(self, depth: int, residual: bool, num_classes: int = 10,
               widths: tuple[int, ...] = (16, 32, 64)):
    super().__init__()
    if depth < 8 or (depth - 2) % 6:
      raise ValueError(f'depth must be 6n+2 for CIFAR nets (20, 32, 44, 56, 110, 1202, ...), '
                       f'got {depth}')
    blocks = (depth - 2) // 6
    self.stem_conv = nn.Conv2d(3, widths[0], 3, 1, padding=1, bias=False)
    self.stem_bn = nn.BatchNorm2d(widths[0])
    layers, in_features = [], widths[0]
    for stage, width in enumerate(widths):
      for index in range(blocks):
        stride = 2 if stage and not index else 1
        layers.append((f'stage{stage + 1}_block{index}',
                       BasicBlock(in_features, width, stride, residual)))
        in_features = width
    self.blocks = nn.Sequential(collections.OrderedDict(layers))
    self.classifier = nn.Linear(in_features, num_classes)
    for module in self.modules():
      if isinstance(module, nn.Conv2d):
        # Section 3.4: He init, std sqrt(2/n) with n = k*k*out_channels.
        nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

  def forward(self, images):
    x = F.relu(self.stem_bn(self.stem_conv(images)))
    x = self.blocks(x)
    return self.classifier(x.mean((2, 3)))


def create(name: str, num_classes: int = 10) -> CifarNet:
  """`plain<depth>` or `resnet<depth>`, depth = 6n+2, like resnet_jax.models.create."""
  match = re.fullmatch(r'(plain|resnet)(\d+)', name)
  if not match:
    raise ValueError(f'the torch reference has the CIFAR nets plain<d>/resnet<d> only, '
                     f'got {name!r}')
  return CifarNet(int(match.group(2)), match.group(1) == 'resnet', num_classes)


def parameter_count(model: nn.Module) -> int:
  return sum(parameter.numel() for parameter in model.parameters())


def load_flax_variables(model: CifarNet, variables: dict) -> None:
  """Copies an unrolled resnet_jax CifarNet's {'params', 'batch_stats'} into `model`."""
  params, stats = variables['params'], variables['batch_stats']

  def copy(target, source):
    with torch.no_grad():
      target.copy_(torch.from_numpy(np.array(source, dtype=np.float32)))

  def copy_conv(conv, kernel):  # HWIO -> OIHW
    copy(conv.weight, np.transpose(np.asarray(kernel), (3, 2, 0, 1)))

  def copy_bn(bn, name_params, name_stats):
    copy(bn.weight, name_params['scale'])
    copy(bn.bias, name_params['bias'])
    copy(bn.running_mean, name_stats['mean'])
    copy(bn.running_var, name_stats['var'])

  copy_conv(model.stem_conv, params['stem_conv']['kernel'])
  copy_bn(model.stem_bn, params['stem_bn'], stats['stem_bn'])
  for name, block in model.blocks.named_children():
    copy_conv(block.conv1, params[name]['Conv_0']['kernel'])
    copy_conv(block.conv2, params[name]['Conv_1']['kernel'])
    copy_bn(block.bn1, params[name]['bn1'], stats[name]['bn1'])
    copy_bn(block.bn2, params[name]['bn2'], stats[name]['bn2'])
  copy(model.classifier.weight, np.asarray(params['classifier']['kernel']).T)
  copy(model.classifier.bias, params['classifier']['bias'])


class TrainStep:
  """The whole training step on `device`: batch gather by a per-epoch permutation, mean
  subtraction, pad-4 random crop and flip, forward, backward and SGD update."""

  def __init__(self, model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int,
               device: torch.device, precision: str = 'float32', compile: bool = False,
               seed: int = 0):
    self.device, self.batch_size, self.seed = device, batch_size, seed
    self.model = model.to(device, memory_format=torch.channels_last).train()
    self.images = torch.as_tensor(images, device=device)  # [N, H, W, C] uint8
    self.labels = torch.as_tensor(labels, device=device, dtype=torch.long)
    self.mean = self.images.double().mean(0).float()  # Per-pixel mean (Section 4.2).
    self.generator = torch.Generator(device=device).manual_seed(seed)
    self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9,
                                     weight_decay=1e-4)
    self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                   enabled=precision == 'bfloat16')
    self._epoch, self._permutation = None, None
    self._augment, self._forward, self._update = _augment, self.model, self.optimizer.step
    if compile:
      self._augment = torch.compile(_augment)
      self._forward = torch.compile(self.model)
      self._update = torch.compile(self.optimizer.step)

  def __call__(self, step: int, lr: float = 0.1) -> torch.Tensor:
    """Runs training step `step` at learning rate `lr` and returns its loss (a device
    tensor)."""
    for group in self.optimizer.param_groups:
      group['lr'] = lr
    indices = self._batch_indices(step)
    offsets = torch.randint(0, 2 * CIFAR_PAD + 1, (self.batch_size, 2), device=self.device,
                            generator=self.generator)
    flips = torch.rand(self.batch_size, device=self.device, generator=self.generator) < 0.5
    images = self._augment(self.images[indices], self.mean, offsets, flips)
    with self.autocast:
      loss = F.cross_entropy(self._forward(images), self.labels[indices])
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self._update()
    return loss.detach()

  def synchronize(self) -> None:
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)

  def _batch_indices(self, step: int) -> torch.Tensor:
    num_examples = len(self.images)
    steps_per_epoch = num_examples // self.batch_size
    epoch, position = divmod(step, steps_per_epoch)
    if epoch != self._epoch:
      generator = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + epoch)
      self._permutation = torch.randperm(num_examples, device=self.device, generator=generator)
      self._epoch = epoch
    return self._permutation[position * self.batch_size:(position + 1) * self.batch_size]


def _augment(batch, mean, offsets, flips):
  """uint8 [B, H, W, C] -> float32 [B, C, H, W] (channels-last in memory): subtract the
  mean, zero-pad by 4 after it as the paper's Torch code does, crop at `offsets`, flip."""
  batch_size, height, width, _ = batch.shape
  padded = F.pad(batch.float() - mean, (0, 0, CIFAR_PAD, CIFAR_PAD, CIFAR_PAD, CIFAR_PAD))
  rows = offsets[:, :1] + torch.arange(height, device=batch.device)
  columns = offsets[:, 1:] + torch.arange(width, device=batch.device)
  columns = torch.where(flips[:, None], columns.flip(1), columns)
  examples = torch.arange(batch_size, device=batch.device)[:, None, None]
  cropped = padded[examples, rows[:, :, None], columns[:, None, :]]
  return cropped.permute(0, 3, 1, 2)


def time_training(name: str, images: np.ndarray, labels: np.ndarray, batch_size: int,
                  steps: int, precision: str = 'float32', compile: bool = False,
                  device: str | None = None) -> dict:
  """Compile (first step) time, steady-state seconds per step and peak device memory of
  `name`'s training step; `device` defaults to cuda where available, else cpu."""
  device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
  step_fn = TrainStep(create(name, int(labels.max()) + 1), images, labels, batch_size, device,
                      precision, compile)
  if device.type == 'cuda':
    torch.cuda.reset_peak_memory_stats(device)
  started = time.perf_counter()
  for step in range(2):  # torch.compile compiles forward, backward and update on first use.
    step_fn(step)
  step_fn.synchronize()
  first_steps = time.perf_counter() - started
  times = []
  for step in range(2, 2 + steps):
    started = time.perf_counter()
    step_fn(step)
    step_fn.synchronize()
    times.append(time.perf_counter() - started)
  peak = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
  return {'device': _device_name(device), 'first_steps_seconds': first_steps,
          'step_seconds': times, 'peak_bytes': peak}


def learning_rate(step: int, boundaries: tuple[int, ...], base: float = 0.1) -> float:
  """0.1, divided by 10 at each boundary passed (Section 4.2: at 32k and 48k iterations)."""
  return base * 0.1 ** sum(step >= boundary for boundary in boundaries)


def test_error(step_fn: TrainStep, images: np.ndarray, labels: np.ndarray,
               batch_size: int = 1000) -> float:
  """Top-1 error (%) of `step_fn`'s net on `images` (uint8 [N, H, W, C]), BN in eval mode,
  the train set's per-pixel mean subtracted, no augmentation."""
  model, device = step_fn.model.eval(), step_fn.device
  wrong = 0
  with torch.no_grad(), step_fn.autocast:
    for start in range(0, len(images), batch_size):
      batch = torch.as_tensor(images[start:start + batch_size], device=device)
      batch = (batch.float() - step_fn.mean).permute(0, 3, 1, 2)
      predicted = model(batch.contiguous(memory_format=torch.channels_last)).argmax(1)
      wrong += (predicted.cpu().numpy() != labels[start:start + batch_size]).sum()
  model.train()
  return 100.0 * wrong / len(images)


def train(name: str, splits, steps: int, boundaries: tuple[int, ...], output: str,
          eval_every: int = 2000, time_limit: float | None = None, compile: bool = False,
          seed: int = 0) -> dict:
  """Trains `name` on `splits` (resnet_jax.data.ArraySplits) with the paper's recipe, writing
  one JSON line per evaluation to `output` ({step, train_loss, test_error, seconds}); stops
  early, after a last evaluation, when `time_limit` seconds have passed. Returns the last
  line."""
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.manual_seed(seed)
  step_fn = TrainStep(create(name, len(splits.class_names)), splits.train_images,
                      splits.train_labels, 128, device, compile=compile, seed=seed)
  started, record = time.perf_counter(), {}
  with open(output, 'w') as lines:
    for step in range(steps):
      loss = step_fn(step, learning_rate(step, boundaries))
      done = step + 1
      out_of_time = time_limit is not None and time.perf_counter() - started > time_limit
      if done % eval_every and done != steps and not out_of_time:
        continue
      record = {'model': name, 'step': done, 'steps': steps, 'train_loss': float(loss),
                'test_error': test_error(step_fn, splits.eval_images, splits.eval_labels),
                'seconds': time.perf_counter() - started, 'device': _device_name(device),
                'compiled': compile, 'torch': torch.__version__}
      print(json.dumps(record), file=lines, flush=True)
      print(f'{name} (torch) step {done}/{steps}: loss {record["train_loss"]:.3f}, test error '
            f'{record["test_error"]:.2f}%, {record["seconds"]:.0f} s', flush=True)
      if out_of_time:
        break
  return record


def _device_name(device: torch.device) -> str:
  if device.type == 'cuda':
    return torch.cuda.get_device_name(device)
  return f'cpu ({torch.get_num_threads()} threads)'


def main() -> None:
  parser = argparse.ArgumentParser(description='Trains the PyTorch reference of a CIFAR net '
                                   'with the paper\'s recipe (Section 4.2).')
  parser.add_argument('--model', default='resnet20', help='plain<d> or resnet<d>')
  parser.add_argument('--data', required=True,
                      help='the CIFAR-10 class-folder archive (read through resnet_jax.data, '
                      'so the arrays are the ones resnet_jax trains on)')
  parser.add_argument('--output', required=True, help='JSON lines, one per evaluation')
  parser.add_argument('--steps', type=int, default=64_000)
  parser.add_argument('--boundaries', default='32000,48000',
                      help='steps where the learning rate is divided by 10')
  parser.add_argument('--eval-every', type=int, default=2000)
  parser.add_argument('--time-limit', type=float, default=None,
                      help='seconds; then stop after one last evaluation')
  parser.add_argument('--compile', action='store_true', help='torch.compile the step')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  from resnet_jax.data import load_dataset
  splits = load_dataset({'source': 'archive', 'path': args.data})
  boundaries = tuple(int(step) for step in args.boundaries.split(',') if step)
  train(args.model, splits, args.steps, boundaries, args.output, args.eval_every,
        args.time_limit, args.compile, args.seed)


if __name__ == '__main__':
  main()
