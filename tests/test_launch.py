"""Multi-worker clusters on localhost and kill-and-resume (the TPU notebook: test_tpu_readiness)."""

import json
import os
import pathlib
import re
import signal
import sys

import pytest

import checkpoints

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_FLAGS = ["--dataset=tfds_ctscan/kaggle", "--weights=none", "--image_size=32",
               "--batch_size=4", "--finetune_layers=5", "--seed=1", "--nobaseline"]


def _env(tmp_path):
  tmp = tmp_path / "worker_tmp"
  tmp.mkdir(exist_ok=True)
  return dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT),
              TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _cluster(spawn, tmp_path, data_dir, model_dir, extra=(), fault=None):
  cmd = [sys.executable, "-m", "launch.local_cluster", "--workers=2", "--",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TRAIN_FLAGS, *extra]
  return spawn(cmd, cwd=ROOT, env=dict(_env(tmp_path), **({"CTDIST_FAULT": fault} if fault
                                                          else {})))


# Deterministic, two head epochs and one fine-tune epoch, a checkpoint every 2 steps.
CLUSTER_RUN = ["--head_epochs=2", "--finetune_epochs=1", "--patience=10", "--deterministic",
               "--checkpoint_every_steps=2", "--noreport"]
CHECKSUMS = re.compile(r"\[(worker-\d)\].*(?:worker-\d): final weights checksum (\w+)")


@pytest.mark.slow
def test_two_workers_train_in_sync_stop_together_on_a_signal_and_resume_to_the_same_weights(
    tmp_path, small_data_dir, spawn):
  model_dir = tmp_path / "run"
  proc = _cluster(spawn, tmp_path, small_data_dir, model_dir, CLUSTER_RUN)
  code = proc.wait(900)
  out = proc.output
  assert code == 0, out[-5000:]
  checksums = dict(CHECKSUMS.findall(out))
  assert set(checksums) == {"worker-0", "worker-1"}, out[-3000:]
  assert checksums["worker-0"] == checksums["worker-1"]
  shards = re.findall(r"\[(worker-\d)\].*train input shard (\d) of 2: (\d+) examples, "
                      r"fingerprint (\w+)", out)
  by_worker = {w: (s, int(n), f) for w, s, n, f in shards}
  assert by_worker["worker-0"][0] != by_worker["worker-1"][0]
  assert by_worker["worker-0"][2] != by_worker["worker-1"][2]
  assert by_worker["worker-0"][1] + by_worker["worker-1"][1] == 16
  # The chief wrote everything; the other worker left nothing behind.
  for name in ("model.keras", "saved_model", "checkpoints", "history.json", "metrics.json",
               "flags.txt", "tensorboard"):
    assert (model_dir / name).exists(), name
  assert list((tmp_path / "worker_tmp").iterdir()) == []
  history = json.loads((model_dir / "history.json").read_text())
  assert [(h["phase"], h["epoch"]) for h in history] == [
      ("head", 1), ("head", 2), ("finetune", 1)]
  assert json.loads((model_dir / "metrics.json").read_text())["run"]["workers"] == 2
  # Stopped: a real SIGTERM reaches worker-1 alone, after its second step. The workers
  # agree on the next step (tf.distribute's PreemptionCheckpointHandler), both save there
  # and exit 143, and so does the launcher: "retry me".
  run = tmp_path / "interrupted"
  proc = _cluster(spawn, tmp_path, small_data_dir, run, CLUSTER_RUN, "after_step:2:SIGTERM:1")
  assert proc.wait(600) == 143, proc.output[-5000:]
  where = "head epoch 1, step 3 of 4"
  assert f"[worker-1] warning: stopped by SIGTERM at {where}" in proc.output
  assert (f"[worker-0] warning: stopped by SIGTERM (sent to another worker) at {where}; "
          f"checkpoint written in {run / 'checkpoints'}") in proc.output
  assert "every worker saved a checkpoint at the same step" in proc.output
  assert checkpoints.position(run) == (0, 0, 3)
  assert list((tmp_path / "worker_tmp").iterdir()) == []
  # Lost: worker-1 is killed (SIGKILL) at its third step after resuming, before the
  # checkpoint of that step: the cluster stops, naming it; the work since the last
  # checkpoint is lost.
  proc = _cluster(spawn, tmp_path, small_data_dir, run, CLUSTER_RUN, "after_step:3:SIGKILL:1")
  assert proc.wait(600) == 1, proc.output[-5000:]
  assert "resumed from" in proc.output
  assert "worker-1" in proc.output and "exited with code -9" in proc.output
  # The same command finishes: the uninterrupted run's weights.
  restart = _cluster(spawn, tmp_path, small_data_dir, run, CLUSTER_RUN)
  assert restart.wait(900) == 0, restart.output[-5000:]
  assert "resumed from" in restart.output
  assert dict(CHECKSUMS.findall(restart.output)) == checksums
  # The same epochs, validations and rates; an epoch's mean training loss to float
  # rounding: the loss sum of a checkpoint taken mid-epoch is restored split across the
  # two workers (a SUM-aggregated variable), so its additions run in another order.
  again = json.loads((run / "history.json").read_text())
  exact = lambda h: {k: v for k, v in h.items() if k not in ("images_per_sec", "loss")}
  assert [exact(h) for h in again] == [exact(h) for h in history]
  assert [h["loss"] for h in again] == pytest.approx([h["loss"] for h in history], rel=1e-6)


def _fake_python(tmp_path, body: str) -> str:
  """An executable that stands in for `python -m ctdist.train` in launch.local_cluster."""
  script = tmp_path / "fake_python"
  script.write_text("#!/bin/sh\necho start >> \"$STARTS\"\n" + body)
  script.chmod(0o755)
  return str(script)


def test_cluster_retries_on_new_ports_when_a_port_was_taken(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  marker = tmp_path / "taken_once"
  python = _fake_python(tmp_path, f"""
if [ ! -e {marker} ]; then touch {marker}
  echo "E0000 server.cc] Failed to add :12345: Address already in use"; exit 1; fi
exit 0
""")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05) == 0
  assert len((tmp_path / "starts").read_text().split()) == 4  # two starts of two workers
  assert "starting again on new ports (attempt 2 of 3)" in capsys.readouterr().err


def test_a_signal_to_the_launcher_reaches_every_worker_and_is_its_status(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  # Each fake worker notes a SIGTERM and exits 143, as ctdist does after its checkpoint;
  # worker-1, once both run, sends SIGTERM to the launcher (this process) as a scheduler
  # would. Stragglers after the stop grace are killed (SIGKILL), so a TERM noted by a
  # worker came from the launcher passing the signal on.
  python = _fake_python(tmp_path, """
trap 'echo "TERM $TF_CONFIG" >> "$TERMS"; exit 143' TERM
while [ "$(wc -l < "$STARTS")" -lt 2 ]; do sleep 0.05; done
case "$TF_CONFIG" in *'"index": 1'*) kill -TERM $PPID;; esac
while :; do sleep 0.05; done
""")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"), TERMS=str(tmp_path / "terms"))
  before = signal.getsignal(signal.SIGTERM)
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05,
                              stop_grace_s=60) == 143
  assert signal.getsignal(signal.SIGTERM) is before  # the launcher's handler is gone
  terms = (tmp_path / "terms").read_text()
  assert '"index": 0' in terms and '"index": 1' in terms
  err = capsys.readouterr().err
  assert "stopped by SIGTERM (exit status 143)" in err and "re-run the same command" in err


def test_cluster_does_not_retry_other_failures(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  python = _fake_python(tmp_path, "echo 'ValueError: bad flag'; exit 3\n")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05) == 1
  assert len((tmp_path / "starts").read_text().split()) == 2  # one start only
  err = capsys.readouterr().err
  assert "exited with code 3" in err and "re-run the same command to resume" in err


def test_a_mistake_in_the_flags_stops_the_cluster_with_status_2(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  python = _fake_python(tmp_path, "echo 'error: --steps_per_loop=0; use 1 or more'; exit 2\n")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05) == 2
  assert len((tmp_path / "starts").read_text().split()) == 2  # no retry
  err = capsys.readouterr().err
  assert re.search(r"error: worker-[01] stopped on a mistake in the flags: --steps_per_loop"
                   r"=0; use 1 or more; fix it and run again", err) and "resume" not in err


def test_a_hung_worker_is_stopped(tmp_path, capsys):
  from launch import local_cluster  # pylint: disable=g-import-not-at-top
  # Worker 1 never ends (as one waiting forever in a collective); worker 0 finishes.
  python = _fake_python(tmp_path, """case "$TF_CONFIG" in *'"index": 1'*) exec sleep 120;; esac
exit 0
""")
  env = dict(os.environ, STARTS=str(tmp_path / "starts"))
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05, grace_s=5,
                              finish_grace_s=1.0) == 1
  err = capsys.readouterr().err
  assert "worker-1" in err and "1 s after another worker finished: hung" in err
  # And a whole-run limit stops a cluster where no worker finishes.
  python = _fake_python(tmp_path, "exec sleep 120\n")
  assert local_cluster.launch(2, [], env=env, python=python, poll_s=0.05, grace_s=5,
                              timeout_s=1.0) == 1
  assert "after --timeout=1 s: hung" in capsys.readouterr().err


# A stand-in for Slurm's srun: NTASKS tasks on this machine, each with the variables a
# real job step gives its tasks, each task's output in task<i>.log; its status is the
# last failing task's (srun's is the highest; here one status is enough).
FAKE_SRUN = """#!/bin/bash
pids=()
for i in $(seq 0 $((NTASKS - 1))); do
  SLURM_PROCID=$i SLURM_STEP_NUM_TASKS=$NTASKS SLURM_STEP_NODELIST=localhost \\
    SLURM_STEP_TASKS_PER_NODE=$NTASKS "$@" > "$TASK_LOGS/task$i.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit $status
"""


def _sbatch(tmp_path, data_dir, model_dir, *flags, tasks=2, timeout=900):
  """`bash launch/slurm.sbatch FLAGS` as Slurm would run it, srun faked on PATH."""
  import socket  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "srun").write_text(FAKE_SRUN)
  (bin_dir / "srun").chmod(0o755)
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(_env(tmp_path), PATH=f"{bin_dir}:{pathlib.Path(sys.executable).parent}:"
             f"{os.environ['PATH']}", NTASKS=str(tasks), TASK_LOGS=str(tmp_path),
             SLURM_JOB_ID="4242", DATA_DIR=str(data_dir), MODEL_DIR=str(model_dir),
             CTDIST_PORT=str(port))
  done = subprocess.run(["bash", "launch/slurm.sbatch", *flags], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  logs = [(tmp_path / f"task{i}.log").read_text() for i in range(tasks)]
  return done, logs, port


@pytest.mark.slow
def test_the_slurm_job_trains_one_worker_per_task(tmp_path, small_data_dir):
  model_dir = tmp_path / "run"
  done, logs, port = _sbatch(tmp_path, small_data_dir, model_dir, *TRAIN_FLAGS,
                             "--head_epochs=0", "--finetune_epochs=1", "--log_every_steps=0",
                             "--noexport", "--noreport")
  assert done.returncode == 0, done.stderr + "\n".join(log[-3000:] for log in logs)
  sums = [re.search(r"(worker-\d): final weights checksum (\w+)", log) for log in logs]
  assert [s.group(1) for s in sums] == ["worker-0", "worker-1"], logs
  assert sums[0].group(2) == sums[1].group(2)  # one model, trained in step
  cluster = json.loads((model_dir / "options.json").read_text())
  assert cluster["batch_size"] == 4  # the flags after the file name win
  assert f"localhost:{port}" in logs[0] and f"localhost:{port + 1}" in logs[0]
  assert (model_dir / "model.keras").exists() and (model_dir / "metrics.json").exists()
  # A mistake in the flags: every task ends with status 2, and so does the job.
  done, logs, _ = _sbatch(tmp_path, small_data_dir, tmp_path / "bad", *TRAIN_FLAGS,
                          "--steps_per_loop=0", timeout=300)
  assert done.returncode == 2, logs
  assert all(log.strip().splitlines()[-1] == "error: --steps_per_loop=0; use 1 or more"
             for log in logs), logs


# srun and scontrol stand-ins for the requeue path: the step ends with $STEP_STATUS, or
# (STEP_STATUS=wait) runs until it is sent SIGTERM and then ends as ctdist does (143).
FAKE_STEP = """#!/bin/bash
echo "$$" > "$TASK_LOGS/step_started"
if [ "$STEP_STATUS" = wait ]; then
  trap 'echo TERM > "$TASK_LOGS/step_signal"; exit 143' TERM
  while true; do sleep 0.1; done
fi
exit "$STEP_STATUS"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "$@" >> "$TASK_LOGS/scontrol"
"""


def _sbatch_fake_step(tmp_path, status: str, spawn):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, text in (("srun", FAKE_STEP), ("scontrol", FAKE_SCONTROL)):
    (bin_dir / name).write_text(text)
    (bin_dir / name).chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TASK_LOGS=str(tmp_path),
             SLURM_JOB_ID="4242", STEP_STATUS=status, DATA_DIR="/data", MODEL_DIR="/runs/x")
  return spawn(["bash", "launch/slurm.sbatch"], cwd=ROOT, env=env)


@pytest.mark.parametrize("status, requeued", [("143", True), ("130", True), ("2", False),
                                              ("1", False), ("0", False)])
def test_the_slurm_job_requeues_itself_only_when_its_step_ended_on_a_signal(
    tmp_path, spawn, status, requeued):
  job = _sbatch_fake_step(tmp_path, status, spawn)
  assert job.wait(timeout=60) == int(status), job.output
  scontrol = tmp_path / "scontrol"
  assert scontrol.exists() == requeued, job.output
  if requeued:
    assert scontrol.read_text() == "requeue 4242\n"
    assert "requeueing job 4242" in job.output


def test_the_slurm_job_passes_sigterm_to_its_step_and_requeues(tmp_path, spawn):
  # Slurm signals the batch shell (--signal=B:TERM@120): the shell passes it to the step.
  job = _sbatch_fake_step(tmp_path, "wait", spawn)
  job.wait_until(lambda: (tmp_path / "step_started").exists(), timeout=60,
                 what="the job step")
  os.kill(job.popen.pid, signal.SIGTERM)
  assert job.wait(timeout=60) == 143, job.output
  assert (tmp_path / "step_signal").read_text() == "TERM\n"
  assert (tmp_path / "scontrol").read_text() == "requeue 4242\n"
  sbatch = (ROOT / "launch" / "slurm.sbatch").read_text()
  assert "#SBATCH --signal=B:TERM@120" in sbatch and "#SBATCH --requeue" in sbatch


def test_the_tfjob_is_kubeflows_and_restarts_a_worker_only_after_a_signal(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  from kubeflow.training import models  # pylint: disable=g-import-not-at-top
  from kubeflow.training.api_client import ApiClient  # pylint: disable=g-import-not-at-top
  out = tmp_path / "tfjob.json"
  done = subprocess.run(
      [sys.executable, "-m", "launch.k8s", "--image=registry/ctdist:1", "--workers=3",
       "--gpus_per_worker=2", "--volume_claim=runs", f"--out={out}", "--",
       "--data_dir=gs://bucket/tfds", "--batch_size=96"], cwd=ROOT, env=_env(tmp_path),
      capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stderr.strip() == f"wrote {out}: kubectl apply -f {out}"
  manifest = json.loads(out.read_text())
  # Read back through the Kubeflow Training SDK's TFJob model (Kubernetes' pod template
  # inside): a field the model does not know, or of another type, does not come back.
  client = ApiClient()
  response = type("Response", (), {"data": out.read_text()})
  job = client.deserialize(response, "KubeflowOrgV1TFJob")
  assert client.sanitize_for_serialization(job) == manifest
  assert (job.api_version, job.kind) == ("kubeflow.org/v1", "TFJob")
  worker = job.spec.tf_replica_specs["Worker"]
  assert worker.replicas == 3 and set(job.spec.tf_replica_specs) == {"Worker"}
  # ExitCode: 128-255 (SIGTERM 143, SIGKILL 137) restart the worker, 1-127 (2: a user's
  # mistake) fail the job; one of the SDK's documented policies.
  assert worker.restart_policy == "ExitCode"
  documented = models.KubeflowOrgV1ReplicaSpec.restart_policy.__doc__
  assert "One of Always, OnFailure, Never and ExitCode" in documented
  spec = worker.template.spec
  container = spec.containers[0]
  assert container.name == "tensorflow"  # the operator's container name
  assert container.command == ["python", "-m", "ctdist.train"]
  assert container.args == ["--strategy=multi_worker", "--model_dir=/runs/ctdist",
                            "--data_dir=gs://bucket/tfds", "--batch_size=96"]
  assert container.resources.limits == {"nvidia.com/gpu": "2"}
  assert container.volume_mounts[0].mount_path == "/runs"
  assert spec.volumes[0].persistent_volume_claim.claim_name == "runs"
  assert spec.termination_grace_period_seconds >= 60  # a step and a checkpoint
