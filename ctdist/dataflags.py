"""Frozen dataclasses as the one shape of a command's options: their flags, their JSON.

Each field is one flag of the same name; the fields of a nested dataclass are flags
named with that field's prefix (`augment_rotation` fills `Options.augment.rotation`;
an empty prefix keeps the nested names). Help text and choices are field metadata:

  @dataclasses.dataclass(frozen=True)
  class Options:
    model_dir: str = option(None, "Output folder.", required=True)
    strategy: str = option("auto", "Which strategy.", choices=("auto", "cpu"))
    augment: Augment = group(Augment, prefix="augment_")

Entry modules call `define_flags(Options)` and `from_flags(Options, FLAGS)`; runs
store `to_dict` as JSON, and readers rebuild the tree with `from_dict`.
"""

import dataclasses
import types
import typing

from absl import flags

# The flags `define_flags` defines belong to its caller (the entry module): `--helpshort`
# lists them there.
flags.disclaim_key_flags()


def option(default, help_text: str, choices: tuple[str, ...] | None = None,
           required: bool = False):
  """A field with its flag's help text (and enum choices)."""
  return dataclasses.field(default=default, metadata={
      "help": help_text, "choices": choices, "required": required})


def group(cls, prefix: str = ""):
  """A nested options dataclass whose flags are its field names after `prefix`."""
  return dataclasses.field(default_factory=cls, metadata={"prefix": prefix})


def _hints(cls) -> dict:
  return typing.get_type_hints(cls)


def _base(tp):
  """str | None -> str; tuple[str, ...] -> tuple."""
  if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1:
      return _base(args[0])
  return typing.get_origin(tp) or tp


def flag_fields(cls, prefix: str = ""):
  """(flag name, path of field names, field, type) for every leaf field of `cls`."""
  hints = _hints(cls)
  for f in dataclasses.fields(cls):
    tp = hints[f.name]
    if dataclasses.is_dataclass(tp):
      for name, path, leaf, leaf_tp in flag_fields(tp, prefix + f.metadata.get("prefix", "")):
        yield name, (f.name,) + path, leaf, leaf_tp
    else:
      yield prefix + f.name, (f.name,), f, tp


def define_flags(cls, flag_values=flags.FLAGS) -> None:
  """Defines one absl flag per leaf field of `cls`, its default the field's."""
  for name, _, f, tp in flag_fields(cls):
    if "help" not in f.metadata:
      raise TypeError(f"{cls.__name__}: field {f.name!r} has no help text; declare it "
                      "with dataflags.option(default, help)")
    default, help_text, base = f.default, f.metadata["help"], _base(tp)
    choices = f.metadata.get("choices")
    if choices:
      flags.DEFINE_enum(name, default, choices, help_text, flag_values=flag_values)
    elif base is bool:
      flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
    elif base is int:
      flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
    elif base is float:
      flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
    elif base is str:
      flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
    elif base is tuple:
      flags.DEFINE_list(name, list(default), help_text, flag_values=flag_values)
    else:
      raise TypeError(f"{cls.__name__}.{f.name}: no flag type for {tp}")
    if f.metadata.get("required"):
      flags.mark_flag_as_required(name, flag_values=flag_values)


def _build(cls, values: dict, where: str):
  hints, kwargs = _hints(cls), {}
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown} for {cls.__name__}; known: "
                     f"{sorted(known)}")
  for f in dataclasses.fields(cls):
    if f.name not in values:
      continue
    tp, value = hints[f.name], values[f.name]
    if dataclasses.is_dataclass(tp):
      kwargs[f.name] = _build(tp, value, f"{where}.{f.name}")
    elif _base(tp) is tuple and value is not None:
      kwargs[f.name] = tuple(value)
    else:
      kwargs[f.name] = value
  return cls(**kwargs)


def from_flat(cls, values: dict, where: str = "options"):
  """The `cls` tree from values named like its flags (head_epochs=..., augment_zoom=...);
  fields not named keep their defaults.

  Raises:
    ValueError: a name that is not one of `cls`'s flags.
  """
  paths = {name: path for name, path, _, _ in flag_fields(cls)}
  unknown = sorted(set(values) - set(paths))
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(paths)}")
  tree: dict = {}
  for name, value in values.items():
    node = tree
    for key in paths[name][:-1]:
      node = node.setdefault(key, {})
    node[paths[name][-1]] = value
  return _build(cls, tree, where)


def from_flags(cls, flag_values=flags.FLAGS):
  """The `cls` tree filled from parsed flags (defined by `define_flags(cls)`)."""
  return from_flat(cls, {name: flag_values[name].value
                         for name, _, _, _ in flag_fields(cls)}, "flags")


def to_dict(options) -> dict:
  return dataclasses.asdict(options)


def from_dict(cls, values: dict, where: str = "options"):
  """Rebuilds a `cls` tree from `to_dict`'s output (missing fields take defaults).

  Raises:
    ValueError: a key `cls` does not have, named with `where`.
  """
  return _build(cls, values, where)


def flat(options) -> dict:
  """{flag name: value} of an options tree."""
  out = {}
  for name, path, _, _ in flag_fields(type(options)):
    value = options
    for key in path:
      value = getattr(value, key)
    out[name] = value
  return out


def flagfile(options) -> str:
  """`options` as absl serializes its flags: `--flagfile=` of this text rebuilds it."""
  fv = flags.FlagValues()
  define_flags(type(options), fv)
  lines = []
  for name, value in flat(options).items():
    if value is not None:
      fv[name].value = list(value) if isinstance(value, tuple) else value
      lines.append(fv[name].serialize())
  return "".join(line + "\n" for line in lines)
