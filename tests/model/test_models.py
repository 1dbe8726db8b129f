"""Models: GoogLeNet's pretrained weights load through torchvision's real weights="DEFAULT" path
(offline: a correctly shaped state dict planted in a temporary TORCH_HOME cache), and weight
files or devices that cannot work are refused in one line."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from cli_runner import CliRunner

from summit.model.models import SummitError, load_model, resolve_device

GOOGLENET_FILE = Path(torchvision.models.GoogLeNet_Weights.DEFAULT.url).name  # googlenet-1378be20.pth


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds a GoogLeNet checkpoint shaped like torchvision's (aux heads
    included, random values), so weights="DEFAULT" loads it instead of downloading."""
    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints" / GOOGLENET_FILE
    ckpt.parent.mkdir(parents=True)
    torch.manual_seed(1)
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    torch.save(net.state_dict(), ckpt)
    return home


def test_googlenet_pretrained_loads_without_aux_heads(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    spec = load_model("googlenet")  # the default: --weights torchvision
    planted = torch.load(torch_home / "hub" / "checkpoints" / GOOGLENET_FILE)
    net = spec.model.net
    assert spec.weights == "torchvision"
    assert net.aux1 is None and net.aux2 is None and not net.aux_logits
    assert not any(k.startswith("aux") for k in net.state_dict())
    assert net.transform_input  # what torchvision's pretrained GoogLeNet expects
    for k, v in net.state_dict().items():
        assert torch.equal(v, planted[k]), k
    with torch.no_grad():
        assert spec.model(torch.rand(2, 3, 224, 224)).shape == (2, 1000)  # a tensor, not (logits, aux2, aux1)


def test_googlenet_aggregate_through_the_cli(torch_home: Path, cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = cli.run("aggregate", "--model", "googlenet", "--layers", "inception3a", "inception3b", "--limit", "4",
                "--batch-size", "4", "--examples-k", "0", "--workers", "0", "--quiet", "--out", str(out),
                env={"TORCH_HOME": str(torch_home)})
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "run.json").read_text())
    assert (meta["model"], meta["weights"], meta["dataset"]["n_images"]) == ("googlenet", "torchvision", 4)


def test_missing_googlenet_cache_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    p = cli.run("aggregate", "--model", "googlenet", "--out", str(tmp_path / "r"), "--quiet",
                env={"TORCH_HOME": str(tmp_path / "empty"), "https_proxy": "http://127.0.0.1:9",
                     "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert p.stderr.startswith("summit: error: could not load torchvision weights for googlenet")


class RunsCode:
    """A pickle that runs code when loaded: it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def weight_files(d: Path) -> dict[str, tuple[Path, str]]:
    """--weights files that cannot work, with the message each must give."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "text.pth").write_text("not a checkpoint\n")
    torch.save([1, 2, 3], d / "list.pth")
    torch.save({"conv.weight": "not a tensor"}, d / "strings.pth")
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), d / "squeezenet.pth")
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False, num_classes=10)
    torch.save({"state_dict": net.state_dict()}, d / "googlenet10.pth")
    (d / "crafted.pth").write_bytes(pickle.dumps(RunsCode(d / "ran"), protocol=4))
    return {
        "text": (d / "text.pth", "not a PyTorch state dict file"),
        "crafted": (d / "crafted.pth", "a pickle with objects other than tensors; nothing of it was run"),
        "list": (d / "list.pth", "not a state dict (a mapping of parameter names to tensors)"),
        "strings": (d / "strings.pth", "not a state dict"),
        "other model": (d / "squeezenet.pth", "does not fit googlenet: 344 missing keys (e.g. conv1.conv.weight), 52 unexpected"),
        "other classes": (d / "googlenet10.pth", "does not fit googlenet: 2 shape mismatches (e.g. fc.weight (10, 1024) vs (1000, 1024))"),
    }


def test_weight_files_that_do_not_fit_are_refused(cli: CliRunner, tmp_path: Path) -> None:
    for what, (path, message) in weight_files(tmp_path / "w").items():
        with pytest.raises(SummitError, match="^--weights"):
            load_model("googlenet", str(path))
        p = cli.run("aggregate", "--model", "googlenet", "--weights", str(path), "--out", str(tmp_path / "r"))
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, (what, p.stderr)
    assert not (tmp_path / "w" / "ran").exists()  # the crafted pickle's code never ran


def test_a_fitting_weight_file_loads(tmp_path: Path) -> None:
    net = torchvision.models.squeezenet1_1(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "w.pth")
    spec = load_model("squeezenet1_1", str(tmp_path / "w.pth"))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in spec.model.net.state_dict().items())


@pytest.mark.parametrize("device,message", [
    ("tpu", "unknown device 'tpu'"),
    ("cuda:x", "unknown device 'cuda:x'"),
    ("meta", "device 'meta' is not supported"),
    ("cuda:99", "this machine has" if torch.cuda.is_available() else "CUDA is not available"),
])
def test_devices_that_cannot_work_are_refused(device: str, message: str) -> None:
    with pytest.raises(SummitError, match=message):
        resolve_device(device)


def test_cuda_without_cuda_is_refused() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(SummitError, match="CUDA is not available on this machine; use --device cpu"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
