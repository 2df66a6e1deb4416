"""The SavedModel a server calls: image bytes decoded in the graph exactly as the builder
decodes files (PIL, the independent reference here), errors that name the batch position,
and TensorFlow Serving's numbered version folders. (The trained run served from a fresh
process, against ctdist.predict: tests/test_cli.py.)"""

import io
import json
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctdist.data import encoded
from ctdist.data import pipeline
from ctdist.model import layers as ctdist_layers
from ctdist.model import litert
from ctdist.model import serving
from ctdist.store import faults
from tfds_ctscan import images

SIZE = 32
NAMES = ["adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"]


def _pil(pixels, mode, fmt="PNG", **kwargs) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels, mode).save(buf, fmt, **kwargs)
  return buf.getvalue()


def png16(pixels: np.ndarray, colour_type: int) -> bytes:
  """A 16-bit PNG written by hand (PIL writes 16-bit grey only): H x W x C uint16."""
  h, w = pixels.shape[:2]
  rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))

  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  return (encoded.PNG_SIGNATURE
          + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _variants() -> dict:
  rng = np.random.default_rng(7)
  u8 = lambda *shape: (rng.random(shape) * 255).astype(np.uint8)
  u16 = lambda *shape: (rng.random(shape) * 65535).astype(np.uint16)
  palette = Image.fromarray(u8(37, 53, 3), "RGB").convert("P")
  buf = io.BytesIO()
  palette.save(buf, "PNG", transparency=3)
  return {
      "png_rgb_8": _pil(u8(37, 53, 3), "RGB"),
      "png_grey_8": _pil(u8(64, 40), "L"),
      "png_rgba_8": _pil(u8(30, 30, 4), "RGBA"),
      "png_grey_alpha_8": _pil_convert(u8(45, 33, 4), "LA"),
      "png_palette_transparent": buf.getvalue(),
      "png_grey_key_transparent": _pil(u8(20, 70), "L", transparency=7),
      "png_1_bit": _pil_convert(u8(33, 33), "1", source_mode="L"),
      "png_grey_16": png16(u16(48, 48, 1), 0),
      "png_rgb_16": png16(u16(41, 29, 3), 2),
      "png_rgba_16": png16(u16(25, 61, 4), 6),
      "jpeg_rgb": _pil(u8(57, 83, 3), "RGB", "JPEG", quality=90),
      "jpeg_grey": _pil(u8(300, 200), "L", "JPEG", quality=75),
      "jpeg_rgb_420": _pil(u8(47, 31, 3), "RGB", "JPEG", quality=60, subsampling=2),
  }


def _pil_convert(pixels, mode, source_mode="RGBA") -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels, source_mode).convert(mode).save(buf, "PNG")
  return buf.getvalue()


VARIANTS = _variants()


def _reference(data: bytes) -> np.ndarray:
  """What ctdist.predict and the builder feed the model: PIL's decode, then the resize."""
  return pipeline.resize(images.decode(data)[0], SIZE).numpy()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_image_bytes_decode_in_the_graph_as_the_builder_decodes_files(name):
  data = VARIANTS[name]
  eager = encoded.batch_to_model_input(tf.constant([data, data]), SIZE).numpy()
  in_dataset = next(iter(tf.data.Dataset.from_tensors(tf.constant([data])).map(
      lambda x: encoded.batch_to_model_input(x, SIZE)))).numpy()
  expected = _reference(data)
  np.testing.assert_array_equal(eager[0], expected)
  np.testing.assert_array_equal(eager[1], expected)
  np.testing.assert_array_equal(in_dataset[0], expected)


def _error(batch: list) -> str:
  with pytest.raises(tf.errors.InvalidArgumentError) as err:
    tf.function(lambda x: encoded.batch_to_model_input(x, SIZE))(tf.constant(batch))
  return err.value.message


def _huge_png() -> bytes:
  """A PNG whose header claims 10,000 x 10,000 pixels (above images.MAX_PIXELS)."""
  good = VARIANTS["png_grey_8"]
  ihdr = b"IHDR" + struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0)
  return (good[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
          + good[33:])


@pytest.mark.parametrize("bad, says", [
    (b"", "empty (0 bytes)"),
    (b"GIF89a not served", "not a PNG (8 or 16 bits) or JPEG file"),
    (VARIANTS["png_rgb_8"][:-20], "truncated"),
    (VARIANTS["jpeg_rgb"][:-30], "truncated"),
    (_huge_png(), "above the limit of 40000000"),
])
def test_a_bad_image_is_an_error_naming_its_position_in_the_batch(bad, says):
  message = _error([VARIANTS["png_rgb_8"], VARIANTS["jpeg_grey"], bad])
  assert says in message
  assert "[image] [2] [of the batch:]" in message


def _tiny_model() -> keras.Model:
  """A ctdist-shaped model (raw pixels in, the labelled softmax out), small enough to
  export in seconds."""
  inputs = keras.Input((SIZE, SIZE, 3))
  x = ctdist_layers.ResNetPreprocess()(inputs)
  x = keras.layers.Conv2D(4, 3, strides=4)(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dense(len(NAMES))(x)
  outputs = ctdist_layers.LabeledSoftmax(NAMES, name=ctdist_layers.OUTPUT_NAME)(x)
  return keras.Model(inputs, outputs)


def test_exports_are_numbered_versions_a_new_one_only_for_a_new_model(tmp_path, monkeypatch):
  base = str(tmp_path / "saved_model")
  model = _tiny_model()
  assert serving.export(model, base) == f"{base}/1"
  assert serving.export(model, base) == f"{base}/1"  # the same weights: no new version
  ctdist_layers.set_temperature(model, 2.0)
  assert serving.export(model, base) == f"{base}/2"
  assert serving.versions(base) == [1, 2] and serving.latest(base) == f"{base}/2"
  record = json.loads((tmp_path / "saved_model" / "2" / serving.RECORD).read_text())
  assert record["temperature"] == 2.0 and record["class_names"] == NAMES
  # The newest version serves the temperature: probabilities of logits / 2.
  pixels = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
  served = tf.saved_model.load(f"{base}/2").signatures[serving.RESIZED_SIGNATURE]
  out = served(pixels=tf.constant(pixels))
  np.testing.assert_allclose(out["probabilities"].numpy(), model(pixels).numpy(), atol=1e-6)
  np.testing.assert_array_equal(out["class_index"].numpy(), model(pixels).numpy().argmax(1))
  assert [n.decode() for n in out["class_name"].numpy()] == [
      NAMES[i] for i in model(pixels).numpy().argmax(1)]
  # An export that dies before its rename leaves no numbered folder a server would load.
  ctdist_layers.set_temperature(model, 3.0)
  monkeypatch.setenv(faults.ENV, "before_rename")
  with pytest.raises(faults.Crash):
    serving.export(model, base)
  assert serving.versions(base) == [1, 2]
  monkeypatch.delenv(faults.ENV)
  assert serving.export(model, base) == f"{base}/3"
  assert not list((tmp_path / "saved_model").glob(".tmp*"))


@pytest.mark.parametrize("quantization", litert.QUANTIZATIONS)
def test_a_litert_file_answers_what_the_model_answers(quantization):
  model = _tiny_model()
  ctdist_layers.set_temperature(model, 0.5)  # a stored temperature goes into the file too
  pixels = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
  expected = model(pixels).numpy()
  assert expected.std(axis=1).min() > 0.01  # not a uniform answer any file would match
  got = litert.Runner(litert.convert(model, quantization))(pixels)
  np.testing.assert_allclose(got, expected, atol=1e-5 if quantization == "float32" else 0.05)
