"""What a TPU needs, checked on a CPU: static shapes, no Python callbacks, loop equivalence,
the whole replica steps compiled by XLA, and the Colab TPU notebook read statically."""

import ast
import configparser
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import types
import urllib.request

import keras
import packaging.specifiers
import numpy as np
import pytest
import tensorflow as tf

from ctdist.config import training as training_config
from ctdist.data import builders
from ctdist.data import pipeline
from ctdist.data import plan as plan_lib
from ctdist.data import records
from ctdist.model import resnet
from ctdist.training import phases
from ctdist.training import strategy as strategy_lib
from ctdist.training import trainer as trainer_lib
from ctdist.workflows import training_run
import forked

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ops(ds: tf.data.Dataset) -> set[str]:
  graph = tf.raw_ops.DatasetToGraphV2(input_dataset=tf.data.experimental.to_variant(ds))
  graph_def = tf.compat.v1.GraphDef.FromString(graph.numpy())
  ops = {n.op for n in graph_def.node}
  for f in graph_def.library.function:
    ops |= {n.op for n in f.node_def}
  return ops


def test_pipelines_have_static_shapes_and_no_python_callbacks(small_data_dir):
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  for ds in (pipeline.train_dataset(b, "train", 32, 4, seed=0),
             pipeline.eval_dataset(b, "valid", 32, 4)):
    for key, spec in ds.element_spec.items():
      assert spec.shape.is_fully_defined(), (key, spec.shape)
    assert ds.element_spec["image"].shape == (4, 32, 32, 3)
    ops = _ops(ds)
    assert not {o for o in ops if "PyFunc" in o}, ops


@pytest.mark.slow
def test_steps_per_loop_gives_the_same_result(tmp_path, small_data_dir, monkeypatch):
  weights = {}
  real_build = resnet.build_model

  def run(steps_per_loop):
    keras.backend.clear_session()
    built = {}
    monkeypatch.setattr(resnet, "build_model",
                        lambda *a, **k: built.setdefault("m", real_build(*a, **k)))
    opts = training_config.from_flat(
        model_dir=str(tmp_path / f"spl{steps_per_loop}"), dataset="tfds_ctscan/kaggle",
        data_dir=small_data_dir, weights="none", image_size=32, batch_size=4,
        head_epochs=2, finetune_epochs=0, steps_per_loop=steps_per_loop, export=False,
        baseline=False, report=False,
        seed=7)
    training_run.run(opts, strategy_lib.make_strategy("cpu"))
    weights[steps_per_loop] = [np.asarray(w) for w in built["m"].get_layer("fc1").get_weights()]
    return json.loads((tmp_path / f"spl{steps_per_loop}" / "history.json").read_text())

  h1, h3 = run(1), run(3)
  assert [h["loss"] for h in h1] == pytest.approx([h["loss"] for h in h3], rel=1e-3)
  for a, b in zip(weights[1], weights[3]):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


# ---- the replica steps under XLA: what every TPU step is compiled with ----------------
def _tpu_like_trainer(tmp_path, small_data_dir, jit_compile, weights=None,
                      precision="mixed_bfloat16", dropout=True):
  """The TPU configuration on the CPU: bf16, several steps per loop, default augmentation."""
  strategy_lib.set_precision(precision)
  b = builders.builder("tfds_ctscan/kaggle", small_data_dir)
  model = resnet.build_model(32, records.split_info(b, "train").class_names, "none")
  if weights is not None:
    model.set_weights(weights)
  if not dropout:
    for layer in model.layers:
      if isinstance(layer, keras.layers.Dropout):
        layer.rate = 0.0
  opts = training_config.Options(
      model_dir=str(tmp_path / f"run_{precision}_{jit_compile}"), batch_size=4,
      steps_per_loop=4, schedule=training_config.Schedule(finetune_layers=-1, finetune_lr=1e-3),
      jit_compile=jit_compile, augment=training_config.AugmentConfig(), seed=3)
  plan = plan_lib.StepPlan(global_batch=4, per_replica_batch=4, input_pipelines=1,
                           steps_per_epoch=4, val_steps=1)
  trainer = trainer_lib.Trainer(tf.distribute.get_strategy(), model, opts, plan, None, None)
  trainer.enter_phase(phases.named(trainer.phases, "finetune"))
  return trainer, b


@pytest.fixture
def _bf16():
  yield
  keras.mixed_precision.set_global_policy("float32")


def test_whole_replica_steps_compile_with_xla(tmp_path, small_data_dir, _bf16):
  # A TPU compiles everything inside strategy.run: augmentation (draws included), forward,
  # backward, optimizer; then the eval step. An op without an XLA kernel fails here as it
  # would there (keras-cv's rotation: "No registered 'ImageProjectiveTransformV3' OpKernel
  # for XLA_CPU_JIT").
  trainer, b = _tpu_like_trainer(tmp_path, small_data_dir, jit_compile=False)
  batch = next(iter(pipeline.train_dataset(b, "train", 32, 4, seed=0)))
  step = tf.function(trainer.replica_step, jit_compile=True)
  ops = {op.type for op in step.get_concrete_function(batch).graph.get_operations()}
  # The augmentation is in the compiled step: its random draws, the warp's floor, the flip.
  assert {"StatelessRandomUniformV2", "Floor", "ReverseV2"} <= ops, sorted(ops)
  for _ in range(2):
    step(batch)
  assert int(trainer.optimizer.iterations) == 2
  loss, _ = trainer.metrics()
  assert np.isfinite(loss) and loss > 0
  valid = next(iter(pipeline.eval_dataset(b, "valid", 32, 4)))
  tf.function(trainer.eval_step, jit_compile=True)(valid)
  loss, accuracy = trainer.metrics()
  assert np.isfinite(loss) and 0 <= accuracy <= 1


def _losses(trainer, b, steps):
  step, batches = tf.function(trainer.replica_step), iter(
      pipeline.train_dataset(b, "train", 32, 4, seed=0))
  losses = []
  for _ in range(steps):
    step(next(batches))
    losses.append(trainer.metrics()[0])
  return losses


@pytest.mark.parametrize("precision,steps,rel", [
    # bf16, the TPU's precision: the first step (same weights, batch and draws) to bf16's
    # precision (measured 0.3 %; the step without its augmentation is 19 % off); later
    # steps drift with bf16 rounding, so one step only.
    ("mixed_bfloat16", 1, 2e-2),
    # float32: three steps agree (measured 3e-7), so the compiled update is the same update.
    ("float32", 3, 1e-4)])
def test_xla_step_gives_the_losses_of_the_plain_step(tmp_path, small_data_dir, _bf16,
                                                      precision, steps, rel):
  # Dropout masks, like the augmentation's draws, are stateless random numbers, which XLA
  # numbers differently: dropout is off here so both steps see the same network. The
  # classifier starts random (zero, every loss would be ln 4 whatever the images).
  plain, b = _tpu_like_trainer(tmp_path, small_data_dir, False, precision=precision,
                               dropout=False)
  start = plain.model.get_weights()
  kernel = [i for i, w in enumerate(plain.model.weights) if w.path.endswith("logits/kernel")][0]
  start[kernel] = np.random.RandomState(0).normal(0, 0.05, start[kernel].shape).astype(
      start[kernel].dtype)
  plain.model.set_weights(start)
  xla, _ = _tpu_like_trainer(tmp_path, small_data_dir, True, start, precision, dropout=False)
  # The XLA trainer really compiles its compute (cfg.jit_compile wraps it for XLA).
  graph = tf.function(xla.replica_step).get_concrete_function(
      next(iter(pipeline.train_dataset(b, "train", 32, 4, seed=0)))).graph
  assert any(f.definition.attr["_XlaMustCompile"].b
             for f in graph._functions.values()), "no XLA-compiled function in the step"
  plain_losses, xla_losses = _losses(plain, b, steps), _losses(xla, b, steps)
  assert xla_losses == pytest.approx(plain_losses, rel=rel)
  assert len(set(plain_losses)) == steps  # different batches and weights
  assert np.abs(xla.model.get_weights()[kernel] - start[kernel]).max() > 0


# ---- the Colab TPU notebook, read statically ------------------------------------------
NOTEBOOK = ROOT / "launch" / "colab_tpu.ipynb"
# Importing any of these in the kernel can open libtpu there, and a TPU VM lets one
# process hold it: the `!python -m ctdist.train --strategy=tpu` process would be refused.
KERNEL_MUST_NOT_IMPORT = {"tensorflow", "tensorflow_datasets", "keras", "jax", "ctdist",
                          "tfds_ctscan"}


def _cells(notebook=None, kind="code"):
  nb = json.loads(pathlib.Path(notebook or NOTEBOOK).read_text())
  return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def _kernel_python(cell: str) -> str:
  """The cell's Python, with shell (!) and magic (%) lines, and their continuations,
  replaced by `pass`."""
  lines, continued, indent = [], False, ""
  for line in cell.splitlines():
    if not continued and line.lstrip().startswith(("!", "%")):
      indent = line[:len(line) - len(line.lstrip())]
      continued = True
    lines.append(indent + "pass" if continued else line)
    continued = continued and line.rstrip().endswith("\\")
  return "\n".join(lines)


def kernel_imports(notebook) -> list[tuple[int, str]]:
  """(code cell index, module) for every forbidden module the kernel imports."""
  found = []
  for i, cell in enumerate(_cells(notebook)):
    for node in ast.walk(ast.parse(_kernel_python(cell), f"cell {i}")):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
      found += [(i, n) for n in names if n.split(".")[0] in KERNEL_MUST_NOT_IMPORT]
  return found


def test_notebook_kernel_never_imports_tensorflow():
  code = _cells()
  assert any("--strategy=tpu" in c and "!python -m ctdist.train" in c for c in code)
  assert kernel_imports(NOTEBOOK) == []


def test_the_check_catches_a_kernel_that_holds_the_tpu(tmp_path):
  # The notebook as it was: cell 3 initialised the TPU in the kernel before training.
  nb = json.loads(NOTEBOOK.read_text())
  nb["cells"].insert(2, {"cell_type": "code", "metadata": {}, "outputs": [],
                         "execution_count": None, "source": [
                             "import tensorflow as tf\n", "!echo ok\n",
                             "if True:\n", "  from ctdist import predict\n"]})
  bad = tmp_path / "bad.ipynb"
  bad.write_text(json.dumps(nb))
  assert kernel_imports(bad) == [(1, "tensorflow"), (1, "ctdist")]


def _help_flags(module):
  out = forked.run(module, "--helpfull", timeout=300).stdout
  return set(re.findall(r"--(?:\[no\])?([a-z_0-9]+)", out))


def test_notebook_is_valid_and_uses_only_existing_flags():
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["nbformat"] == 4 and nb["metadata"]["accelerator"] == "TPU"
  for c in nb["cells"]:
    assert c["cell_type"] in ("markdown", "code") and isinstance(c["source"], list)
  code = _cells()
  for i, cell in enumerate(code):
    compile(_kernel_python(cell), f"cell {i}", "exec")
  assert "files.upload()" in code[-1] and "-m ctdist.predict" in code[-1]
  # The upload cell shows each image's Grad-CAM overlay, as ctdist.explain names it.
  assert "-m ctdist.explain" in code[-1] and "_overlay.png" in code[-1]
  for module in ("ctdist.train", "ctdist.evaluate", "ctdist.predict", "ctdist.explain",
                 "tfds_ctscan.audit"):
    known = _help_flags(module)
    assert known, module
    for cell in code:
      for line in cell.replace("\\\n", " ").splitlines():
        if f"-m {module} " in line:
          used = set(re.findall(r"\s--([a-z_0-9]+)", line))
          assert used <= known, (module, used - known)


NOTEBOOK_COMMANDS = re.compile(r"(pip install |git clone |python -m (ctdist\.(train|evaluate|"
                               r"predict|explain)|tfds_ctscan\.audit) |tfds build tfds_ctscan "
                               r"--imports=tfds_ctscan )")


def test_notebook_shell_steps_are_known_and_checked():
  # Every `!` step is an install, a clone, one of ctdist's commands or the dataset's build
  # (which imports the installed package: no repository as working directory), and a
  # failed step stops "Run all" with a line saying which (a `!` line alone would not).
  for cell in _cells():
    steps = [line.strip()[1:] for line in cell.splitlines() if line.strip().startswith("!")]
    for step in steps:
      assert NOTEBOOK_COMMANDS.match(step), step
    if any(s.startswith(("pip install", "python -m ctdist.train", "python -m ctdist.evaluate",
                         "python -m ctdist.explain", "python -m tfds_ctscan", "tfds build"))
           for s in steps):
      assert re.search(r"^if _exit_code:.*\n  raise SystemExit\(", cell, re.MULTILINE), cell


def _pinned_version() -> str:
  text = "\n".join(_cells())
  found = re.findall(r'^TF_VERSION = "(\d+\.\d+\.\d+)"', text, re.MULTILINE)
  assert len(found) == 1, found
  assert '"tensorflow-tpu=={TF_VERSION}"' in text and '"tensorflow=={TF_VERSION}"' in text
  return found[0]


def test_notebook_pins_a_pair_setup_cfg_and_the_readme_name():
  version = _pinned_version()
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / "setup.cfg")
  requirement = [r for r in cfg["options"]["install_requires"].split("\n")
                 if re.match(r"tensorflow[<>=!~ ]", r)]
  assert len(requirement) == 1, requirement
  assert version in packaging.specifiers.SpecifierSet(requirement[0][len("tensorflow"):])
  readme = (ROOT / "README.md").read_text()
  assert f"TensorFlow {version} with `tensorflow-tpu` {version}" in readme


def test_pinned_pair_exists_on_the_package_index():
  version = _pinned_version()
  for project in ("tensorflow", "tensorflow-tpu"):
    request = urllib.request.Request(f"https://pypi.org/simple/{project}/", headers={
        "Accept": "application/vnd.pypi.simple.v1+json"})
    try:
      with urllib.request.urlopen(request, timeout=30) as response:
        index = json.load(response)
    except OSError as e:  # URLError, timeouts: no network here
      pytest.skip(f"the package index cannot be reached: {e}")
    assert version in index["versions"], (project, index["versions"][-5:])
    # Colab's Python (3.12 in 2026) on x86-64 Linux: a wheel of the pinned version.
    assert any(f["filename"].startswith(f"{project.replace('-', '_')}-{version}-cp312-")
               and "manylinux" in f["filename"] and "x86_64" in f["filename"]
               for f in index["files"]), project


def test_data_cell_without_credentials_or_upload_stops_with_one_line(monkeypatch):
  cell = next(c for c in _cells() if "kagglehub.dataset_download" in c)
  fake = types.ModuleType("kagglehub")

  def refuse(handle):
    raise RuntimeError("no Kaggle credentials")
  fake.dataset_download = refuse
  monkeypatch.setitem(sys.modules, "kagglehub", fake)
  with pytest.raises(SystemExit) as stop:
    exec(compile(_kernel_python(cell), "data cell", "exec"), {})  # pylint: disable=exec-used
  message = str(stop.value)
  assert message.startswith("The data needs Kaggle credentials (Colab Secrets "
                            "KAGGLE_USERNAME and KAGGLE_KEY) or archive.zip from Kaggle "
                            "uploaded to /content/kaggle/")
  assert "no Kaggle credentials" in message and "\n" not in message


def _shell_line(cell: str, start: str) -> str:
  """The `!` command of `cell` that starts with `start`, its continuations joined."""
  line = next(x for x in cell.replace("\\\n", " ").splitlines() if x.startswith("!" + start))
  return line[1:]


def test_notebook_keeps_the_run_on_drive_builds_first_and_the_training_cell_resumes(
    kaggle_dir, tmp_path, monkeypatch):
  code = _cells()
  where = next(i for i, c in enumerate(code) if "drive.mount(" in c)
  build = next(i for i, c in enumerate(code) if "!tfds build" in c)
  train = next(i for i, c in enumerate(code) if "!python -m ctdist.train" in c)
  assert where < build < train
  # The run and the data live on the mounted Drive, where a new runtime finds them.
  mounted = []
  colab = types.ModuleType("google.colab")
  colab.drive = types.SimpleNamespace(mount=mounted.append)
  monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
  monkeypatch.setitem(sys.modules, "google.colab", colab)
  names = {}
  exec(compile(_kernel_python(code[where]), "where cell", "exec"), names)  # pylint: disable=exec-used
  assert mounted == ["/content/drive"]
  assert names["MODEL_DIR"].startswith("/content/drive/MyDrive/")
  assert names["DATA_DIR"].startswith("/content/drive/MyDrive/")
  # The training reads the built dataset only; re-running its cell resumes (the same
  # --model_dir, no flag that starts afresh).
  command = _shell_line(code[train], "python -m ctdist.train")
  assert "--manual_dir" not in command and '--model_dir="{MODEL_DIR}"' in command
  assert '--data_dir="{DATA_DIR}"' in command
  # The build cell's command, run as Colab would (outside the repository, the package
  # installed), builds tfds_ctscan/kaggle from a Kaggle-layout folder.
  build_cmd = _shell_line(code[build], "tfds build").replace(
      "{DATA_DIR}", str(tmp_path / "data")).replace("{MANUAL_DIR}", str(kaggle_dir))
  tfds_cli = pathlib.Path(sys.executable).with_name("tfds")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  done = subprocess.run([str(tfds_cli), *shlex.split(build_cmd)[1:]], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  built = builders.builder("tfds_ctscan/kaggle", str(tmp_path / "data"))
  assert built.info.splits["train"].num_examples == 16
