"""The page's ES modules depend one way: a static read of their imports, no browser.

Layers, lowest first: ``js/core`` (config, state, events, util), ``js/http``,
``js/operations``, ``js/actions``, ``js/views``, then ``app.js``. A module imports only from
its own layer or a lower one, a view never from another view, and nothing in a circle.
"""

from __future__ import annotations

import re
from pathlib import Path
from posixpath import dirname
from posixpath import join
from posixpath import normpath

import pytest

STATIC = Path(__file__).resolve().parent.parent / "ollama_deck" / "static"

LAYERS = ("js/core", "js/http", "js/operations", "js/actions", "js/views", "app.js")
VIEWS = "js/views"

# Comments first, so an import in one does not count; strings stay as they are (a "//"
# inside one, as in a URL, is no comment start because it does not begin a line).
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"^\s*//.*$", re.M)
# `import x from "./a.js"`, `import {a,\n b} from "./a.js"`, `import "./a.js"`,
# `export {a} from "./a.js"`, `export * as b from "./a.js"`, `import("./a.js")`. The clause
# between the keyword and `from` holds names, braces, commas, `*`, `as` and white space only,
# so one match never runs across two statements.
_STATIC_IMPORT = re.compile(
    r"""(?<![\w$.])(?:import|export)\s*(?:[\w$\s{},*]*?\bfrom\s*)?["']([^"']+)["']"""
)
_DYNAMIC_IMPORT = re.compile(r"""(?<![\w$.])import\s*\(\s*["']([^"']+)["']\s*\)""")


def imports_of(source: str) -> list[str]:
    """The module specifiers a module's source imports or re-exports, in order."""
    code = _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", source))
    found = [(m.start(), m.group(1)) for m in _STATIC_IMPORT.finditer(code)]
    found += [(m.start(), m.group(1)) for m in _DYNAMIC_IMPORT.finditer(code)]
    return [spec for _, spec in sorted(found)]


def module_graph(root: Path) -> dict[str, set[str]]:
    """Each .js file under ``root`` (as a posix path relative to it) -> the modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.js")):
        name = path.relative_to(root).as_posix()
        graph[name] = {
            normpath(join(dirname(name), spec))
            for spec in imports_of(path.read_text(encoding="utf-8"))
        }
    return graph


def layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "/"):
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or one importing itself
    (Tarjan's algorithm, iterative so a long chain cannot exhaust the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next((t for t in targets if t in graph), None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        own = layer_of(module)
        if own is None:
            problems.append(f"{module} is in no layer (one of {', '.join(LAYERS)})")
            continue
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs is None:
                continue  # reported as the module's own problem, or unresolved below
            if theirs > own:
                problems.append(f"{module} imports {target}, from a higher layer")
            elif own == theirs == LAYERS.index(VIEWS):
                problems.append(f"{module} imports {target}: views talk through events")
    return problems


# ---------------------------------------------------------------- the page itself


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph(STATIC)


def test_the_reader_sees_the_page(graph):
    # A test that read no imports could not fail: app.js reaches every module.
    assert len(graph["app.js"]) >= 10
    reached, pending = set(), ["app.js"]
    while pending:
        module = pending.pop()
        if module not in reached:
            reached.add(module)
            pending.extend(graph.get(module, ()))
    assert reached == set(graph), f"modules app.js never loads: {sorted(set(graph) - reached)}"


def test_every_import_is_a_module_of_the_page(graph):
    missing = [(m, t) for m, targets in graph.items() for t in targets if t not in graph]
    assert not missing, f"imports of files that are not there: {missing}"


def test_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, "modules that import each other in a circle: " + "; ".join(
        " <-> ".join(component) for component in found
    )


def test_imports_go_down_the_layers_and_views_not_to_views(graph):
    problems = layer_violations(graph)
    assert not problems, "\n".join(problems)


STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def test_no_status_set_is_typed_in_javascript():
    """The sets come from the server's lifecycle vocabulary (#deck-config), not from the page."""
    listed = re.compile(r"""\[\s*["'](?:""" + "|".join(STATUSES) + r""")["']\s*,""")
    offenders = [
        path.relative_to(STATIC).as_posix()
        for path in STATIC.rglob("*.js")
        if listed.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_page_config_carries_the_lifecycle(app):
    from ollama_deck.blueprints.pages import page_config
    from ollama_deck.lifecycle import vocabulary

    with app.test_request_context("/"):
        assert page_config()["lifecycle"] == vocabulary()


# ---------------------------------------------------------------- the checks can fail


def test_the_reader_takes_every_form_of_import():
    source = """
    import { a,
      b as c } from "./one.js";
    import * as two from './two.js';
    import three from "../three.js";
    import "./four.js";
    export { d } from "./five.js";
    export * from "./six.js";
    export const seven = 7; // not an import: "./no.js"
    const eight = await import("./eight.js");
    // import { gone } from "./commented.js";
    /* import { gone } from "./commented-too.js"; */
    const url = "http://example.org/import";
    """
    assert imports_of(source) == [
        "./one.js",
        "./two.js",
        "../three.js",
        "./four.js",
        "./five.js",
        "./six.js",
        "./eight.js",
    ]


def test_a_cycle_is_found():
    graph = {
        "app.js": {"js/views/a.js"},
        "js/views/a.js": {"js/actions/x.js"},
        "js/actions/x.js": {"js/actions/y.js"},
        "js/actions/y.js": {"js/actions/x.js"},
        "js/core/self.js": {"js/core/self.js"},
    }
    assert cycles(graph) == [["js/actions/x.js", "js/actions/y.js"], ["js/core/self.js"]]


def test_layer_breaks_are_found():
    graph = {
        "app.js": set(),
        "js/views/a.js": {"js/views/b.js", "js/core/config.js"},
        "js/views/b.js": set(),
        "js/core/config.js": {"js/http/http.js"},
        "js/http/http.js": set(),
        "js/elsewhere.js": set(),
    }
    assert layer_violations(graph) == [
        "js/core/config.js imports js/http/http.js, from a higher layer",
        "js/elsewhere.js is in no layer (one of js/core, js/http, js/operations, "
        "js/actions, js/views, app.js)",
        "js/views/a.js imports js/views/b.js: views talk through events",
    ]
