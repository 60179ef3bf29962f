"""python -m resnet_jax.bench COMMAND [FLAGS]:

  train    compile time, step time, images/s, peak memory and 64k-step time of the full
           training step (optionally beside the PyTorch reference: --torch; K seeds as one
           program against K processes: --num-replicas K --mesh-replica R); each step rate
           is kept for the estimates of `python -m resnet_jax.reproduce`'s plan
  compile  compile time of the train step per depth, blocks unrolled vs scanned
  data     images/s of the image decoder and its cache
  aot      compiled, not run: the programs of --config for --target (a TPU topology or a GPU,
           no device needed): compile time, memory per device (fits or not), flops, kernels
           and a floor for a step and for the run (bench/aot.py)
"""
import sys

COMMANDS = ('train', 'compile', 'data', 'aot')


def main(argv: list[str]) -> None:
  if argv[:1] in (['-h'], ['--help']):
    print(__doc__ + '\nEach command takes --help for its flags.')
    return
  if not argv or argv[0] not in COMMANDS:
    print(__doc__ + f'\nGot {argv[:1] or "no command"}; use one of {", ".join(COMMANDS)}.',
          file=sys.stderr)
    sys.exit(2)
  command, flags = argv[0], argv[1:]
  if command == 'data':
    from resnet_jax.bench import data
    data.main(flags)
  elif command == 'aot':
    from resnet_jax.bench import aot
    aot.main(flags)
  else:
    from resnet_jax.bench import train_step
    (train_step.main if command == 'train' else train_step.compile_main)(flags)


if __name__ == '__main__':
  main(sys.argv[1:])
