"""The package's shape holds by itself: commands on top import no other command, each room
imports only rooms beneath it, modules stay small, one function loads a model, flags live
in the commands, test helpers live in tests/."""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ctdist"
# Every `python -m ctdist.X` released so far (README, Makefile, launchers, the notebook).
COMMANDS = {"train", "evaluate", "calibrate", "predict", "explain", "report", "compare", "cv",
            "bench", "export"}
# The rooms, lowest first: a module may import its own room and the rooms before it.
ROOMS = ["config", "store", "data", "model", "training", "scoring", "saliency", "reporting",
         "workflows", "benchmarks", "cli"]
MAX_LINES = 250


def _modules():
  return sorted(p for p in PACKAGE.rglob("*.py"))


def _ctdist_imports(path: pathlib.Path) -> list[str]:
  """The ctdist modules `path` imports ("ctdist.data.plan", "ctdist.train", ...)."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ctdist":
      found += [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
      found += [a.name for a in node.names if a.name.split(".")[0] == "ctdist"]
  return found


def _room(path: pathlib.Path) -> str | None:
  parts = path.relative_to(PACKAGE).parts
  return parts[0] if len(parts) > 1 else None


def test_the_commands_are_the_top_floor_and_every_released_one_is_there():
  top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  assert top == COMMANDS
  for name in COMMANDS:
    text = (PACKAGE / f"{name}.py").read_text()
    assert 'if __name__ == "__main__":' in text, name
    assert f"python -m ctdist.{name}" in text.split('"""')[1], f"{name}: no run line"


def test_no_command_imports_another_command():
  for name in COMMANDS:
    imported = [m for m in _ctdist_imports(PACKAGE / f"{name}.py")
                if m.split(".")[1] in COMMANDS]
    assert not imported, f"ctdist.{name} imports the command(s) {imported}"


def test_every_room_imports_only_itself_and_the_rooms_beneath():
  rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
  assert rooms == set(ROOMS)
  for path in _modules():
    room = _room(path)
    if room is None:
      continue
    for module in _ctdist_imports(path):
      other = module.split(".")[1]
      assert other in ROOMS, f"{path.relative_to(PACKAGE)} imports the command {module}"
      assert ROOMS.index(other) <= ROOMS.index(room), (
          f"{path.relative_to(PACKAGE)} ({room}) reaches up to {module} ({other})")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_is_small_and_says_what_it_is(path):
  lines = path.read_text().splitlines()
  assert len(lines) <= MAX_LINES, f"{len(lines)} lines"
  doc = ast.get_docstring(ast.parse(path.read_text()))
  assert doc, "no module docstring"


def test_one_function_loads_a_model_and_no_second_config_class():
  loaders, loop_configs = [], []
  for path in _modules():
    text = path.read_text()
    if re.search(r"\bload_model\(", text):
      loaders.append(str(path.relative_to(PACKAGE)))
    if "LoopConfig" in text:
      loop_configs.append(str(path.relative_to(PACKAGE)))
  assert loaders == ["model/saved.py"]
  assert not loop_configs


def test_flags_are_defined_and_read_by_the_commands_only():
  for path in _modules():
    rel = str(path.relative_to(PACKAGE))
    text = path.read_text()
    if _room(path) is None or rel in ("config/flagtree.py", "cli/console.py"):
      continue  # the commands, the one flags<->options mapping, and its use by commands
    assert not re.search(r"\bflags\.FLAGS\b|\bDEFINE_", text), f"{rel} reads or defines flags"


def test_test_helpers_are_not_shipped():
  assert not list(PACKAGE.rglob("sanity.py"))
  for path in _modules():
    assert "pytest" not in path.read_text(), path
