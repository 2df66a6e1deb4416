"""Encoded PNG/JPEG bytes -> the model's input, inside a TensorFlow graph (a server has no
Python): the same pixels `tfds_ctscan.images` decodes with PIL, resized as in training.

PNG, 8 or 16 bits, grey, RGB, palette or with alpha; JPEG, grey or RGB. What PIL does is
done here in graph ops: a 16-bit grey PNG keeps value * 255 // 65535, other 16-bit PNGs
their top byte, alpha (grey+alpha, RGBA, a palette with transparency) is composited onto
black, and JPEG uses libjpeg's accurate integer DCT, as PIL does.
"""

import tensorflow as tf

from ctdist.data import pipeline
from tfds_ctscan import images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every whole PNG
JPEG_START = b"\xff\xd8\xff"
JPEG_END = b"\xff\xd9"
# PNG colour types whose transparency PIL composites (tfds_ctscan.images._to_rgb):
# palette (3), grey + alpha (4), RGBA (6). Grey or RGB with a tRNS key stay opaque there.
_PNG_ALPHA_TYPES = (3, 4, 6)
ACCEPTED = "PNG (8 or 16 bits) or JPEG"


def _bytes_at(data: tf.Tensor, pos, n: int) -> tf.Tensor:
  """`n` bytes of `data` from `pos` (clamped into the string) as int32 values."""
  length = tf.strings.length(data)
  pos = tf.clip_by_value(tf.cast(pos, tf.int32), 0, tf.maximum(length - n, 0))
  raw = tf.strings.substr(data, pos, n)
  padded = tf.strings.join([raw, tf.constant(b"\0" * n)])  # a short string still gives n
  values = tf.io.decode_raw(tf.strings.substr(padded, 0, n), tf.uint8)
  return tf.cast(tf.reshape(values, [n]), tf.int32)


def _big_endian(values: tf.Tensor) -> tf.Tensor:
  """4 bytes (int32, most significant first) -> one int64."""
  return tf.reduce_sum(tf.cast(values, tf.int64) * [256**3, 256**2, 256, 1])


def _checked(data: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, list]:
  """(is_png, assertions): the checks that name the image's position in the batch when
  it is empty, not a PNG/JPEG, cut short, or above the pixel limit."""
  length = tf.strings.length(data)
  is_png = tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE)
  is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), JPEG_START)
  where = ["image", position, "of the batch:"]
  empty = tf.debugging.Assert(length > 0, where + ["empty (0 bytes); send the file's bytes"])
  known = tf.debugging.Assert(
      tf.logical_or(length == 0, tf.logical_or(is_png, is_jpeg)),
      where + [f"not a {ACCEPTED} file; convert it to PNG"])
  tail = tf.strings.substr(data, tf.maximum(length - 8, 0), 8)
  jpeg_tail = tf.strings.substr(data, tf.maximum(length - 2, 0), 2)
  whole = tf.debugging.Assert(
      tf.logical_or(tf.logical_and(is_png, tf.equal(tail, PNG_END)),
                    tf.logical_and(is_jpeg, tf.equal(jpeg_tail, JPEG_END)))
      | ~(is_png | is_jpeg),
      where + ["truncated (the file's end marker is missing); send the whole file"])
  with tf.control_dependencies([empty, known, whole]):
    width_height = tf.cond(
        is_png,
        lambda: tf.stack([_big_endian(_bytes_at(data, 16, 4)),
                          _big_endian(_bytes_at(data, 20, 4))]),
        lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64))
  pixels = width_height[0] * width_height[1]
  size = tf.debugging.Assert(
      pixels <= images.MAX_PIXELS,
      where + [pixels, f"pixels is above the limit of {images.MAX_PIXELS} "
               "(decompression-bomb guard); downscale the image"])
  return is_png, [size]


def _png(data: tf.Tensor) -> tf.Tensor:
  """A PNG -> H x W x 3 uint8 as `tfds_ctscan.images.decode` gives it."""
  depth_and_type = _bytes_at(data, 24, 2)
  depth, colour = depth_and_type[0], depth_and_type[1]
  wide = tf.cast(tf.io.decode_png(data, channels=4, dtype=tf.uint16), tf.int32)
  # decode_png scales 8-bit samples to 16 bits (x 257): // 256 gives them back.
  grey16 = tf.logical_and(depth == 16, colour == 0)
  rgb = tf.where(grey16, wide[..., :3] * 255 // 65535, wide[..., :3] // 256)
  composite = tf.reduce_any(tf.equal(colour, _PNG_ALPHA_TYPES))
  alpha = tf.where(composite, wide[..., 3:] // 256, 255)
  # As PIL's path: float32 RGB x (alpha / 255), rounded half to even.
  scaled = tf.cast(rgb, tf.float32) * (tf.cast(alpha, tf.float32) / 255.0)
  return tf.cast(tf.round(scaled), tf.uint8)


def _jpeg(data: tf.Tensor) -> tf.Tensor:
  return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")


def to_model_input(data: tf.Tensor, position: tf.Tensor, image_size: int) -> tf.Tensor:
  """One encoded image (a scalar string) -> image_size x image_size x 3 uint8.

  Args:
    data: the file's bytes.
    position: its index in the request's batch, named by every error.
    image_size: the model's input side.

  Raises:
    tf.errors.InvalidArgumentError (when run): the image is empty, not a PNG or JPEG, cut
      short, above `images.MAX_PIXELS`, or its decoder refuses it.
  """
  is_png, checks = _checked(data, position)
  with tf.control_dependencies(checks):
    pixels = tf.cond(is_png, lambda: _png(data), lambda: _jpeg(data))
  return pipeline.resize(tf.ensure_shape(pixels, [None, None, 3]), image_size)


def batch_to_model_input(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """A [N] string tensor of encoded images -> [N, image_size, image_size, 3] uint8."""
  positions = tf.range(tf.size(encoded, out_type=tf.int32))
  return tf.map_fn(lambda x: to_model_input(x[0], x[1], image_size), (encoded, positions),
                   fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))
