"""Writes a Kubeflow TFJob that trains ctdist on N workers of a Kubernetes cluster.

Run: python -m launch.k8s --image=REGISTRY/ctdist:TAG --workers=2 --gpus_per_worker=4 \
       --volume_claim=ctdist-runs --out=tfjob.json -- --data_dir=gs://BUCKET/tfds --batch_size=256
     kubectl apply -f tfjob.json

The training operator gives each worker its TF_CONFIG; every worker runs
`python -m ctdist.train --strategy=multi_worker --model_dir=MOUNT/NAME` with the flags after
`--`. The run folder lives on the persistent volume claim, so a restarted worker resumes
from the last checkpoint. restartPolicy ExitCode: a worker that ends with 128 or more (a
SIGTERM from an eviction or preemption: 143; SIGKILL: 137) is restarted; one that ends with
1-127 (2: a user's mistake, 1: a failure) is not, and the job fails.
"""

import json
import sys

from absl import app
from absl import flags

API_VERSION = "kubeflow.org/v1"
CONTAINER = "tensorflow"  # the training operator's name for the TensorFlow container
# Seconds between an eviction's SIGTERM and its SIGKILL: the step in flight and a checkpoint.
GRACE_SECONDS = 120


def tfjob(name: str, image: str, workers: int, gpus_per_worker: int, volume_claim: str,
          mount_path: str, train_flags: list[str], namespace: str = "default",
          backoff_limit: int = 10) -> dict:
  """The TFJob manifest (a dict: kubectl takes it as JSON)."""
  container = {
      "name": CONTAINER, "image": image,
      "command": ["python", "-m", "ctdist.train"],
      "args": ["--strategy=multi_worker", f"--model_dir={mount_path}/{name}", *train_flags],
      "volumeMounts": [{"name": "runs", "mountPath": mount_path}]}
  if gpus_per_worker:
    container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus_per_worker)}}  # a quantity
  return {
      "apiVersion": API_VERSION, "kind": "TFJob",
      "metadata": {"name": name, "namespace": namespace},
      "spec": {
          "runPolicy": {"backoffLimit": backoff_limit, "cleanPodPolicy": "None"},
          "tfReplicaSpecs": {"Worker": {
              "replicas": workers, "restartPolicy": "ExitCode",
              "template": {"spec": {
                  "containers": [container],
                  "terminationGracePeriodSeconds": GRACE_SECONDS,
                  "volumes": [{"name": "runs", "persistentVolumeClaim": {
                      "claimName": volume_claim}}]}}}}}}


def main(argv) -> None:
  """absl keeps what follows `--` in argv: the flags for ctdist.train."""
  f = flags.FLAGS
  problems = [f"--{n}={getattr(f, n)}: use 1 or more" for n in ("workers",)
              if getattr(f, n) < 1]
  problems += [f"--gpus_per_worker={f.gpus_per_worker}: use 0 or more"] * (
      f.gpus_per_worker < 0)
  problems += ["--image: name the container image that holds ctdist (pip install ctdist "
               "on a TensorFlow image), e.g. --image=REGISTRY/ctdist:TAG"] * (not f.image)
  problems += ["--volume_claim: name the persistent volume claim that keeps the run folder "
               "(kubectl get pvc)"] * (not f.volume_claim)
  if problems:
    print(f"error: {problems[0]}", file=sys.stderr)
    sys.exit(2)
  manifest = json.dumps(tfjob(f.name, f.image, f.workers, f.gpus_per_worker, f.volume_claim,
                              f.mount_path.rstrip("/"), argv[1:], f.namespace), indent=1)
  if f.out:
    with open(f.out, "w") as out:
      out.write(manifest + "\n")
    print(f"wrote {f.out}: kubectl apply -f {f.out}", file=sys.stderr)
  else:
    print(manifest)


if __name__ == "__main__":
  flags.DEFINE_string("name", "ctdist", "The TFJob's name (and the run folder's).")
  flags.DEFINE_string("namespace", "default", "Kubernetes namespace.")
  flags.DEFINE_string("image", None, "Container image with ctdist installed.")
  flags.DEFINE_integer("workers", 2, "Workers (one pod each).")
  flags.DEFINE_integer("gpus_per_worker", 0, "GPUs per worker (nvidia.com/gpu).")
  flags.DEFINE_string("volume_claim", None, "Persistent volume claim for the run folder.")
  flags.DEFINE_string("mount_path", "/runs", "Where the claim is mounted in each worker.")
  flags.DEFINE_string("out", None, "Write the manifest here (default: print it).")
  app.run(main)
