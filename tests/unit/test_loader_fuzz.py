"""The loader never crashes: whatever bytes a file holds, the answer is the model or an
InventoryError whose every line is FILE:LINE:COL: message.

Seeded, bounded inputs (so a failure replays): random bytes, mutations of the reference
inventory, and the shapes that used to end in a traceback (empty documents, deep nesting,
huge integers, aliases, surrogates, odd keys and tags).
"""

from __future__ import annotations

import random
import re
import resource
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from clusterctl.errors import InventoryError
from clusterctl.model import load
from clusterctl.model.loader import MAX_INVENTORY_BYTES
from clusterctl.model.schema import Inventory

REPO = Path(__file__).resolve().parents[2]
FULL = (REPO / "inventories" / "full.yaml").read_bytes()
MINIMAL = (REPO / "inventories" / "minimal.yaml").read_text()
LINE = re.compile(r"(?P<file>.+):(?P<line>[0-9]+):(?P<col>[0-9]+): \S.*")
# Characters that steer a YAML parser, to mutate with.
YAML_BYTES = b"[]{}:,-?&*!|>'\"%@`#\n\t \\\x00\x85\xe2\x80\xa8~"


def outcome(tmp_path: Path, data: bytes, name: str = "inv.yaml") -> Inventory | InventoryError:
    """Load `data` as a file; any exception but InventoryError escapes and fails the test."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        return load(path)
    except InventoryError as exc:
        lines = str(exc).split("\n")
        assert lines and len(lines) == len(exc.problems), str(exc)[:2000]
        for line in lines:
            m = LINE.fullmatch(line)
            assert m, f"not FILE:LINE:COL: message: {line[:300]!r}"
            assert m["file"] == str(path)
            assert int(m["line"]) >= 1 and int(m["col"]) >= 1
            assert len(line) < 2000, "an error line printed a whole value"
        return exc


def refused(tmp_path: Path, data: bytes) -> InventoryError:
    got = outcome(tmp_path, data)
    assert isinstance(got, InventoryError), "accepted"
    return got


def test_random_bytes(tmp_path: Path) -> None:
    rng = random.Random(10)
    for _ in range(300):
        size = rng.choice([0, 1, 2, 8, 64, 512])
        outcome(tmp_path, bytes(rng.getrandbits(8) for _ in range(size)))


def test_random_yaml_punctuation(tmp_path: Path) -> None:
    rng = random.Random(11)
    for _ in range(300):
        size = rng.randint(0, 200)
        outcome(tmp_path, bytes(rng.choice(YAML_BYTES + b"ab1") for _ in range(size)))


def test_mutations_of_the_reference_inventory(tmp_path: Path) -> None:
    # The reference inventory names files/example.com.*, relative to its folder.
    (tmp_path / "files").symlink_to(REPO / "inventories" / "files")
    rng = random.Random(12)
    for _ in range(150):
        data = bytearray(FULL)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            what = rng.randrange(4)
            if what == 0:
                data[at] = rng.choice(YAML_BYTES)
            elif what == 1:
                data[at:at] = bytes(rng.choice(YAML_BYTES) for _ in range(rng.randint(1, 8)))
            elif what == 2:
                del data[at : at + rng.randint(1, 40)]
            else:
                data = data[:at]
        outcome(tmp_path, bytes(data))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "   ",
        "# only a comment\n# and another\n",
        "~\n",
        "null\n",
        "---\n",
        "--- ~\n",
        "...\n",
        "---\n...\n",
        "--- \n---\n",
        "cluster: a\n---\ncluster: b\n",
        "[]\n",
        "{}\n",
        "3\n",
        '"text"\n',
        "- a\n- b\n",
    ],
    ids=lambda t: repr(t)[:30],
)
def test_empty_and_odd_documents_are_refused_at_a_position(tmp_path: Path, text: str) -> None:
    refused(tmp_path, text.encode())


@pytest.mark.parametrize("depth", [65, 2_000, 100_000])
@pytest.mark.parametrize("shape", ["[", "{a: ", "- ", "a:\n"])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int, shape: str) -> None:
    if shape == "- ":
        text = "cluster:\n" + "- " * depth + "x\n"  # `- - - x`: lists in lists, one line
    elif shape == "a:\n":
        # Block mappings need one more space each level: 1,200 levels is 700 KB already.
        text = "".join(" " * i + "a:\n" for i in range(min(depth, 1_200)))
    else:
        closing = {"[": "]", "{a: ": "}"}[shape]
        text = "cluster: " + shape * depth + "1" + closing * depth + "\n"
    exc = refused(tmp_path, text.encode())
    assert "YAML:" in str(exc) or "expected" in str(exc)


@pytest.mark.parametrize("digits", [4_301, 5_000, 100_000])
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("port: 8080", "port: {n}"),  # a server's port
        ("port: 80}", "port: {n}}"),  # a listener's port
        ("port: 8080", "port: 8080, weight: {n}"),
        ("port: 8080", "port: 8080, weight: -{n}"),
        ("port: 8080", "port: 8080, weight: 0x{n}"),
        ("port: 8080", "port: 8080, weight: 1_{n}"),
        ("default_pool: app", "default_pool: app\n    max_body: {n}"),
        ("cluster: minimal", "cluster: {n}"),  # a text field given a huge number
    ],
)
def test_huge_integers_are_refused_with_their_field(
    tmp_path: Path, digits: int, old: str, new: str
) -> None:
    assert old in MINIMAL, old
    exc = refused(tmp_path, MINIMAL.replace(old, new.replace("{n}", "9" * digits), 1).encode())
    assert len(exc.problems) == 1, str(exc)
    shown = digits + 1 if "1_" in new else digits
    assert f"{shown}-digit" in str(exc), str(exc)


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\ncluster: *a{levels}\n"


@pytest.mark.parametrize(
    "text",
    [
        billion_laughs(),
        "cluster: &x shop\nfrontends: *x\n",
        MINIMAL.replace("cluster: minimal", "cluster: &c minimal"),
        MINIMAL + "defaults: {ssh: &s {user: deploy}}\n",
        MINIMAL.replace("    servers:", "    <<: {balance: first}\n    servers:"),
    ],
    ids=["billion-laughs", "alias", "anchor", "anchor-in-map", "merge-key"],
)
def test_aliases_and_anchors_are_refused_without_expanding(tmp_path: Path, text: str) -> None:
    tracemalloc.start()
    try:
        exc = refused(tmp_path, text.encode())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024, f"{peak} bytes to refuse {len(text)} bytes"
    assert "lol" not in str(exc)


def test_large_files_are_refused_and_nothing_big_is_printed(tmp_path: Path) -> None:
    exc = refused(tmp_path, b"cluster: " + b"x" * MAX_INVENTORY_BYTES + b"\n")
    assert "larger than 4 MiB" in str(exc)
    name = MINIMAL.replace("cluster: minimal", "cluster: " + "x" * 500_000).encode()
    exc = refused(tmp_path, name)
    assert len(str(exc)) < 500


@pytest.mark.parametrize(
    "value",
    [
        '"\\ud800"',
        '"\\udfff"',
        '"\\U0000d800"',
        "!!python/object:os.system x",
        "!!binary aGk=",
        "!!int 12",
        "!custom x",
        "2001-13-45",
        "2001-02-30 25:61:61",
        ".inf",
        "-.inf",
        ".nan",
        "1e999999",
        "0x",
        "0o9",
        "0b2",
        "+",
        "_",
        "'unterminated",
        "[a, b",
        "{a: 1, a: 2}",
        "{[a]: 1}",
        "{{a: 1}: 2}",
        "{1: a}",
        "{null: a}",
        "{true: a}",
        "? [a, b]\n  : c",
        "|\n  block\n  text",
        '"\\x00"',
        '"\\u2028"',
        '"a\\\nb"',
    ],
)
def test_odd_scalars_and_keys_are_refused(tmp_path: Path, value: str) -> None:
    for old in ("cluster: minimal", "port: 8080", "name: app"):
        assert old in MINIMAL
        key = old.split(":")[0]
        text = MINIMAL.replace(old, f"{key}: {value}", 1)
        got = outcome(tmp_path, text.encode())
        assert isinstance(got, InventoryError) or key == "cluster", (old, value)


def test_every_example_inventory_still_loads(tmp_path: Path) -> None:
    for path in sorted((REPO / "inventories").glob("*.yaml")):
        assert isinstance(load(path), Inventory)
    # A megabyte of plain, valid inventory loads, within a bounded memory.
    rows = "".join(
        f"  - name: p{i}\n    servers: [{{name: s{i}, address: 192.0.2.{i % 250 + 1}, port: 80}}]\n"
        for i in range(13_000)
    )
    text = (
        "cluster: big\nfrontends: [{name: lb1, kind: haproxy, address: 192.0.2.10}]\n"
        f"pools:\n{rows}services: [{{name: web, listen: [{{port: 80}}], default_pool: p0}}]\n"
    )
    assert 900_000 < len(text) < 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = outcome(tmp_path, text.encode(), "big.yaml")
    assert isinstance(got, Inventory), str(got)[:500]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 200 * 1024, f"loading 1 MB grew the process by {grown} KiB"


HOSTILE_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    2**63,
    10**200,
    1.5,
    float("inf"),
    float("nan"),
    "",
    " ",
    "x" * 5000,
    "a\nb",
    "\u202e",
    "../../etc/passwd",
    "/etc/shadow",
    "unix",
    "2001:db8::",
    "[::1]:22",
    "*",
    "{version}",
    "SRV-ID",
    "0s",
    "99999999999d",
    "1g",
    [],
    [None],
    ["a", 1],
    {},
    {"a": 1},
    {"name": None},
]


def _leaves(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    return out


def test_any_value_in_any_field_is_a_model_or_a_one_line_error(tmp_path: Path) -> None:
    # Type confusion through the whole schema: each round swaps a few values (or whole
    # sub-trees) of the reference inventory for hostile ones, then loads the result.
    import copy

    import yaml

    (tmp_path / "files").symlink_to(REPO / "inventories" / "files")
    reference = yaml.safe_load(FULL)
    spots = _leaves(reference)
    rng = random.Random(13)
    for _ in range(250):
        doc = copy.deepcopy(reference)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(spots)
            parent: Any = doc
            try:
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier swap replaced the way there
        outcome(tmp_path, yaml.safe_dump(doc, allow_unicode=True).encode())


def test_a_20000_server_inventory_in_block_style_loads(tmp_path: Path) -> None:
    # Large shops write their inventories in block style, one key a line: 20,000 servers are
    # about 1.5 MiB, within the bound, and an error on the last line still names it.
    lines = ["cluster: big", "frontends:", "  - name: lb1", "    kind: haproxy"]
    lines += ["    address: 192.0.2.10", "pools:"]
    for p in range(1000):
        lines += [f"  - name: p{p}", "    servers:"]
        for s in range(20):
            n = p * 20 + s
            lines += [
                f"      - name: s{n}",
                f"        address: 192.0.2.{n % 254 + 1}",
                f"        port: {1024 + n // 254}",
            ]
    lines += ["services:", "  - name: web", "    listen: [{port: 80}]", "    default_pool: p0"]
    text = "\n".join(lines) + "\n"
    assert 1024 * 1024 < len(text) < MAX_INVENTORY_BYTES
    path = tmp_path / "big.yaml"
    path.write_text(text)
    inv = load(path)
    assert sum(len(p.servers) for p in inv.pools) == 20_000
    path.write_text(text.replace("default_pool: p0", "default_pool: p1000"))
    with pytest.raises(InventoryError) as info:
        load(path)
    assert str(info.value.problems[0]).startswith(f"{path}:{len(lines)}:")
