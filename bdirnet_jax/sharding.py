"""Device mesh and shardings (big_vision style): batch on the `data` axis, params replicated for now.

The mesh always has a `model` axis (size 1 by default) so parameter sharding can be added by changing the param
PartitionSpecs alone, without touching the train step.
"""
from typing import Sequence

import jax
from jax.experimental import mesh_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"


def create_mesh(mesh_shape: Sequence[int] = (-1, 1), devices=None) -> Mesh:
  """A (data, model) mesh; one -1 entry takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(mesh_shape)
  if shape.count(-1) > 1 or len(shape) != 2:
    raise ValueError(f"config.mesh_shape must be (data, model) with at most one -1, got {tuple(mesh_shape)}")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    shape[shape.index(-1)] = len(devices) // known
  if int(np.prod(shape)) != len(devices):
    raise ValueError(f"config.mesh_shape {tuple(mesh_shape)} does not fit {len(devices)} devices")
  device_array = mesh_utils.create_device_mesh(shape, devices=devices)
  return Mesh(device_array, (DATA_AXIS, MODEL_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; the other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def state_sharding(state, mesh: Mesh):
  """Sharding tree for the train state: every leaf replicated (data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), state)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Assembles per-process numpy batches into global jax.Arrays sharded over `data`."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
