"""CT slices from DICOM, on the real CT files pydicom ships: Hounsfield units checked
against the file's own bytes and tags, the window's output, MONOCHROME1, and every file
that is not one CT slice refused with its name."""

import io
import pathlib

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

from tfds_ctscan import dicom

CT_SMALL = pathlib.Path(get_testdata_file("CT_small.dcm"))
# A slice of a real CT series, stored without an extension (as in a DICOMDIR export).
SERIES = CT_SMALL.parent / "dicomdirtests" / "77654033" / "CT2" / "17136"


def _bytes(ds) -> bytes:
  out = io.BytesIO()
  ds.save_as(out, enforce_file_format=True)
  return out.getvalue()


def test_hounsfield_units_are_the_stored_values_rescaled_by_the_files_own_tags():
  ds = pydicom.dcmread(CT_SMALL)
  # By hand: the pixel data's bytes as the tags describe them (16 bits allocated,
  # signed, little endian), times Rescale Slope, plus Rescale Intercept.
  assert (ds.BitsAllocated, ds.PixelRepresentation, ds.SamplesPerPixel) == (16, 1, 1)
  assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
  stored = np.frombuffer(ds.PixelData, "<i2").reshape(ds.Rows, ds.Columns)
  expected = stored.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  hu = dicom.hounsfield(dicom.read_slice(CT_SMALL.read_bytes(), "CT_small.dcm", 10**6), "x")
  assert hu.shape == (128, 128) and hu.dtype == np.float32
  np.testing.assert_array_equal(hu, expected.astype(np.float32))
  assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
  assert hu.min() == stored.min() - 1024 and hu.max() == stored.max() - 1024


def test_the_window_maps_its_edges_to_0_and_255_and_clips_outside():
  lung = dicom.LUNG
  assert (lung.center, lung.width) == (-600.0, 1500.0)
  hu = np.array([-3000, -1350, -600, 150, 3000, -1350 + 1500 / 255], np.float32)
  assert dicom.apply_window(hu, lung).tolist() == [0, 0, 128, 255, 255, 1]
  bone = dicom.Window(center=400, width=1800)
  assert dicom.apply_window(np.array([-500, 1300], np.float32), bone).tolist() == [0, 255]


def test_a_ct_slice_decodes_to_grey_through_the_lung_window():
  image = dicom.decode(CT_SMALL.read_bytes(), CT_SMALL.name)
  ds = pydicom.dcmread(CT_SMALL)
  assert image.shape == (128, 128, 3) and image.dtype == np.uint8
  assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
  hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  # Bone and contrast (above 150 HU) white, and each pixel in between its Hounsfield
  # value's place in the window [-1350, 150].
  assert (image[..., 0][hu >= 150] == 255).all()
  inside = hu < 150
  assert 0.5 < inside.mean() < 0.95  # measured 0.83: most of the slice is soft tissue
  np.testing.assert_array_equal(image[..., 0][inside],
                                np.round((hu[inside] + 1350) / 1500 * 255).astype(np.uint8))


def test_a_slice_exported_without_an_extension_is_recognised_by_content():
  data = SERIES.read_bytes()
  assert SERIES.suffix == "" and dicom.is_dicom(data)
  ds = pydicom.dcmread(SERIES)
  hu = ds.pixel_array.astype(np.float64) - 1024  # its Rescale Slope 1, Intercept -1024
  assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
  window = dicom.Window(center=700, width=1400)  # 0 to 1400 HU: this slice's 77 to 1360
  image = dicom.decode(data, str(SERIES), window)
  assert image.shape == (ds.Rows, ds.Columns, 3)
  np.testing.assert_array_equal(image[..., 0], np.round(hu / 1400 * 255).astype(np.uint8))


def test_monochrome1_is_inverted_after_the_window():
  ds = pydicom.dcmread(CT_SMALL)
  normal = dicom.decode(_bytes(ds), "m2.dcm")
  ds.PhotometricInterpretation = "MONOCHROME1"
  np.testing.assert_array_equal(dicom.decode(_bytes(ds), "m1.dcm"), 255 - normal)


def test_png_bytes_are_not_dicom():
  assert not dicom.is_dicom(b"\x89PNG\r\n\x1a\n" + bytes(200))
  assert not dicom.is_dicom(b"")


def test_a_dicom_of_another_modality_is_refused_with_its_name():
  cr = CT_SMALL.parent / "dicomdirtests" / "77654033" / "CR1" / "6154"
  with pytest.raises(dicom.DicomError, match=r"6154: a DICOM of modality CR, not CT"):
    dicom.decode(cr.read_bytes(), str(cr))
  directory = CT_SMALL.parent / "dicomdirtests" / "DICOMDIR"
  with pytest.raises(dicom.DicomError, match=r"DICOMDIR: a DICOM of modality unknown"):
    dicom.decode(directory.read_bytes(), str(directory))


def test_a_ct_dicom_without_pixels_or_with_several_frames_is_refused():
  ds = pydicom.dcmread(CT_SMALL)
  del ds.PixelData
  with pytest.raises(dicom.DicomError, match=r"^a\.dcm: a DICOM without pixel data"):
    dicom.decode(_bytes(ds), "a.dcm")
  ds = pydicom.dcmread(CT_SMALL)
  ds.NumberOfFrames = 2
  with pytest.raises(dicom.DicomError, match=r"^b\.dcm: a multi-frame DICOM \(2 frames\)"):
    dicom.decode(_bytes(ds), "b.dcm")
  with pytest.raises(dicom.DicomError, match=r"^c\.dcm: 128 x 128 pixels, above the limit"):
    dicom.decode(CT_SMALL.read_bytes(), "c.dcm", max_pixels=100)
  with pytest.raises(dicom.DicomError, match=r"^d\.dcm: a DICOM of modality unknown"):
    dicom.decode(CT_SMALL.read_bytes()[:300], "d.dcm")  # cut short: no tags left


def test_a_compressed_slice_without_its_decoder_names_the_syntax_and_the_package():
  # pydicom's JPEG-LS file, as a CT: no JPEG-LS decoder is installed here (pydicom has
  # none of its own; pylibjpeg-libjpeg or pyjpegls would read it).
  ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
  ds.Modality = "CT"
  with pytest.raises(dicom.DicomError) as refused:
    dicom.decode(_bytes(ds), "ls.dcm")
  assert str(refused.value) == (
      "ls.dcm: pixel data in JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80), "
      "which the installed decoders cannot read: pip install pylibjpeg pylibjpeg-libjpeg "
      "(or pyjpegls)")


def test_a_window_of_no_width_is_refused():
  with pytest.raises(ValueError, match=r"width must be above 0 HU, got 0"):
    dicom.Window(center=-600, width=0)
  with pytest.raises(ValueError, match=r"got -5"):
    dicom.Window(width=-5)


def test_a_class_folder_mixing_dicom_and_png_builds_one_dataset(kaggle_dir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data = kaggle_dir / "Data"
  normal = next(p for p in (data / "train").iterdir() if p.name.startswith("normal"))
  shutil.copy(CT_SMALL, normal / "slice.dcm")
  shutil.copy(SERIES, data / "test" / "normal" / "17136")  # no extension
  builder = tfds.builder("tfds_ctscan/kaggle", data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(kaggle_dir)))
  assert builder.info.splits["train"].num_examples == 16 + 1
  assert builder.info.splits["test"].num_examples == 13 + 1
  found = {}
  for split in ("train", "test"):
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      name = ex["file_name"].decode()
      if name.endswith(("slice.dcm", "/17136")):
        found[name.rsplit("/", 1)[1]] = (ex["image"], ex["label"])
  assert set(found) == {"slice.dcm", "17136"}
  # The dataset holds the windowed slice (lung window), labelled by its folder.
  np.testing.assert_array_equal(found["slice.dcm"][0],
                                dicom.decode(CT_SMALL.read_bytes(), "slice.dcm"))
  normal_label = builder.info.features["label"].str2int("normal")
  assert found["slice.dcm"][1] == found["17136"][1] == normal_label
  assert found["17136"][0].shape == (16, 16, 3)
