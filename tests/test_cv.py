"""ctdist.cv as a user runs it (subprocesses, --deterministic): grouped folds, the held-out
fold never reaching training, --fold=i + aggregate equal to the sequential run."""

import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_ctscan import synthetic
from ctdist.data import examples
from ctdist.scoring import baseline
from ctdist.model import layers  # noqa: F401  registers ctdist's layers for load_model
from launch import local_cluster
import forked
import once
import pages

ROOT = pathlib.Path(__file__).resolve().parents[1]
COUNTS = {
    "train": {"adenocarcinoma": 5, "large_cell_carcinoma": 5, "normal": 6,
              "squamous_cell_carcinoma": 5},
    "valid": {"adenocarcinoma": 1, "large_cell_carcinoma": 1, "normal": 1,
              "squamous_cell_carcinoma": 1},
    "test": {"adenocarcinoma": 2, "large_cell_carcinoma": 2, "normal": 3,
             "squamous_cell_carcinoma": 2},
}
FLAGS = ["--dataset=tfds_ctscan/kaggle", "--weights=none", "--image_size=32", "--batch_size=4",
         "--head_epochs=0", "--finetune_epochs=1", "--finetune_layers=5", "--noexport",
         "--deterministic", "--folds=2", "--repeats=2", "--inner_parts=2", "--seed=5"]
FOLDS = ["repeat0_fold0", "repeat0_fold1", "repeat1_fold0", "repeat1_fold1"]  # 2 x 2


def _build(manual: pathlib.Path, data_dir: pathlib.Path) -> None:
  tfds.builder("tfds_ctscan/kaggle", data_dir=str(data_dir)).download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


def _cv(*args, timeout=900):
  return forked.run("ctdist.cv", *args, timeout=timeout)


def _worker(index: int, ports: list[int], log: pathlib.Path, *args) -> subprocess.Popen:
  """ctdist.cv as worker `index` of a cluster on `ports` of this machine."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="",
             TF_CONFIG=local_cluster.tf_config(ports, index))
  with open(log, "w") as out:
    return subprocess.Popen([sys.executable, "-m", "ctdist.cv", *map(str, args)], cwd=ROOT,
                            env=env, stdout=out, stderr=subprocess.STDOUT)


def _pixels_digest(path: pathlib.Path) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return hashlib.sha1(np.asarray(Image.open(path).convert("RGB")).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def cv_data(tmp_path_factory):
  """A Kaggle folder whose pool (train + valid) holds copies: a training image again in
  valid (another name), and another twice in train (shared by the workers: read only)."""
  def build(root):
    data = synthetic.write_kaggle_layout(root / "manual", seed=11, counts=COUNTS,
                                         size_range=(40, 56))
    normal = sorted((data / "train").glob("normal*/*"))
    shutil.copy(normal[0], data / "valid" / normal[0].parent.name / "copy_a.png")
    adeno = sorted((data / "train").glob("adenocarcinoma*/*"))
    shutil.copy(adeno[0], adeno[0].parent / "copy_b.png")
    _build(root / "manual", root / "tfds")
  return once.shared(tmp_path_factory, "cv_data", build)


@pytest.fixture(scope="module")
def sequential(cv_data, tmp_path_factory):
  """The sequential cv run (built once, shared by the workers: read only) and its
  terminal (stdout, stderr)."""
  def build(root):
    done = _cv(f"--data_dir={cv_data / 'tfds'}", f"--model_dir={root / 'seq'}", *FLAGS)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "stdout").write_text(done.stdout)
    (root / "stderr").write_text(done.stderr)
  root = once.shared(tmp_path_factory, "cv_sequential", build)
  return root / "seq", subprocess.CompletedProcess(
      [], 0, (root / "stdout").read_text(), (root / "stderr").read_text())


@pytest.mark.slow
def test_sequential_cv_keeps_copies_in_one_fold_and_writes_every_output(cv_data, sequential):
  out, done = sequential
  plan = json.loads((out / "folds.json").read_text())
  manual = cv_data / "manual" / "Data"
  on_disk = sorted(p.relative_to(manual).as_posix() for split in ("train", "valid")
                   for p in (manual / split).glob("*/*"))
  assert sorted(plan["files"]) == on_disk  # the pool is train + valid, every file
  # Copies found independently (same decoded pixels on disk) share a fold, in each repeat.
  by_digest = {}
  for name in on_disk:
    by_digest.setdefault(_pixels_digest(manual / name), []).append(name)
  copies = [names for names in by_digest.values() if len(names) > 1]
  assert len(copies) >= 2
  assert plan["repeats"] == 2 and len(plan["fold_of"]) == 2
  assert plan["fold_of"][0] != plan["fold_of"][1]  # a repeat draws other folds
  summary = json.loads((out / "cv_summary.json").read_text())
  assert [f["fold"] for f in summary["per_fold"]] == FOLDS
  for r in range(2):
    fold_of = dict(zip(plan["files"], plan["fold_of"][r]))
    for names in copies:
      assert len({fold_of[n] for n in names}) == 1, names
    held_out = []
    for k in range(2):
      fold = out / f"repeat{r}_fold{k}"
      subsets = json.loads((fold / "subset.json").read_text())
      trained = set(subsets["train"]["files"]) | set(subsets["valid"]["files"])
      held = {n for n, f in fold_of.items() if f == k}
      assert not trained & held and trained | held == set(on_disk)
      heldout = json.loads((fold / "predictions_heldout.json").read_text())
      assert sorted(e["file_name"] for e in heldout["examples"]) == sorted(held)
      held_out += [e["file_name"] for e in heldout["examples"]]
    assert sorted(held_out) == on_disk  # every pool image predicted once a repeat
    # Out-of-fold: every pool image, once per repeat; intervals resample copies together.
    assert summary["out_of_fold"][r]["all"]["num_examples"] == len(on_disk)
    oof = json.loads((out / f"predictions_out_of_fold_repeat{r}.json").read_text())["examples"]
    assert sorted(e["file_name"] for e in oof) == on_disk
    group_of = {e["file_name"]: e["group"] for e in oof}
    assert len(set(group_of.values())) == len(by_digest)
    for names in copies:
      assert len({group_of[n] for n in names}) == 1, names
  assert len(summary["out_of_fold"]) == 2 and "out-of-fold (repeat 1, " in done.stdout
  # Out of fold against the trivial baselines, each fold's fitted on its training part
  # only. The majority baseline's hits, counted here from the folds' files and labels.
  label_of = dict(zip(plan["files"], plan["labels"]))
  for r in range(2):
    hits = 0
    for k in range(2):
      fold = out / f"repeat{r}_fold{k}"
      fit = json.loads((fold / "subset.json").read_text())["train"]["files"]
      majority = np.bincount([label_of[n] for n in fit]).argmax()  # lowest label on a tie
      held = json.loads((fold / "predictions_heldout.json").read_text())["examples"]
      hits += sum(label_of[e["file_name"]] == majority for e in held)
    against = summary["baseline"][r]["baselines"]
    assert against[baseline.MAJORITY]["all"]["accuracy"]["b"] == hits / len(on_disk)
    assert against[baseline.PIXEL]["all"]["num_examples"] == len(on_disk)
    assert summary["baseline"][r]["sentence"] in done.stdout
  # The ensemble is the mean of the four fold models' test probabilities.
  tests = [json.loads((out / f / "predictions_test.json").read_text()) for f in FOLDS]
  by_file = [{e["file_name"]: e["probabilities"] for e in t["examples"]} for t in tests]
  ensemble = json.loads((out / "predictions_test_ensemble.json").read_text())
  assert len(ensemble["examples"]) == 9
  for e in ensemble["examples"]:
    np.testing.assert_allclose(e["probabilities"],
                               np.mean([b[e["file_name"]] for b in by_file], axis=0), atol=1e-7)
  assert "ensemble of 4 fold models on test: accuracy" in done.stdout
  # The cv report: every section; one figure per image the ensemble got wrong.
  page = pages.check_self_contained((out / "report.html").read_text())
  assert page.figures == sum(
      1 for e in ensemble["examples"] if int(np.argmax(e["probabilities"])) != e["label"])
  assert all((out / f / "report.html").exists() for f in FOLDS)
  assert html.escape(summary["baseline"][1]["sentence"]) in (out / "report.html").read_text()
  # Each fold validated on its own inner part, not on the dataset's valid split.
  for f in FOLDS:
    inner = json.loads((out / f / "subset.json").read_text())["valid"]["files"]
    assert f"{f}_valid input: one pipeline" in done.stderr
    assert f"{-(-len(inner) // 4)} validation steps" in done.stderr  # batch 4


@pytest.mark.slow
def test_fold_by_fold_then_aggregate_reproduces_the_sequential_run(cv_data, sequential,
                                                                  tmp_path):
  seq, _ = sequential
  out = tmp_path / "jobs"
  # The last fold (--fold=3: repeat 1's second) runs as a job of its own, in a folder
  # it starts (folds.json too); the other three are the sequential run's folders, as
  # other machines' jobs would bring them (training them again here would repeat it; a
  # --fold=0 job's weights equal the sequential fold's: test_poisoned_... below).
  done = _cv(f"--data_dir={cv_data / 'tfds'}", f"--model_dir={out}", "--fold=3", *FLAGS)
  assert done.returncode == 0, done.stderr[-3000:]
  early = _cv("aggregate", out)
  assert early.returncode == 2
  assert early.stderr.strip().splitlines()[-1] == (
      f"error: 3 of 4 folds are not finished in {out}: repeat0_fold0 (--fold=0), "
      "repeat0_fold1 (--fold=1), repeat1_fold0 (--fold=2); run them (python -m "
      "ctdist.cv ... --fold=i) and aggregate again; nothing is averaged over missing "
      "folds")
  assert json.loads((out / "folds.json").read_text()) == json.loads(
      (seq / "folds.json").read_text())
  for fold in ("repeat0_fold0", "repeat0_fold1", "repeat1_fold0"):
    shutil.copytree(seq / fold, out / fold)
  a, b = (json.loads((d / "repeat1_fold1" / "predictions_heldout.json").read_text())[
      "examples"] for d in (seq, out))
  assert a == b  # the job's own fold
  done = _cv("aggregate", out)
  assert done.returncode == 0, done.stderr[-3000:]
  a, b = (json.loads((d / "cv_summary.json").read_text()) for d in (seq, out))
  assert a["per_fold"] == b["per_fold"] and a["ensemble"] == b["ensemble"]
  assert a["out_of_fold"] == b["out_of_fold"]
  # Re-running skips finished folds.
  again = _cv(f"--data_dir={cv_data / 'tfds'}", f"--model_dir={out}", *FLAGS)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("done, skipped") == 4
  other = _cv(f"--data_dir={cv_data / 'tfds'}", f"--model_dir={out}", *FLAGS, "--folds=4")
  assert other.returncode == 2
  assert other.stderr.strip().splitlines()[-1] == (
      f"error: {out} holds a cross-validation with other folds: --folds=2 -> 4; use its "
      "flags or another --model_dir")


@pytest.mark.slow
def test_poisoned_held_out_labels_leave_the_trained_weights_unchanged(cv_data, sequential,
                                                                     tmp_path):
  # Fold 0's held-out training images are moved to another class folder: their labels
  # change (and so their names). A fold that used them anywhere - training, early
  # stopping, class weights - would train other weights.
  seq, _ = sequential
  plan = json.loads((seq / "folds.json").read_text())
  held = [n for n, f in zip(plan["files"], plan["fold_of"][0]) if f == 0]
  poisoned = tmp_path / "manual"
  shutil.copytree(cv_data / "manual", poisoned)
  renamed = {}
  for name in held:
    split, folder, file = name.split("/")
    other = next(p.name for p in sorted((poisoned / "Data" / split).iterdir())
                 if p.name != folder)
    (poisoned / "Data" / split / other).mkdir(exist_ok=True)
    new = f"{split}/{other}/{folder}_{file}"  # unique: two folders may hold a 0003.png
    os.rename(poisoned / "Data" / name, poisoned / "Data" / new)
    renamed[name] = new
  _build(poisoned, tmp_path / "tfds")
  out = tmp_path / "cv"
  out.mkdir()
  plan["files"] = [renamed.get(n, n) for n in plan["files"]]  # the same folds...
  # ...with the labels the data now holds (a re-run checks them).
  names, labels = examples.file_names_and_labels(
      tfds.builder("tfds_ctscan/kaggle", data_dir=str(tmp_path / "tfds")), "train+valid")
  now = dict(zip(names.tolist(), labels.tolist()))
  assert sum(now[n] != was for n, was in zip(plan["files"], plan["labels"])) == len(held)
  plan["labels"] = [now[n] for n in plan["files"]]
  (out / "folds.json").write_text(json.dumps(plan))
  done = _cv(f"--data_dir={tmp_path / 'tfds'}", f"--model_dir={out}", "--fold=0", *FLAGS,
             "--nobaseline", "--noreport")  # only the weights are compared
  assert done.returncode == 0, done.stderr[-3000:]
  heldout = json.loads((out / "repeat0_fold0" / "predictions_heldout.json").read_text())
  true = {e["file_name"]: e["label"] for e in json.loads(
      (seq / "repeat0_fold0" / "predictions_heldout.json").read_text())["examples"]}
  assert all(e["label"] != true[next(k for k, v in renamed.items() if v == e["file_name"])]
             for e in heldout["examples"])  # the poison reached the held-out part
  clean = keras.saving.load_model(seq / "repeat0_fold0" / "model.keras").get_weights()
  dirty = keras.saving.load_model(out / "repeat0_fold0" / "model.keras").get_weights()
  assert len(clean) == len(dirty)
  for a, b in zip(clean, dirty):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_folds_json_whose_labels_differ_from_the_data_is_refused(cv_data, sequential,
                                                                 tmp_path):
  seq, _ = sequential
  plan = json.loads((seq / "folds.json").read_text())
  changed = plan["files"][2]
  plan["labels"][2] = (plan["labels"][2] + 1) % 4  # the same files, one label other
  out = tmp_path / "cv"
  out.mkdir()
  (out / "folds.json").write_text(json.dumps(plan))
  done = _cv(f"--data_dir={cv_data / 'tfds'}", f"--model_dir={out}", "--fold=0", *FLAGS)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      f"error: {out / 'folds.json'} gives 1 file another label than "
      f"tfds_ctscan/kaggle/")
  assert changed in done.stderr
  assert sorted(p.name for p in out.iterdir()) == ["folds.json"]  # nothing trained


@pytest.mark.slow
def test_two_workers_run_every_fold_in_one_process_each(cv_data, tmp_path):
  # A MultiWorkerMirroredStrategy must exist before any other TensorFlow op, and once in
  # a process: ctdist.cv makes it first and every fold trains with it (a strategy made
  # per fold stopped fold 0: "Collective ops must be configured at program startup").
  # The chief alone writes folds.json, scores the held-out parts and aggregates.
  out, ports = tmp_path / "cv", local_cluster.free_ports(2)
  flags = [f"--data_dir={cv_data / 'tfds'}", f"--model_dir={out}", "--strategy=multi_worker",
           *FLAGS, "--repeats=1", "--nobaseline", "--noreport"]
  workers = [_worker(i, ports, tmp_path / f"worker{i}.log", *flags) for i in range(2)]
  deadline = time.monotonic() + 900
  try:  # until both end, one fails (the other would wait in its collectives) or time is up
    while (None in [w.poll() for w in workers] and time.monotonic() < deadline
           and not any(w.poll() for w in workers)):
      time.sleep(1)
  finally:
    for w in workers:
      w.kill()
  statuses = [w.wait() for w in workers]
  logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
  assert statuses == [0, 0], "\n".join(log[-3000:] for log in logs)
  for log in logs:
    assert "Traceback" not in log and not re.search(r"^error:", log, re.M), log[-3000:]
  # The chief's line, once per fold; worker-1 read its own half of each fold's training
  # part (from the subset.json the chief wrote).
  assert logs[0].count("strategy CollectiveAllReduceStrategy: 2 replica(s), 2 worker(s)") == 2
  assert len(re.findall(r"^worker-1: train input shard 2 of 2", logs[1], re.M)) == 2, logs[1]
  # The workers trained in step: the same final weights, fold by fold.
  sums = [re.findall(rf"worker-{i}: final weights checksum (\w+)", log)
          for i, log in enumerate(logs)]
  assert len(sums[0]) == 2 and sums[0] == sums[1], sums
  summary = json.loads((out / "cv_summary.json").read_text())
  assert [f["fold"] for f in summary["per_fold"]] == ["repeat0_fold0", "repeat0_fold1"]
  assert "out-of-fold (repeat 0, " in logs[0] and "out-of-fold" not in logs[1]
