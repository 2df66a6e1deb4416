"""Frozen dataclasses as the one shape of a command's options: their flags, their JSON.

Each field is one flag of the same name; the fields of a nested dataclass are flags
named with that field's prefix (`augment_rotation` fills `Options.augment.rotation`;
an empty prefix keeps the nested names). Help text and choices are field metadata:

  @dataclasses.dataclass(frozen=True)
  class Options:
    model_dir: str = option(None, "Output folder.", required=True)
    strategy: str = option("auto", "Which strategy.", choices=("auto", "cpu"))
    augment: Augment = group(Augment, prefix="augment_")
    data: DataSource = group(DataSource, default=DataSource(dataset="tfds_ctscan/kaggle"))

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

_MISSING = object()


def option(default, help_text: str, choices: tuple[str, ...] | None = None,
           required: bool = False, flag: str | None = None):
  """A field with its flag's help text (and enum choices); `flag` names the flag when the
  field cannot (`class_` for --class)."""
  metadata = {"help": help_text, "choices": choices, "required": required}
  if flag:
    metadata["flag"] = flag
  return dataclasses.field(default=default, metadata=metadata)


def _flag_name(f: dataclasses.Field) -> str:
  return f.metadata.get("flag", f.name)


def group(cls, prefix: str = "", default=None):
  """A nested options dataclass whose flags are its field names after `prefix`; `default`
  (an instance of `cls`) gives this use of the group other defaults than the class's."""
  return dataclasses.field(default_factory=(lambda: default) if default is not None else cls,
                           metadata={"prefix": prefix})


def _base(tp):
  """str | None -> str; tuple[str, ...] -> tuple."""
  if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1:
      return _base(args[0])
  return typing.get_origin(tp) or tp


def _defaults(cls, instance=None) -> dict:
  """{field name: default} of `cls`, or the values of `instance`."""
  if instance is not None:
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
  return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
          for f in dataclasses.fields(cls)}


def flag_fields(cls, prefix: str = "", instance=None):
  """(flag name, path of field names, field, type, default) for every leaf field of `cls`
  (defaults from `instance` where given: a group's own defaults)."""
  hints, defaults = typing.get_type_hints(cls), _defaults(cls, instance)
  for f in dataclasses.fields(cls):
    tp = hints[f.name]
    if dataclasses.is_dataclass(tp):
      for name, path, leaf, leaf_tp, default in flag_fields(
          tp, prefix + f.metadata.get("prefix", ""), defaults[f.name]):
        yield name, (f.name,) + path, leaf, leaf_tp, default
    else:
      yield prefix + _flag_name(f), (f.name,), f, tp, defaults[f.name]


def define_flags(cls, flag_values=flags.FLAGS) -> None:
  """Defines one absl flag per leaf field of `cls`, its default the field's."""
  for name, _, f, tp, default in flag_fields(cls):
    if "help" not in f.metadata:
      raise TypeError(f"{cls.__name__}: field {f.name!r} has no help text; declare it "
                      "with flagtree.option(default, help)")
    help_text, base, choices = f.metadata["help"], _base(tp), f.metadata.get("choices")
    kw = dict(flag_values=flag_values)
    if choices:
      flags.DEFINE_enum(name, default, choices, help_text, **kw)
    elif base is bool:
      flags.DEFINE_bool(name, default, help_text, **kw)
    elif base is int:
      flags.DEFINE_integer(name, default, help_text, **kw)
    elif base is float:
      flags.DEFINE_float(name, default, help_text, **kw)
    elif base is str:
      flags.DEFINE_string(name, default, help_text, **kw)
    elif base is tuple:
      flags.DEFINE_list(name, list(default), help_text, **kw)
    else:
      raise TypeError(f"{cls.__name__}.{f.name}: no flag type for {tp}")
    if f.metadata.get("required"):
      flags.mark_flag_as_required(name, flag_values=flag_values)


def _fill(cls, value_of, prefix: str = "", base=None):
  """The `cls` tree whose leaf named NAME (its flag name) is `value_of(NAME)`; a leaf
  whose value is _MISSING keeps `base`'s value (or the default)."""
  hints, kwargs = typing.get_type_hints(cls), {}
  for f in dataclasses.fields(cls):
    tp = hints[f.name]
    if dataclasses.is_dataclass(tp):
      kwargs[f.name] = _fill(tp, value_of, prefix + f.metadata.get("prefix", ""),
                             getattr(base, f.name) if base is not None else
                             _defaults(cls)[f.name])
      continue
    value = value_of(prefix + _flag_name(f))
    if value is not _MISSING:
      kwargs[f.name] = tuple(value) if _base(tp) is tuple and value is not None else value
  return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def from_flat(cls, values: dict, where: str = "options"):
  """The `cls` tree from values named like its flags (head_epochs=..., augment_zoom=...);
  fields not named keep their defaults.

  Raises:
    ValueError: a name that is not one of `cls`'s flags.
  """
  known = {name for name, *_ in flag_fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown}; known: {sorted(known)}")
  return _fill(cls, lambda name: values.get(name, _MISSING))


def from_flags(cls, flag_values=flags.FLAGS):
  """The `cls` tree filled from parsed flags (defined by `define_flags(cls)`)."""
  return _fill(cls, lambda name: flag_values[name].value)


def to_dict(options) -> dict:
  return dataclasses.asdict(options)


def from_dict(cls, values: dict, where: str = "options", base=None):
  """Rebuilds a `cls` tree from `to_dict`'s output (missing fields take defaults).

  Raises:
    ValueError: a key `cls` does not have, named with `where`.
  """
  hints, kwargs = typing.get_type_hints(cls), {}
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"{where}: unknown option(s) {unknown} for {cls.__name__}; known: "
                     f"{sorted(known)}")
  defaults = _defaults(cls, base)
  for f in dataclasses.fields(cls):
    if f.name not in values:
      continue
    tp, value = hints[f.name], values[f.name]
    if dataclasses.is_dataclass(tp):
      kwargs[f.name] = from_dict(tp, value, f"{where}.{f.name}", defaults[f.name])
    elif _base(tp) is tuple and value is not None:
      kwargs[f.name] = tuple(value)
    else:
      kwargs[f.name] = value
  return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def flat(options) -> dict:
  """{flag name: value} of an options tree."""
  out = {}
  for name, path, *_ in flag_fields(type(options)):
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
