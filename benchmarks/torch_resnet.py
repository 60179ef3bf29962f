"""A PyTorch reference of the CIFAR nets of Section 4.2 and of their whole training step,
timed beside resnet_jax's by `python -m resnet_jax.bench train --torch`.

It follows resnet_jax's recipe: 3x3 convs padded 1 on every side, BN (momentum 0.1,
eps 1e-5) after every conv and before the ReLU, option-A shortcuts, He (fan-out) init,
SGD momentum 0.9 with weight decay 1e-4 on every parameter; the uint8 data set sits on the
device and each batch is gathered, mean-subtracted, pad-4 cropped and flipped there.
Convs run channels-last; `precision='bfloat16'` runs under autocast with float32 weights.
"""
import collections
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

  def __call__(self, step: int) -> torch.Tensor:
    """Runs training step `step` and returns its loss (a device tensor)."""
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


def _device_name(device: torch.device) -> str:
  if device.type == 'cuda':
    return torch.cuda.get_device_name(device)
  return f'cpu ({torch.get_num_threads()} threads)'
