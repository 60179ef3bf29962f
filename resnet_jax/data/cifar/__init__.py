"""The whole-array input of the CIFAR nets: data sets loaded whole into numpy (TFDS, a
class-folder tree or its archive, synthetic), the validation split and train fractions,
and the on-device augmentation of Section 4.2."""
