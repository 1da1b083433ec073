"""The page's JavaScript modules (draw/) import one way, read from their `import` lines (no browser needed).

What you do on the page is an event: the input modules (pad.js, photo.js) signal each change on the pad, the
request modules listen for it, send, and call the display modules with the answers. So an import goes down
the layers below, or to a module of its own layer, never up; no module imports itself back through others;
and the display modules import only the state, the painting and the tests' hooks.
"""
import re

import pytest

from conftest import ROOT

PAGE = ROOT / "draw"
# Each module's layer, from the top: a new module gets one here (the test says so where it has none).
LAYERS = {
    "draw.js": 4,  # the page starts here
    "requests.js": 3, "explain.js": 3, "collect.js": 3,  # request modules: they send, and listen to the pad
    "pad.js": 2, "photo.js": 2,  # input modules: each change an event on the pad
    "answer.js": 1, "number.js": 1,  # display modules
    "server.js": 0, "state.js": 0, "hooks.js": 0, "paint.js": 0,  # what all may use
}
DISPLAY_MAY_IMPORT = {"state.js", "paint.js", "hooks.js"}
IMPORT = re.compile(r'^import\s+(?:[^"\']*?\s+from\s+)?["\']\./([\w.-]+)["\'];?\s*$')


def imports(text):
    """The modules a module's `import` lines name (they come first, one a line: the page's style)."""
    found = []
    for line in text.splitlines():
        if line.startswith("import"):
            match = IMPORT.match(line)
            assert match, f"an import line this test cannot read: {line!r}"
            found.append(match.group(1))
    return found


def graph(files):
    """{module: [modules it imports]} for {name: source}."""
    return {name: imports(text) for name, text in files.items()}


def page():
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(PAGE.glob("*.js"))}


def cycle(edges):
    """One import cycle as a list of modules (its first repeated at the end), or None."""
    done, path = set(), []

    def visit(m):
        if m in path:
            return path[path.index(m):] + [m]
        if m in done:
            return None
        path.append(m)
        for n in edges.get(m, []):
            found = visit(n)
            if found:
                return found
        path.pop()
        done.add(m)
        return None

    for m in sorted(edges):
        found = visit(m)
        if found:
            return found
    return None


def wrong_way(edges):
    """Every import that goes up a layer, from a display module to anything but the state, painting and hooks, or
    to server.js (which sends) from any but a request module."""
    out = []
    for m, targets in sorted(edges.items()):
        for t in targets:
            display_wide = LAYERS[m] == 1 and t not in DISPLAY_MAY_IMPORT
            sends = t == "server.js" and LAYERS[m] != 3
            if LAYERS[t] > LAYERS[m] or display_wide or sends:
                out.append(f"{m} imports {t}")
    return out


@pytest.mark.quick
def test_the_page_modules_import_one_way():
    edges = graph(page())
    assert sorted(edges) == sorted(LAYERS), "each module in draw/ has a layer in LAYERS (and each there a file)"
    assert all(t in LAYERS for targets in edges.values() for t in targets), edges
    assert cycle(edges) is None, f"an import cycle: {' -> '.join(cycle(edges))}"
    assert wrong_way(edges) == []
    assert [m for m, targets in edges.items() if "draw.js" in targets] == []  # the page's start, imported by none


@pytest.mark.quick
def test_each_change_the_input_modules_signal_is_heard():
    """pad.js and photo.js send nothing: they signal events on the pad, and a request module listens for each."""
    files = page()
    signalled = {name for m in ("pad.js", "photo.js") for name in re.findall(r'signal\("(\w+)"', files[m])}
    assert signalled == {"changed", "cleared", "photo"}, signalled
    requests = "".join(text for m, text in files.items() if LAYERS[m] == 3)
    for name in signalled:
        assert f'"{name}"' in requests and "addEventListener" in requests, name
    assert not any("post(" in files[m] or "fetch(" in files[m] for m in ("pad.js", "photo.js", "answer.js"))


@pytest.mark.quick
def test_the_checks_catch_a_cycle_and_an_import_the_wrong_way():
    """The page as it was (answer.js and explain.js importing each other; pad.js importing requests.js, which
    imports pad.js) is caught, as is a display module importing a request module."""
    was = {"answer.js": ["explain.js", "hooks.js"], "explain.js": ["answer.js", "pad.js"],
           "pad.js": ["requests.js"], "requests.js": ["pad.js"]}
    assert cycle(was) in (["answer.js", "explain.js", "answer.js"], ["explain.js", "answer.js", "explain.js"])
    assert cycle({"pad.js": ["requests.js"], "requests.js": ["pad.js"]}) == ["pad.js", "requests.js", "pad.js"]
    assert cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert wrong_way({"number.js": ["requests.js"], "pad.js": ["explain.js"], "answer.js": ["pad.js"]}) == [
        "answer.js imports pad.js", "number.js imports requests.js", "pad.js imports explain.js"]
    assert wrong_way({"answer.js": ["server.js"]}) == ["answer.js imports server.js"]  # a display module sends nothing
    assert wrong_way({"photo.js": ["server.js"]}) == ["photo.js imports server.js"]  # nor does an input module
    assert imports('import {a, b} from "./x.js";\nimport "./y.js";\nconst c = 1;\n') == ["x.js", "y.js"]
