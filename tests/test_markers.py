"""The tool markers (pyproject.toml; tests/conftest.py says what each means) match what the tests run.

An AST walk over tests/test_*.py; no test is imported or run. For every test function it collects
the calls it makes: in its body, in the module's helpers it calls, in the fixtures it takes, and in
conftest.py's helpers, following them with their literal arguments bound (so a helper's
``simulator="icarus"`` default is seen, and an ``if simulate:`` branch its caller turns off is
not). A call to an entry point in ENTRY runs a tool:

* rule 1: a test that reaches an entry point carries that tool's marker (a simulator chosen at run
  time, e.g. by the config, needs ``verilator`` or ``icarus``); a test that reaches a flow, the CLI
  or a subprocess (HEAVY: anything may run) carries at least one tool marker;
* rule 2: a tool marker has a reason: the test reaches that tool, a simulator chosen at run time
  (for ``verilator`` / ``icarus``), or a HEAVY call.

A test whose entry-point calls are refused before the tool starts (bad arguments, a config error)
is listed in EXEMPT with the reason; an exemption that no longer applies fails as well.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
#: the markers ``make test-fast`` deselects, besides ``slow``
TOOLS = ("hls4ml", "train", "verilator", "icarus", "yosys", "browser")
SIMULATORS = ("verilator", "icarus")
#: a simulator the code picks at run time (the fuzzer's "auto", verify.simulator of a config)
CHOSEN = "<chosen at run time>"

#: entry point -> (tools it runs, its simulator argument as (position or None, default) or None)
ENTRY: dict[str, tuple[frozenset[str], tuple[int | None, str] | None]] = {
    "codesign.convert.convert_model": (frozenset({"hls4ml"}), None),
    "codesign.convert.run": (frozenset({"hls4ml"}), None),
    "codesign.pipeline.convert": (frozenset({"hls4ml"}), None),
    "codesign.simtools.verilator_lint": (frozenset({"verilator"}), None),
    "codesign.pipeline.lint": (frozenset({"verilator"}), None),
    "codesign.pipeline.simulate": (frozenset(), (None, "verilator")),
    "codesign.verify.verify_design": (frozenset(), (None, "verilator")),
    "codesign.verify.run": (frozenset(), (None, CHOSEN)),
    "codesign.fastsim.run_stream": (frozenset(), (None, "verilator")),
    "codesign.fastsim.build": (frozenset(), (4, "verilator")),
    "codesign.simtools.run_cocotb": (frozenset(), (None, "verilator")),
    "codesign.synth.synthesize": (frozenset({"yosys"}), None),
    "codesign.synth.run": (frozenset({"yosys"}), None),
    "codesign.train.run": (frozenset({"train"}), None),
    "codesign.tools.fuzz.run_case": (frozenset({"hls4ml", "verilator"}), (None, "auto")),
}
#: programs a test runs itself, found with ``shutil.which(name)``; the only C++ the tests compile
#: is tests/apfixed_ref.cpp against hls4ml's ap_types headers, so g++ counts as ``hls4ml``
PROGRAMS = {"iverilog": "icarus", "vvp": "icarus", "yosys": "yosys", "verilator": "verilator",
            "g++": "hls4ml", "chromium": "browser"}
#: calls that may run any tool, depending on their arguments or the configuration
HEAVY = {"codesign.flow.run_flow", "codesign.flow.run_stage", "codesign.cli.main", "subprocess.run",
         "subprocess.Popen"}

#: "file::test" -> (what rule 1 does not ask of it: tools, "sim" or "heavy"; why)
EXEMPT: dict[str, tuple[set[str], str]] = {
    "test_bad_inputs.py::test_unknown_layer_in_layer_reuse_factor":
        ({"hls4ml"}, "convert_model refuses the config before hls4ml converts"),
    "test_bad_inputs.py::test_cli_rtl_on_empty_run_dir": ({"heavy"}, "the CLI refuses: no hls stage"),
    "test_bad_inputs.py::test_cli_verify_on_empty_run_dir": ({"heavy"}, "the CLI refuses: no rtl stage"),
    "test_bad_inputs.py::test_cli_import_with_mismatched_weights":
        ({"heavy"}, "the CLI's import refuses the weights; nothing trains"),
    "test_bad_inputs.py::test_output_dir_not_writable": ({"heavy"}, "the CLI cannot create its run dir"),
    "test_convert.py::test_unknown_layer_in_reuse_factors_names_layers":
        ({"hls4ml"}, "convert_model refuses the config before hls4ml converts"),
    "test_fastsim.py::test_bad_arguments_name_the_culprit":
        ({"icarus"}, "run_stream refuses the arguments before it builds"),
    "test_interrupts.py::test_second_flow_on_a_locked_dir_exits_2_with_the_pid":
        ({"heavy"}, "the CLI is refused by the run-directory lock before any stage"),
    "test_interrupts.py::test_out_that_cannot_be_created_is_one_line_exit_2":
        ({"heavy"}, "the CLI cannot create its run dir"),
    "test_interrupts.py::test_missing_config_is_one_line": ({"heavy"}, "the CLI cannot read its config"),
    "test_interrupts.py::test_os_error_from_a_stage_is_one_line":
        ({"heavy"}, "cli.main runs a stand-in command that raises an OSError"),
    "test_reference_models.py::test_layer_named_input_is_refused_by_name":
        ({"hls4ml"}, "convert_model refuses the reserved layer name before hls4ml converts"),
    "test_reference_models.py::test_qkeras_mnist_dense_upstream_config":
        ({"verilator"}, "the RTL backend refuses the design before it is linted"),
    "test_sweep.py::test_killed_process_then_rerun": ({"heavy"}, "the subprocess sweeps fake points"),
    "test_sweep.py::test_sigterm_mid_ray_sweep_cancels_and_writes_the_results":
        ({"heavy"}, "the subprocess sweeps fake points"),
    "test_simtools.py::test_a_build_directory_left_by_an_interrupted_build_starts_afresh":
        ({"verilator"}, "run_cocotb drives a stand-in runner; no simulator is started"),
    "test_synth.py::test_unknown_family_lists_valid_ones": ({"yosys"}, "refused before Yosys starts"),
    "test_synth.py::test_missing_source_is_named": ({"yosys"}, "refused before Yosys starts"),
    "test_train.py::test_unknown_layer_bits_name_is_refused": ({"train"}, "train.run refuses the config"),
    "test_train.py::test_cnn_image_shape_errors": ({"train"}, "train.run refuses the image shape"),
    "test_train.py::test_cnn_unknown_layer_bits_lists_conv_names": ({"train"}, "train.run refuses it"),
    "test_wheel.py::test_version_names_codesign_packages_and_tools":
        ({"heavy"}, "codesign --version only asks the tools for their versions"),
    "test_wheel.py::test_version_names_what_is_missing":
        ({"heavy"}, "codesign --version only asks the tools for their versions"),
}

UNKNOWN = "<unknown>"  # a value the walk cannot tell from the source
#: pytest's own markers
BUILTIN_MARKS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}


@dataclass
class Uses:
    """What a function reaches."""

    tools: set[str] = field(default_factory=set)
    sim: bool = False  # a simulator chosen at run time
    heavy: bool = False
    via: list[str] = field(default_factory=list)  # the calls found, for the messages

    def add(self, other: Uses) -> None:
        self.tools |= other.tools
        self.sim |= other.sim
        self.heavy |= other.heavy
        self.via += [v for v in other.via if v not in self.via]


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef]  # module-level defs: helpers, fixtures, tests
    fixtures: set[str]
    aliases: dict[str, str]  # local name -> qualified name of what was imported


def _is_fixture(fn: ast.FunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            return True
    return False


def parse_module(name: str, source: str) -> Module:
    tree = ast.parse(source, name)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):  # imports inside functions too
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return Module(name, tree, functions, {n for n, f in functions.items() if _is_fixture(f)}, aliases)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


class Walker:
    """The tool uses reachable from a test of ``module``, arguments bound where they are literals."""

    def __init__(self, module: Module, conftest: Module) -> None:
        self.module, self.conftest = module, conftest
        self.memo: dict[tuple[str, str, tuple[tuple[str, Any], ...]], Uses] = {}
        self.stack: set[tuple[str, str]] = set()

    def _helper(self, mod: Module, name: str) -> tuple[Module, ast.FunctionDef] | None:
        """The module-level function (or conftest helper) a bare name calls, if any."""
        if name in mod.functions:
            return mod, mod.functions[name]
        target = mod.aliases.get(name, "")
        if target.startswith("conftest.") and target.split(".", 1)[1] in self.conftest.functions:
            return self.conftest, self.conftest.functions[target.split(".", 1)[1]]
        return None

    @staticmethod
    def _qualified(mod: Module, node: ast.AST) -> str | None:
        dotted = _dotted(node)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        return mod.aliases[head] + (f".{rest}" if rest else "") if head in mod.aliases else dotted

    @staticmethod
    def _value(node: ast.AST | None, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env.get(node.id, UNKNOWN)
        return UNKNOWN

    def _bind(self, fn: ast.FunctionDef, call: ast.Call, env: dict[str, Any]) -> dict[str, Any]:
        a = fn.args
        positional = [*a.posonlyargs, *a.args]
        if any(isinstance(x, ast.Starred) for x in call.args) or any(k.arg is None for k in call.keywords):
            return {p.arg: UNKNOWN for p in [*positional, *a.kwonlyargs]}
        bound = {p.arg: self._value(d, {}) for p, d in zip(positional[len(positional) - len(a.defaults):],
                                                            a.defaults)}
        bound.update({p.arg: self._value(d, {}) if d is not None else UNKNOWN
                      for p, d in zip(a.kwonlyargs, a.kw_defaults)})
        bound.update({p.arg: self._value(x, env) for p, x in zip(positional, call.args)})
        bound.update({k.arg: self._value(k.value, env) for k in call.keywords if k.arg})
        return bound

    def function(self, mod: Module, fn: ast.FunctionDef, env: dict[str, Any]) -> Uses:
        key = (mod.name, fn.name, tuple(sorted((k, v if isinstance(v, (str, int, float, bool, type(None)))
                                                else UNKNOWN) for k, v in env.items())))
        if key in self.memo:
            return self.memo[key]
        if (mod.name, fn.name) in self.stack:  # recursion
            return Uses()
        self.stack.add((mod.name, fn.name))
        uses = Uses()
        for stmt in fn.body:
            uses.add(self._visit(mod, stmt, env))
        for p in [*fn.args.args, *fn.args.kwonlyargs]:  # the module's fixtures it takes
            if p.arg in mod.fixtures and p.arg != fn.name:
                uses.add(self.function(mod, mod.functions[p.arg], {}))
        self.stack.discard((mod.name, fn.name))
        self.memo[key] = uses
        return uses

    def _visit(self, mod: Module, node: ast.AST, env: dict[str, Any]) -> Uses:
        uses = Uses()
        if isinstance(node, ast.If):  # ``if flag:`` / ``if not flag:`` with the flag known
            negate = isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)
            test = node.test.operand if negate else node.test
            value = self._value(test, env)
            if isinstance(test, ast.Name) and value is not UNKNOWN:
                for stmt in node.body if bool(value) != negate else node.orelse:
                    uses.add(self._visit(mod, stmt, env))
                return uses
        if isinstance(node, ast.Call):
            uses.add(self._call(mod, node, env))
        for child in ast.iter_child_nodes(node):  # the call's arguments, nested defs and lambdas too
            uses.add(self._visit(mod, child, env))
        return uses

    def _call(self, mod: Module, call: ast.Call, env: dict[str, Any]) -> Uses:
        uses = Uses()
        if isinstance(call.func, ast.Name) and (helper := self._helper(mod, call.func.id)) is not None:
            callee, fn = helper
            return self.function(callee, fn, self._bind(fn, call, env))
        name = self._qualified(mod, call.func)
        if name in ENTRY:
            tools, sim = ENTRY[name]
            uses.tools |= tools
            uses.via.append(name.rsplit(".", 1)[-1])
            if sim is not None:
                position, value = sim
                if any(k.arg is None for k in call.keywords):  # **kwargs may name it
                    value = UNKNOWN
                for k in call.keywords:
                    if k.arg == "simulator":
                        value = self._value(k.value, env)
                if position is not None and len(call.args) > position:
                    value = self._value(call.args[position], env)
                if value in SIMULATORS:
                    uses.tools.add(value)
                elif value in (UNKNOWN, CHOSEN, "auto"):
                    uses.sim = True
                # any other name is refused before a simulator starts
        elif name in HEAVY:
            uses.heavy = True
            uses.via.append(name)
        elif name == "shutil.which" and call.args and self._value(call.args[0], env) in PROGRAMS:
            program = self._value(call.args[0], env)
            uses.tools.add(PROGRAMS[program])
            uses.via.append(f"which({program})")
        return uses


def _marks(node: ast.AST) -> set[str]:
    """Marker names in ``pytest.mark.x``, ``pytest.mark.x(...)`` or a list/tuple of them."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return set().union(*(_marks(e) for e in node.elts))
    dotted = _dotted(node.func if isinstance(node, ast.Call) else node) or ""
    return {dotted.split(".")[2]} if dotted.startswith("pytest.mark.") and dotted.count(".") == 2 else set()


def marks_of_tests(mod: Module) -> dict[str, set[str]]:
    """test name -> its markers: the module's ``pytestmark`` and the test's decorators."""
    common: set[str] = set()
    for node in mod.tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                for t in node.targets):
            common = _marks(node.value)
    return {name: common.union(*(_marks(d) for d in fn.decorator_list))
            for name, fn in mod.functions.items() if name.startswith("test_") and name not in mod.fixtures}


def analyse() -> dict[str, tuple[set[str], Uses]]:
    """"file::test" -> (its markers, what it reaches)."""
    conftest = parse_module("conftest.py", (TESTS / "conftest.py").read_text())
    out = {}
    for path in sorted(TESTS.glob("test_*.py")):
        mod = parse_module(path.name, path.read_text())
        classes = [n.name for n in mod.tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")]
        assert not classes, f"{path.name}: test classes {classes}: teach tests/test_markers.py their markers"
        walker = Walker(mod, conftest)
        for name, marks in marks_of_tests(mod).items():
            out[f"{path.name}::{name}"] = (marks, walker.function(mod, mod.functions[name], {}))
    return out


@pytest.fixture(scope="module")
def analysis() -> dict[str, tuple[set[str], Uses]]:
    return analyse()


def test_tests_that_run_a_tool_carry_its_marker(analysis: dict[str, tuple[set[str], Uses]]) -> None:
    problems = []
    for test, (marks, uses) in analysis.items():
        exempt = EXEMPT.get(test, (set(), ""))[0]
        missing = sorted(uses.tools - marks - exempt)
        if missing:
            add = ", ".join(f"@pytest.mark.{m}" for m in missing)
            problems.append(f"{test}: add {add} (calls {uses.via})")
        if uses.sim and not marks & set(SIMULATORS) and "sim" not in exempt:
            problems.append(f"{test}: runs the simulator its config or the code picks: add the marker of "
                            f"that simulator (calls {uses.via})")
        if uses.heavy and not marks & set(TOOLS) and "heavy" not in exempt:
            problems.append(f"{test}: calls {uses.via}, which may run any tool: add the markers of what "
                            f"runs, or list the test in EXEMPT with the reason")
    assert not problems, "\n".join(problems)


def test_tool_markers_have_a_reason(analysis: dict[str, tuple[set[str], Uses]]) -> None:
    problems = []
    for test, (marks, uses) in analysis.items():
        for m in sorted(marks & set(TOOLS)):
            if not (m in uses.tools or uses.heavy or (m in SIMULATORS and uses.sim)):
                problems.append(f"{test}: marked {m} but reaches no {m} entry point (found {uses.via})")
    assert not problems, "\n".join(problems)


def test_exemptions_still_apply(analysis: dict[str, tuple[set[str], Uses]]) -> None:
    stale = []
    for test, (what, _) in EXEMPT.items():
        if test not in analysis:
            stale.append(f"{test}: no such test")
            continue
        marks, uses = analysis[test]
        reached = uses.tools | ({"sim"} if uses.sim else set()) | ({"heavy"} if uses.heavy else set())
        if not what <= reached or what & marks:
            stale.append(f"{test}: exempt from {sorted(what)}, reaches {sorted(reached)}, "
                         f"marked {sorted(marks)}")
    assert not stale, "\n".join(stale)


def test_markers_are_declared_and_test_fast_deselects_the_tools() -> None:
    """Every marker the tests use is declared in pyproject.toml (a typo would select nothing), and
    ``make test-fast`` runs an unmarked test and no test with slow or a tool marker."""
    root = TESTS.parent
    options = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {m.split(":")[0].strip() for m in options["markers"]}
    assert {"slow", *TOOLS} <= declared
    used = {}
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            for m in _marks(node) - declared - BUILTIN_MARKS:
                used.setdefault(m, path.name)
    assert not used, f"markers not declared in pyproject.toml: {used}"
    recipe = re.search(r"^test-fast:.*\n((?:\t.*\n)+)", (root / "Makefile").read_text(), re.M)
    assert recipe, "no test-fast target in the Makefile"
    expr = re.search(r'-m\s+"([^"]+)"', recipe.group(1))
    assert expr, "make test-fast selects no markers"

    def selected(marks: set[str]) -> bool:
        python = re.sub(r"\b(?!and\b|or\b|not\b)(\w+)\b", lambda w: str(w.group(1) in marks), expr.group(1))
        return bool(eval(compile(ast.parse(python, mode="eval"), "-m", "eval")))

    assert selected(set()) and selected({"parametrize"})
    assert not [m for m in ("slow", *TOOLS) if selected({m})], f"make test-fast runs some of {TOOLS}"


def test_the_entry_points_and_their_simulator_defaults() -> None:
    """ENTRY and HEAVY name real functions, and ENTRY's simulator arguments are theirs."""
    for name, (_, sim) in {**ENTRY, **{h: (frozenset(), None) for h in HEAVY}}.items():
        module, _, attr = name.rpartition(".")
        fn = getattr(importlib.import_module(module), attr)
        if sim is not None and sim[1] != CHOSEN:
            params = inspect.signature(fn).parameters
            assert params["simulator"].default == sim[1], name
            if sim[0] is not None:
                assert list(params).index("simulator") == sim[0], name


def test_the_walk_follows_helpers_defaults_fixtures_and_branches() -> None:
    source = '''
import pytest
from codesign import pipeline
from codesign.convert import convert_model as cm
from conftest import assert_verifies

@pytest.fixture
def converted(tmp_path):
    return cm(None, None, tmp_path)

def check(rtl, simulate=True, simulator="icarus"):
    pipeline.lint(rtl, None, None)
    if simulate:
        pipeline.simulate(rtl, None, None, None, simulator=simulator)

def test_a(converted):
    check(1)

def test_b():
    check(1, simulate=False)

def test_c(sim):
    check(1, True, sim)

def test_d():
    assert_verifies(1, 2, 3, 4)
'''
    mod = parse_module("m.py", source)
    walker = Walker(mod, parse_module("conftest.py", (TESTS / "conftest.py").read_text()))
    a, b, c, d = (walker.function(mod, mod.functions[f"test_{t}"], {}) for t in "abcd")
    assert (a.tools, a.sim) == ({"hls4ml", "verilator", "icarus"}, False)
    assert (b.tools, b.sim) == ({"verilator"}, False)
    assert (c.tools, c.sim) == ({"verilator"}, True)
    assert (d.tools, d.sim) == ({"verilator"}, False)  # conftest's default simulator
    assert marks_of_tests(mod) == {"test_a": set(), "test_b": set(), "test_c": set(), "test_d": set()}
