"""The nets of the paper: sizes, FLOPs, shapes and the details Section 3 and 4 fix."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax import models
from resnet_jax.models import layers
from resnet_jax.models.complexity import count_multiply_adds, count_parameters

# Table 6 (to the paper's rounding) and the well-known option-B ImageNet totals.
CIFAR_PARAMS_M = {'resnet20': (0.27, 2), 'resnet32': (0.46, 2), 'resnet44': (0.66, 2),
                  'resnet56': (0.85, 2), 'resnet110': (1.7, 1), 'resnet1202': (19.4, 1)}
IMAGENET_PARAMS_M = {'resnet18': 11.7, 'resnet34': 21.8, 'resnet50': 25.6, 'resnet101': 44.5,
                     'resnet152': 60.2}
TABLE1_GFLOPS = {'resnet18': 1.8, 'resnet34': 3.6, 'resnet50': 3.8, 'resnet101': 7.6,
                 'resnet152': 11.3}


def abstract_variables(model, image_shape, batch=1):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch,) + image_shape)))


def init(model, image_shape=(32, 32, 3), seed=0):
  return model.init(jax.random.key(seed), jnp.zeros((2,) + image_shape))


@pytest.mark.parametrize('name', sorted(CIFAR_PARAMS_M))
def test_cifar_parameter_counts_match_table6(name):
  expected, digits = CIFAR_PARAMS_M[name]
  variables = abstract_variables(models.create(name, scan_blocks=True), (32, 32, 3))
  assert round(count_parameters(variables['params']) / 1e6, digits) == expected


@pytest.mark.parametrize('name', sorted(IMAGENET_PARAMS_M))
def test_imagenet_parameter_counts_match_known_totals(name):
  variables = abstract_variables(models.create(name, scan_blocks=True), (224, 224, 3))
  assert round(count_parameters(variables['params']) / 1e6, 1) == IMAGENET_PARAMS_M[name]


@pytest.mark.parametrize('name', sorted(TABLE1_GFLOPS))
def test_multiply_adds_match_table1(name):
  macs = count_multiply_adds(models.create(name, scan_blocks=True), (224, 224, 3))
  assert macs / 1e9 == pytest.approx(TABLE1_GFLOPS[name], rel=0.03)


def test_bottleneck_stride_sits_in_first_1x1_conv():
  # v1 puts the stride in the first 1x1 conv: 3.86 GFLOPs; v1.5 (stride in the 3x3) has 4.1.
  macs = count_multiply_adds(models.create('resnet50'), (224, 224, 3))
  assert macs / 1e9 < 3.9


@pytest.mark.parametrize('name', models.names())
def test_every_registry_name_gives_logits_of_the_right_shape(name):
  spec = models.parse(name)
  model = models.create(name, scan_blocks=True)
  variables = abstract_variables(model, spec.image_shape)
  logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2,) + spec.image_shape)), variables)
  assert logits.shape == (2, spec.default_num_classes)
  assert logits.dtype == jnp.float32
  assert set(variables) == {'params', 'batch_stats'}


def test_bfloat16_computes_in_bfloat16_with_float32_params():
  model = models.create('resnet8', dtype='bfloat16')
  variables = init(model)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
  logits, state = model.apply(variables, jnp.ones((2, 32, 32, 3)), capture_intermediates=True,
                              mutable=['intermediates'])
  block_output = state['intermediates']['stage1_block0']['__call__'][0]
  assert block_output.dtype == jnp.bfloat16
  assert logits.dtype == jnp.float32


@pytest.mark.parametrize('depth', [20, 56, 18, 34])
def test_plain_and_residual_option_a_nets_have_identical_parameter_trees(depth):
  shape = models.parse(f'resnet{depth}').image_shape
  plain = abstract_variables(models.create(f'plain{depth}', shortcut='A'), shape)
  residual = abstract_variables(models.create(f'resnet{depth}', shortcut='A'), shape)
  assert jax.tree.map(lambda x: x.shape, plain) == jax.tree.map(lambda x: x.shape, residual)


def test_option_b_adds_projections_only_where_shapes_change():
  a = abstract_variables(models.create('resnet20', shortcut='A'), (32, 32, 3))['params']
  b = abstract_variables(models.create('resnet20', shortcut='B'), (32, 32, 3))['params']
  c = abstract_variables(models.create('resnet20', shortcut='C'), (32, 32, 3))['params']
  projected = lambda params: sorted(k for k, v in params.items() if 'Shortcut_0' in v)
  assert projected(a) == []
  assert projected(b) == ['stage2_block0', 'stage3_block0']
  assert len(projected(c)) == 9
  assert count_parameters(a) < count_parameters(b) < count_parameters(c)


def test_stride2_conv_pads_one_pixel_on_every_side():
  # With a kernel that reads only its top-left tap, output (0, 0) reads the padding
  # under symmetric padding, but image pixel (0, 0) under XLA's 'SAME' (pads 0 before).
  conv = layers.conv(1, 3, stride=2)
  image = jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)
  kernel = jnp.zeros((3, 3, 1, 1)).at[0, 0].set(1.0)
  out = conv.apply({'params': {'kernel': kernel}}, image)
  np.testing.assert_array_equal(out[0, :, :, 0], [[0.0, 0.0], [0.0, image[0, 1, 1, 0]]])


@pytest.mark.parametrize('name', ['resnet20', 'resnet50'])
def test_every_conv_of_a_net_pads_symmetrically(name):
  paddings = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, flax.linen.Conv):
      paddings.append((context.module.kernel_size, context.module.padding))
    return next_fun(*args, **kwargs)

  with flax.linen.intercept_methods(record):
    abstract_variables(models.create(name), models.parse(name).image_shape)
  assert paddings
  for kernel, padding in paddings:
    assert padding == tuple((k // 2, k // 2) for k in kernel)


def zero_residual_branches(variables):
  """Zeroes the last BN of every block: the residual function becomes F(x) = 0."""
  def zero(path, leaf):
    names = [getattr(p, 'key', '') for p in path]
    last_bn = any(n in ('bn2',) for n in names) and 'block' in ''.join(names)
    return jnp.zeros_like(leaf) if last_bn and names[0] == 'params' else leaf
  return jax.tree_util.tree_map_with_path(zero, variables)


def option_a(x, features, stride):
  x = x[:, ::stride, ::stride, :]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


def test_zeroed_residual_branches_make_every_block_an_identity():
  model = models.create('resnet20')
  variables = zero_residual_branches(init(model))
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  _, state = model.apply(variables, images, capture_intermediates=True, mutable=['intermediates'])
  outputs = state['intermediates']
  previous = outputs['stem_bn']['__call__'][0]
  previous = jax.nn.relu(previous)
  for stage, width in enumerate((16, 32, 64)):
    for block in range(3):
      stride = 2 if stage and not block else 1
      out = outputs[f'stage{stage + 1}_block{block}']['__call__'][0]
      np.testing.assert_allclose(out, option_a(previous, width, stride), atol=1e-6)
      previous = out


def test_plain_net_with_zeroed_branches_outputs_zeros():
  model = models.create('plain20')
  variables = zero_residual_branches(init(model))
  _, state = model.apply(variables, jnp.ones((2, 32, 32, 3)), capture_intermediates=True,
                         mutable=['intermediates'])
  assert not np.any(state['intermediates']['stage3_block2']['__call__'][0])


@pytest.mark.parametrize('name, expected', [
    ('resnet-56', 'resnet56'), ('ResNet110', 'resnet110'), ('plain_20', 'plain20')])
def test_registry_accepts_common_spellings(name, expected):
  assert models.parse(name).depth == models.parse(expected).depth


@pytest.mark.parametrize('name, message', [
    ('resnet51', r'depth must be 6n\+2 .* got 51\. Did you mean .*resnet50'),
    ('resnet57', 'Did you mean resnet56'),
    ('resnet', 'Valid names: plain20'),
    ('vgg16', "Unknown model 'vgg16'"),
    ('resnt56', 'Did you mean resnet56'),
])
def test_registry_rejects_unknown_names_with_the_valid_ones(name, message):
  with pytest.raises(ValueError, match=message):
    models.create(name)


def test_cifar_depth_of_an_imagenet_net_suggests_the_imagenet_family():
  from resnet_jax.models.cifar import CifarNet
  with pytest.raises(ValueError, match='did you mean an ImageNet net like resnet18'):
    init(CifarNet(depth=18))


def test_he_init_has_fan_out_variance():
  params = init(models.create('resnet56'))['params']
  kernel = params['stage3_block4']['Conv_1']['kernel']  # 3x3x64x64
  assert np.std(kernel) == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.05)
  assert not any('bias' in conv for block in params.values() for conv in
                 (block if isinstance(block, dict) else {}) if conv.startswith('Conv'))


@pytest.mark.parametrize('name', ['resnet14', 'plain14'])
def test_scanned_and_unrolled_blocks_agree_in_outputs_and_gradients(name):
  shape = (32, 32, 3)
  scanned = models.create(name, scan_blocks=True)
  unrolled = models.create(name)
  variables = init(scanned, shape)
  unrolled_variables = models.unroll_scanned(flax.core.unfreeze(variables))
  assert (jax.tree.map(np.shape, unrolled_variables)
          == jax.tree.map(np.shape, init(unrolled, shape)))
  images = jax.random.normal(jax.random.key(2), (4,) + shape)

  def loss(model, params, batch_stats):
    logits, _ = model.apply({'params': params, 'batch_stats': batch_stats}, images, train=True,
                            mutable=['batch_stats'])
    return jnp.sum(logits ** 2)

  value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
  value_s, grads_s = value_and_grad(scanned, variables['params'], variables['batch_stats'])
  value_u, grads_u = value_and_grad(unrolled, unrolled_variables['params'],
                                    unrolled_variables['batch_stats'])
  np.testing.assert_allclose(value_s, value_u, rtol=1e-5)
  # Summation order differs between the two programs: compare at float32 precision of
  # each tensor's scale.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max()),
               models.unroll_scanned(flax.core.unfreeze(grads_s)), grads_u)


def test_grouped_batchnorm_normalizes_each_group_on_its_own():
  x = jax.random.normal(jax.random.key(3), (8, 4, 4, 3)) * jnp.arange(1.0, 9.0)[:, None, None, None]
  grouped = layers.BatchNorm(use_running_average=False, group_size=4)
  whole = layers.BatchNorm(use_running_average=False)
  variables = grouped.init(jax.random.key(0), x)
  out, _ = grouped.apply(variables, x, mutable=['batch_stats'])
  halves = [whole.apply(variables, half, mutable=['batch_stats'])[0] for half in (x[:4], x[4:])]
  np.testing.assert_allclose(out, jnp.concatenate(halves), atol=1e-5)
  global_out, _ = whole.apply(variables, x, mutable=['batch_stats'])
  assert not np.allclose(out, global_out, atol=1e-3)


def test_batchnorm_running_statistics_follow_torch():
  x = jax.random.normal(jax.random.key(4), (6, 2, 2, 3)) * 2.0 + 1.0
  norm = layers.BatchNorm(use_running_average=False)
  variables = norm.init(jax.random.key(0), x)
  _, updates = norm.apply(variables, x, mutable=['batch_stats'])
  flat = np.asarray(x).reshape(-1, 3)
  np.testing.assert_allclose(updates['batch_stats']['mean'], 0.1 * flat.mean(0), rtol=1e-5)
  np.testing.assert_allclose(updates['batch_stats']['var'], 0.9 + 0.1 * flat.var(0, ddof=1),
                             rtol=1e-5)
