"""Figures 6 and 7 of the paper (Figure 4 for ImageNet nets) for the runs of a study, as
matplotlib Figures.

Figures are built with matplotlib's object API, not pyplot: no display or GUI backend is
needed, `figure.savefig(path)` writes them headless, and a notebook shows them inline.
"""
import pandas as pd

from resnet_jax.analysis.paper import CIFAR_TABLE6, PaperResults

FAMILY_TITLES = {'plain': 'plain', 'resnet': 'ResNet'}  # Legend names, as in the paper: ResNet-56.
PANEL_TITLES = {'plain': 'plain nets', 'resnet': 'ResNets'}


def figure6(runs: pd.DataFrame, paper: PaperResults = CIFAR_TABLE6):
  """Figure 6 (or `paper.figure`, Figure 4 for ImageNet nets): error (%) vs iterations of the
  runs in `runs` (as from load_study); dashed: training error, bold: eval (test or validation)
  error; plain nets left, ResNets right, on the same axes, one colour per depth. Seeds of a net
  are averaged."""
  from matplotlib.figure import Figure
  figure = Figure(figsize=(11, 4.5), layout='constrained')
  axes = figure.subplots(1, 2, sharex=True, sharey=True)
  colours = _depth_colours(runs.depth)
  curves = runs.groupby(['family', 'depth', 'split', 'step'], as_index=False).error.mean()
  eval_splits = sorted(set(runs.split) - {'train'})
  for ax, (family, title) in zip(axes, FAMILY_TITLES.items()):
    _plot_curves(ax, curves[curves.family == family], colours, title, PANEL_TITLES[family])
  figure.suptitle(f'{paper.figure}: dashed = training error, bold = {"/".join(eval_splits)} '
                  'error')
  return figure


def figure6_right(runs: pd.DataFrame, depths: tuple[int, ...]):
  """Figure 6's right panel: error (%) vs iterations of the ResNets of `depths` in `runs` (as
  from load_study; ResNet-110 and ResNet-1202 in the paper); dashed: training error, bold:
  eval error. Seeds of a net are averaged."""
  from matplotlib.figure import Figure
  figure = Figure(figsize=(6, 4.5), layout='constrained')
  ax = figure.subplots()
  nets = runs[(runs.family == 'resnet') & runs.depth.isin(depths)]
  curves = nets.groupby(['depth', 'split', 'step'], as_index=False).error.mean()
  _plot_curves(ax, curves, _depth_colours(nets.depth), FAMILY_TITLES['resnet'],
               f'ResNets of {" and ".join(map(str, sorted(set(nets.depth))))} layers')
  eval_splits = sorted(set(nets.split) - {'train'})
  figure.suptitle(f'Figure 6, right: dashed = training error, bold = {"/".join(eval_splits)} '
                  'error')
  return figure


def _plot_curves(ax, curves: pd.DataFrame, colours: dict, title: str, panel_title: str):
  """One panel: a dashed training curve and a bold eval curve per depth of `curves`; an eval
  curve of one point is a large marker whose legend entry names its step."""
  for (depth, split), curve in curves.groupby(['depth', 'split']):
    is_train, one_point = split == 'train', len(curve) == 1
    label = f'{title}-{depth}' + (f' (one point, step {curve.step.iloc[0]:,})' if one_point else '')
    ax.plot(curve.step, 100 * curve.error, color=colours[depth],
            linestyle='--' if is_train else '-', linewidth=1 if is_train else 2.5,
            marker='o' if one_point else None, markersize=4 if is_train else 9,
            clip_on=False, label=None if is_train else label)
  ax.set(title=panel_title, xlabel='iterations', ylabel='error (%)')
  ax.grid(alpha=0.3)
  if ax.lines:
    ax.legend()


def figure7(responses: pd.DataFrame):
  """Figure 7: the std of each layer's response (rows of `responses`: model, family, depth,
  seed, layer, std), by layer index (top) and sorted by magnitude (bottom); one colour per
  depth, ResNets solid, plain nets dashed. Seeds of a net are averaged."""
  from matplotlib.figure import Figure
  figure = Figure(figsize=(8, 7), layout='constrained')
  original, by_magnitude = figure.subplots(2, 1)
  colours = _depth_colours(responses.depth)
  stds = responses.groupby(['family', 'depth', 'layer'], as_index=False)['std'].mean()
  for (family, depth), net in stds.groupby(['family', 'depth']):
    style = dict(color=colours[depth], linestyle='-' if family == 'resnet' else '--',
                 label=f'{FAMILY_TITLES[family]}-{depth}')
    net = net.sort_values('layer')
    original.plot(net.layer, net['std'], **style)
    by_magnitude.plot(range(1, len(net) + 1), net['std'].sort_values(ascending=False), **style)
  original.set(xlabel='layer index (original)', ylabel='std')
  by_magnitude.set(xlabel='layer index (sorted by magnitude)', ylabel='std')
  for ax in (original, by_magnitude):
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend()
  figure.suptitle('Figure 7: std of the layer responses (after BN, before ReLU/addition)')
  return figure


def _depth_colours(depths: pd.Series) -> dict:
  return {depth: f'C{index}' for index, depth in enumerate(sorted(set(depths)))}
