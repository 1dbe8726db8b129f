"""Damaged or incomplete run directories: every reading command (info, graph, export, render,
serve) refuses them with one line naming the file, instead of a traceback or silent nonsense."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import CliRunner

from summit.errors import SummitError

CORE = ("run.json", "classes.parquet", "activations.parquet", "influence.parquet")


def _edit_meta(fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        meta = json.loads((run / "run.json").read_text())
        fn(meta)
        (run / "run.json").write_text(json.dumps(meta))
    return damage


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    return damage


def _remove(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(text)


def _set_channels(layer: int, n: int) -> Callable[[dict], None]:
    def fn(meta: dict) -> None:
        meta["layers"][layer]["channels"] = n
    return fn


def _channels_moved(meta: dict) -> None:
    """Same total (the row count still fits), but per layer the Parquet disagrees."""
    meta["layers"][0]["channels"] -= 64
    meta["layers"][1]["channels"] += 64


def _edit_table(name: str, fn: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        pq.write_table(fn(pq.read_table(run / name)), run / name)
    return damage


def _column(name: str, fn: Callable[[pa.Table], pa.Array]) -> Callable[[pa.Table], pa.Table]:
    return lambda t: t.set_column(t.schema.names.index(name), name, fn(t))


def _ints(t: pa.Table, value: int) -> pa.Array:
    return pa.array([value] * len(t), pa.int32())


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "run.json not JSON": (_write("run.json", '{"model": "squeezenet1_1", '), "run.json: not valid JSON"),
    "run.json empty": (_write("run.json", ""), "run.json: not valid JSON"),
    "run.json a list": (_write("run.json", "[1, 2, 3]"), "run.json: expected a JSON object, got list"),
    "run.json without layers": (_edit_meta(lambda m: m.pop("layers")), "run.json: 'layers' is missing or not list"),
    "run.json without k": (_edit_meta(lambda m: m.pop("k")), "run.json: 'k' is missing or not int"),
    "run.json channels text": (_edit_meta(_set_channels(0, "x")), "layers[0].'channels' is missing or not int"),
    "run.json pairs wrong": (_edit_meta(lambda m: m.__setitem__("pairs", [{"name": 3}])), "pairs[0].'name'"),
    "run.json dataset wrong": (_edit_meta(lambda m: m.__setitem__("dataset", [])), "'dataset' is missing or not dict"),
    "images disagree": (_edit_meta(lambda m: m["dataset"].__setitem__("n_images", 160)),
                        "holds 24 images but run.json says 160"),
    "fewer channels": (_edit_meta(_set_channels(1, 100)),
                       "activations.parquet: 14592 rows do not fit run.json's 19 classes x 228 channels"),
    "channels moved": (_edit_meta(_channels_moved), "layer fire2 has channels 0..127 but run.json says 64"),
    "classes truncated": (_truncate("classes.parquet"), "classes.parquet: unreadable"),
    "classes missing": (_remove("classes.parquet"), "classes.parquet: missing"),
    "activations truncated": (_truncate("activations.parquet"), "activations.parquet: unreadable"),
    "activations missing": (_remove("activations.parquet"), "activations.parquet: missing"),
    "influence truncated": (_truncate("influence.parquet"), "influence.parquet: unreadable"),
    "influence missing": (_remove("influence.parquet"), "influence.parquet: missing"),
    "classes not Parquet": (_write("classes.parquet", "class,name\n0,a\n"), "classes.parquet: unreadable"),
    "run.json 200,000 deep": (_write("run.json", _nested(200_000)), "run.json: JSON nested too deep to read"),
    "skipped entries ints": (_edit_meta(lambda m: m["dataset"].__setitem__("skipped", [1, 2])),
                             "dataset.skipped[0].'path' is missing or not str"),
    "unreadable entries text": (_edit_meta(lambda m: m["dataset"].__setitem__("unreadable", ["x"])),
                                "dataset.unreadable[0].'path' is missing or not str"),
    "ubiquitous a list": (_edit_meta(lambda m: m.__setitem__("ubiquitous", [1, 2])),
                          "'ubiquitous' is missing or not dict"),
    "ubiquitous channel without number": (
        _edit_meta(lambda m: m.__setitem__("ubiquitous", {"channels": [{"layer": "fire2"}]})),
        "ubiquitous.channels[0].'channel' is missing or not int"),
    "selections empty": (_edit_meta(lambda m: m.__setitem__("selections", [])),
                         "'selections' must be a non-empty list of names"),
    "selections numbers": (_edit_meta(lambda m: m.__setitem__("selections", [1])),
                           "'selections' must be a non-empty list of names"),
    "stages numbers": (_edit_meta(lambda m: m.__setitem__("stages", [1])), "stages[0].'name' is missing or not str"),
    "n_images text": (_edit_table("classes.parquet", _column("n_images", lambda t: pa.array(
        [str(x) for x in t["n_images"].to_pylist()]))), "classes.parquet: column 'n_images' is string, not integer"),
    "class names integers": (_edit_table("classes.parquet", _column("name", lambda t: pa.array(range(len(t))))),
                             "classes.parquet: column 'name' is int64, not text"),
    "influence count text": (_edit_table("influence.parquet", _column("count", lambda t: pa.array(
        [str(x) for x in t["count"].to_pylist()]))), "influence.parquet: column 'count' is string, not integer"),
    "influence without count": (_edit_table("influence.parquet", lambda t: t.drop_columns(["count"])),
                                "influence.parquet: column(s) count missing"),
}

# Damage in influence values is found where the rows are read: by the graph readers (the server reads
# the whole table when it starts), not by info or render.
ROWS_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "influence src out of range": (_edit_table("influence.parquet", _column("src", lambda t: pa.array(
        [x + 10_000 for x in t["src"].to_pylist()], pa.int32()))), "src 10"),
    "influence src negative": (_edit_table("influence.parquet", _column("src", lambda t: _ints(t, -1))), "src -1"),
    "influence dst negative": (_edit_table("influence.parquet", _column("dst", lambda t: _ints(t, -1))), "dst -1"),
    "influence dst out of range": (_edit_table("influence.parquet", _column("dst", lambda t: _ints(t, 99_999))),
                                   "dst 99999"),
    "influence count zero": (_edit_table("influence.parquet", _column("count", lambda t: pa.array(
        [0] * len(t), pa.int64()))), "count 0"),
    "influence unknown layer pair": (_edit_table("influence.parquet", _column("layer_pair", lambda t: pa.array(
        ["fire2->zzz"] * len(t)))), "stage 'fire2->zzz' is not one of run.json's stages"),
}

COMMANDS = {
    "info": lambda run, tmp: ["info", "--run", run],
    "graph": lambda run, tmp: ["graph", "--run", run, "--class", "0", "--out", f"{tmp}/g.json"],
    "export": lambda run, tmp: ["export", "--run", run, "--all", "--out-dir", f"{tmp}/graphs"],
    "render": lambda run, tmp: ["render", "--run", run, "--layer", "fire2", "--channels", "0", "--steps", "1",
                                "--size", "32", "--device", "cpu"],
    "serve": lambda run, tmp: ["serve", "--run", run, "--port", "1"],  # would fail to bind if it got that far
}


def _damaged_copy(small_run: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for f in CORE:
        shutil.copy(small_run / f, run / f)
    damage(run)
    return run


def _refused(cli: CliRunner, argv: list[str], *parts: str) -> None:
    """The command exits 2 with one error line holding every part."""
    p = cli.run(*argv, timeout=120)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, (argv[0], p.returncode, p.stderr[-1500:])
    assert lines[0].startswith("summit: error: ") and all(x in lines[0] for x in parts), (argv[0], lines[0])


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_run_is_refused_by_every_command(case: str, small_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    damage, message = DAMAGE[case]
    run = _damaged_copy(small_run, tmp_path, damage)
    for argv in COMMANDS.values():
        _refused(cli, argv(str(run), str(tmp_path)), message)
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "graphs").exists()


@pytest.mark.parametrize("case", list(ROWS_DAMAGE))
def test_damaged_influence_rows_are_refused_by_graph_readers(case: str, small_run: Path, cli: CliRunner,
                                                             tmp_path: Path) -> None:
    """Influence rows outside run.json's stages, classes and channels (or with count < 1) gave an
    IndexError or, for negative indices, a silently wrong graph."""
    damage, message = ROWS_DAMAGE[case]
    run = _damaged_copy(small_run, tmp_path, damage)
    for name in ("graph", "export", "serve"):
        _refused(cli, COMMANDS[name](str(run), str(tmp_path)), "influence.parquet: ", message, "damaged")
    _refused(cli, ["graphs", "--run", str(run), "--quiet"], message)
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "graphs").exists()
    assert not (run / "graphs.parquet").exists()


def test_undamaged_copy_is_accepted(small_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    """The same copy, undamaged, passes every reading command that finishes on its own."""
    run = _damaged_copy(small_run, tmp_path, lambda run: None)
    for name in ("info", "graph", "export"):
        p = cli.run(*COMMANDS[name](str(run), str(tmp_path)))
        assert p.returncode == 0, (name, p.stderr)


def test_run_written_before_wnid_and_label_opens_unchanged(small_run: Path, tmp_path: Path) -> None:
    """classes.parquet of schema 2 had no wnid or label: Run fills them (wnid null, label = name)."""
    import pyarrow.parquet as pq

    from summit.run.store import Run
    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    new = pq.read_table(run / "classes.parquet")
    assert new.schema.names[:4] == ["class", "name", "wnid", "label"]
    old = new.drop_columns(["wnid", "label"])
    pq.write_table(old, run / "classes.parquet")
    r = Run(run)
    assert r.classes.schema.names == new.schema.names
    assert r.class_wnids == [None] * len(r.class_names) and r.class_labels == r.class_names
    assert r.classes.drop_columns(["wnid", "label"]).equals(old)
    name = r.class_names[1]
    assert r.class_index(name) == r.class_index(name.upper()) == r.class_index(1) == 1
    assert r.class_index("n01855672") == r.class_names.index("099_goose")  # through its model_index
    with pytest.raises(SummitError, match=r"^unknown class 'n09999999'; close matches: .*classes, see"):
        r.class_index("n09999999")


def test_class_index_accepts_every_form_of_a_class(small_run: Path) -> None:
    from summit.run.store import Run
    r = Run(small_run)  # the bundled sample's index_name folders: 022_bald_eagle, ...
    i = r.class_names.index("022_bald_eagle")
    assert {r.class_index(x) for x in ("022_bald_eagle", "n01614925", "bald eagle", "Bald_Eagle", "bald_eagle", i)} == {i}
    assert r.class_labels[i] == "bald eagle" and r.class_wnids[i] == "n01614925"
