"""Unit tests for workflows.diagram: the binding state diagram SVG drawn from machine.TRANSITIONS (issue 4).

The checks read the produced SVG back with xml.etree, so they hold for any layout the module computes:
every state and every (source, dest, trigger) is present, highlighting follows the path, text is escaped,
output is deterministic and no two state boxes overlap."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from workflows import diagram, machine

NS = "{http://www.w3.org/2000/svg}"
HAPPY = [(None, "invited", "invite"), ("invited", "invited", "start_verification"),
         ("invited", "invited", "verification_failed"), ("invited", "invited", "start_verification"),
         ("invited", "face_verified", "verification_passed"), ("face_verified", "accepted", "accept")]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def states(root) -> dict[str, ET.Element]:
    found = [g for g in root.iter(f"{NS}g") if "data-state" in g.attrib]
    names = [g.get("data-state") for g in found]
    assert len(names) == len(set(names)), f"a state drawn twice: {names}"
    return dict(zip(names, found))


def edges(root) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if "edge" in g.get("class", "").split()]


def classes(el) -> set[str]:
    return set(el.get("class", "").split())


def transitions():
    for t in machine.TRANSITIONS:
        for s in t["source"] if isinstance(t["source"], list) else [t["source"]]:
            yield s, t["dest"], t["trigger"]


def test_every_state_is_drawn_once():
    """Given the machine's states
    When the diagram is drawn without a path
    Then each state (new included) appears exactly once as a <g data-state> with a box and a tooltip."""
    drawn = states(parse(diagram.svg()))
    assert set(drawn) == set(machine.STATES)
    for name, g in drawn.items():
        assert g.find(f"{NS}rect") is not None and g.find(f"{NS}title") is not None, name


@pytest.mark.parametrize("source,dest,trigger", sorted(set(transitions())))
def test_every_transition_is_an_edge(source, dest, trigger):
    """Given one (source, dest, trigger) of machine.TRANSITIONS (a list source expanded)
    When the diagram is drawn
    Then exactly one edge has that source and dest, and its data-event lists the trigger."""
    match = [e for e in edges(parse(diagram.svg()))
             if (e.get("data-source"), e.get("data-dest")) == (source, dest)]
    assert len(match) == 1
    assert trigger in match[0].get("data-event").split()


def test_edges_are_exactly_the_transitions():
    """Given the machine definition
    When the diagram is drawn
    Then there is no edge the machine does not have, self-loops are marked `loop`, all others are not."""
    pairs = {(s, d) for s, d, _ in transitions()}
    drawn = edges(parse(diagram.svg()))
    assert {(e.get("data-source"), e.get("data-dest")) for e in drawn} == pairs
    for e in drawn:
        assert ("loop" in classes(e)) == (e.get("data-source") == e.get("data-dest"))
        assert e.find(f"{NS}path").get("marker-end", "").startswith("url(#")


def test_current_state_gets_class_current():
    """Given a binding in `accepted`
    When the diagram is drawn with current="accepted"
    Then that state's <g> has classes state and current, and no other state is current."""
    drawn = states(parse(diagram.svg(current="accepted", path=HAPPY)))
    assert {"state", "current"} <= classes(drawn["accepted"])
    assert [n for n, g in drawn.items() if "current" in classes(g)] == ["accepted"]


def test_path_edges_are_taken_and_states_visited():
    """Given a history invite → two verification attempts and one failure → passed → accept
    When the diagram is drawn with that path
    Then exactly the path's edges are `taken`, the invited loop counts its 3 passages, the path's states are
    visited, and untouched states are neither visited nor current."""
    root = parse(diagram.svg(current="accepted", path=HAPPY))
    taken = {(e.get("data-source"), e.get("data-dest")): e for e in edges(root) if "taken" in classes(e)}
    assert set(taken) == {("new", "invited"), ("invited", "invited"), ("invited", "face_verified"),
                          ("face_verified", "accepted")}
    assert taken[("invited", "invited")].get("data-count") == "3"
    assert taken[("new", "invited")].get("data-count") == "1"
    drawn = states(root)
    for name in ("new", "invited", "face_verified"):
        assert {"state", "visited"} <= classes(drawn[name]), name
    for name in ("authorized", "declined", "unbound"):
        assert not classes(drawn[name]) & {"visited", "current"}, name
    labels = " ".join("".join(t.itertext()) for t in root.iter(f"{NS}text"))
    assert "start_verification ×2" in labels


def test_terminal_states_are_marked():
    """Given the machine's terminal states
    When the diagram is drawn
    Then exactly those carry class terminal (drawn with a double border)."""
    drawn = states(parse(diagram.svg()))
    assert {n for n, g in drawn.items() if "terminal" in classes(g)} == set(machine.TERMINAL)
    assert all(len(drawn[n].findall(f"{NS}rect")) == 2 for n in machine.TERMINAL)


def test_labels_are_escaped():
    """Given state and event labels carrying markup and quotes
    When the diagram is drawn
    Then it still parses, no <script> element exists, and the text comes back verbatim."""
    evil = '<script>alert("x")</script> & \'q\''
    svg = diagram.svg(current="invited", path=HAPPY[:1], labels={"invited": evil, "new": evil},
                      event_labels={"invite": evil})
    root = parse(svg)
    assert "<script" not in svg
    assert not [el for el in root.iter() if el.tag.endswith("script")]
    assert "".join(states(root)["invited"].find(f"{NS}text").itertext()) == evil
    assert evil in root.get("aria-label")
    assert any("".join(t.itertext()) == evil for t in root.iter(f"{NS}text") if "edge-label" in classes(t))


def test_output_is_xml_with_accessible_svg_root():
    """Given any call
    When the output is parsed as XML
    Then the root is an <svg> with role=img, an aria-label, a viewBox and width 100%, and arrow markers."""
    root = parse(diagram.svg(labels={"invited": "已邀请"}))
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    assert len(root.get("viewBox").split()) == 4 and root.get("width") == "100%"
    assert root.find(f"{NS}defs/{NS}marker") is not None


def test_deterministic():
    """Given the same inputs twice
    When the diagram is drawn twice
    Then the two strings are identical."""
    kwargs = dict(current="accepted", path=HAPPY, labels={"accepted": "已接受"}, event_labels={"accept": "接受"})
    assert diagram.svg(**kwargs) == diagram.svg(**kwargs)
    assert diagram.svg() == diagram.svg()


@pytest.mark.parametrize("labels", [None, {"verification_failed": "核验失败", "face_verified": "已核验"},
                                    {s: s.upper() * 3 for s in machine.STATES}])
def test_no_two_state_boxes_overlap_and_all_fit(labels):
    """Given default, Chinese or very long state labels
    When the diagram is drawn
    Then no two state boxes intersect and every box lies inside the viewBox."""
    root = parse(diagram.svg(labels=labels))
    boxes = {n: tuple(float(g.find(f"{NS}rect").get(a)) for a in ("x", "y", "width", "height"))
             for n, g in states(root).items()}
    names = sorted(boxes)
    for i, a in enumerate(names):
        ax, ay, aw, ah = boxes[a]
        for b in names[i + 1:]:
            bx, by, bw, bh = boxes[b]
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    vx, vy, vw, vh = map(float, root.get("viewBox").split())
    for n, (x, y, w, h) in boxes.items():
        assert vx <= x and x + w <= vx + vw and vy <= y and y + h <= vy + vh, n


def test_columns_follow_longest_path():
    """Given the machine's main line new → invited → face_verified → accepted → authorized → unbound
    When the diagram is drawn
    Then each state on it lies strictly right of the previous one (layered left to right)."""
    boxes = {n: float(g.find(f"{NS}rect").get("x")) for n, g in states(parse(diagram.svg())).items()}
    line = ["new", "invited", "face_verified", "accepted", "authorized", "unbound"]
    assert all(boxes[a] < boxes[b] for a, b in zip(line, line[1:]))
