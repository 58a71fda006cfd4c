"""Device mesh and shardings (big_vision style): batch on the `data` axis, params replicated for now.

The mesh always has a `model` axis (size 1 by default) so parameter sharding can be added by changing the param
PartitionSpecs alone, without touching the train step.
"""

import math
from typing import Sequence

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
MODEL_AXIS = "model"


def resolve_mesh_shape(mesh_shape: Sequence[int], num_devices: int | None = None) -> tuple[int, int]:
  """`config.mesh_shape` checked, with its -1 entry resolved against `num_devices` (kept as -1 without it).

  config_validation calls it without a device count, before anything is compiled; `create_mesh` with one.
  """
  ok = (
    isinstance(mesh_shape, (tuple, list))
    and len(mesh_shape) == 2
    and all(isinstance(s, int) and not isinstance(s, bool) and (s == -1 or s > 0) for s in mesh_shape)
    and list(mesh_shape).count(-1) <= 1
  )
  if not ok:
    raise ValueError(f"config.mesh_shape must be (data, model) sizes > 0 with at most one -1, got {mesh_shape!r}")
  shape = list(mesh_shape)
  if num_devices is not None:
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
      shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
      raise ValueError(f"config.mesh_shape {tuple(mesh_shape)} does not fit {num_devices} devices")
  return tuple(shape)


def create_mesh(mesh_shape: Sequence[int] = (-1, 1), devices=None) -> Mesh:
  """A (data, model) mesh over `devices` (default: all); one -1 entry takes the remaining devices.

  Both axes are `Auto`, as with `Mesh(...)`: the train step states its shardings itself, and jax.make_mesh
  otherwise makes them `Explicit` (sharding in types).
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh(
    resolve_mesh_shape(mesh_shape, len(devices)),
    (DATA_AXIS, MODEL_AXIS),
    axis_types=(jax.sharding.AxisType.Auto,) * 2,
    devices=devices,
  )


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; the other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def state_sharding(state, mesh: Mesh):
  """Sharding tree for the train state: every leaf replicated (data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), state)
