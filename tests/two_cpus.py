"""`python tests/two_cpus.py FLAGS...`: ctdist.train with the CPU split into two logical
devices before TensorFlow initialises, so --strategy=mirrored has two replicas on a
machine without GPUs (as conftest.py does for the tests run in-process)."""

import runpy
import sys

import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = ["ctdist.train", *sys.argv[1:]]
runpy.run_module("ctdist.train", run_name="__main__", alter_sys=True)
