"""Reading and writing the IDX format of MNIST-style datasets (optionally gzipped).

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the row-major data.
Only unsigned bytes (type 0x08) occur in (Fashion-)MNIST and are supported.
"""

import gzip
import os
import struct

import numpy as np

from harness.errors import UserError

_UBYTE = 0x08


def read_idx(path):
  """Returns the uint8 array stored in an IDX file (`.gz` or plain).

  Raises:
    UserError: the file is missing, not IDX, not uint8, or truncated.
  """
  try:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
      raw = f.read()
  except FileNotFoundError:
    raise UserError(f'{path}: no such file') from None
  except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError.
    raise UserError(f'{path}: cannot be read as {"gzip" if path.endswith(".gz") else "IDX"}: {e}') from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
    raise UserError(f'{path}: not an IDX file (bad magic number)')
  type_code, num_dims = raw[2], raw[3]
  if type_code != _UBYTE:
    raise UserError(f'{path}: IDX type 0x{type_code:02x} is not unsigned byte (0x08)')
  header_size = 4 + 4 * num_dims
  if num_dims == 0 or len(raw) < header_size:
    raise UserError(f'{path}: truncated IDX header')
  dims = struct.unpack(f'>{num_dims}I', raw[4:header_size])
  expected = int(np.prod(dims))
  actual = len(raw) - header_size
  if actual != expected:
    kind = 'truncated' if actual < expected else 'has trailing bytes'
    raise UserError(f'{path}: {kind}: header {list(dims)} needs {expected} bytes of data, found {actual}')
  return np.frombuffer(raw, np.uint8, offset=header_size).reshape(dims)


def write_idx_gz(path, array):
  """Writes a uint8 array as a gzipped IDX file, byte-reproducibly (gzip mtime 0)."""
  array = np.ascontiguousarray(array, np.uint8)
  header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
  with open(path, 'wb') as raw_file:
    with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode='wb', fileobj=raw_file, mtime=0) as f:
      f.write(header + array.tobytes())


def read_image_label_pair(images_path, labels_path):
  """Returns (images [N, rows, cols] uint8, labels [N] uint8) after checking they match."""
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3:
    raise UserError(f'{images_path}: expected 3 dimensions [N, rows, cols], found {list(images.shape)}')
  if labels.ndim != 1:
    raise UserError(f'{labels_path}: expected 1 dimension [N], found {list(labels.shape)}')
  if len(images) != len(labels):
    raise UserError(f'{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels')
  return images, labels
