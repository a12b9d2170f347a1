"""ImageNet initialisation of StNet's ResNet from a local weights file (nothing is downloaded).

The file is an `.npz` of a torchvision-layout ResNet state dict: `conv1.weight` (out, in, kh,
kw), `bn1.{weight,bias,running_mean,running_var}`, `layer<s>.<i>.conv<j>.weight`,
`layer<s>.<i>.bn<j>.*`, `layer<s>.<i>.downsample.{0,1}.*` (`fc.*` and `num_batches_tracked` are
ignored). torchvision's ResNets put the stride on the 3x3 convolution and have no conv biases,
as StNet's (Paddle's) do. To make one from torchvision's ImageNet weights, where torch is
installed:

    import numpy as np, torchvision
    state = torchvision.models.resnet50(weights="IMAGENET1K_V1").state_dict()
    np.savez("resnet50_imagenet.npz", **{k: v.numpy() for k, v in state.items()})

Every ResNet layer is loaded; the temporal blocks, the Xception block and the classifier keep
their fresh initialisation, as in the reference. conv1 takes N RGB frames at once (3N input
channels): its kernel is averaged over RGB, divided by N and tiled N times, so a clip of N
identical frames gives ImageNet conv1's response to that frame in grey (its RGB mean in every
channel): the pretrained activations keep their scale.
"""

import numpy as np

from ..errors import Yt8mError

BN_PARTS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
            "moving_variance": "running_var"}


def inflate_conv1(kernel, segment_length):
    """torchvision conv1 `(out, 3, kh, kw)` -> Keras `(kh, kw, 3N, out)`: the RGB mean / N,
    tiled over the N frames."""
    mean = kernel.mean(axis=1, keepdims=True) / segment_length
    return np.tile(mean, (1, 3 * segment_length, 1, 1)).transpose(2, 3, 1, 0)


def _torch_names(layer_name):
    """The state-dict prefix of one of StNet's ResNet conv/BN layers, or None."""
    if layer_name in ("stem_conv", "stem_bn"):
        return "conv1" if layer_name == "stem_conv" else "bn1"
    if not layer_name.startswith("res") or not layer_name.endswith(("_conv", "_bn")):
        return None
    stage, block, part, kind = layer_name[3:].split("_")
    prefix = f"layer{int(stage) - 1}.{block}"
    if part == "shortcut":
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    index = "abc".index(part) + 1
    return f"{prefix}.{'conv' if kind == 'conv' else 'bn'}{index}"


def load_imagenet(model, path, segment_length):
    """Load a torchvision-layout ResNet `.npz` into `model`'s ResNet layers; returns how many
    layers were loaded. A missing key or a shape that does not match is an error naming both."""
    try:
        state = dict(np.load(path))
    except (OSError, ValueError) as e:
        raise Yt8mError(f"{path}: cannot read it as an .npz of ResNet weights ({e})") from None
    loaded = 0
    for layer in model.layers:
        prefix = _torch_names(layer.name)
        if prefix is None:
            continue
        if layer.name.endswith("_conv"):
            key = f"{prefix}.weight"
            if key not in state:
                raise Yt8mError(f"{path}: no {key} for layer {layer.name}; is it a "
                                f"torchvision-layout ResNet of the spec's depth?")
            kernel = state[key]
            if layer.name == "stem_conv" and kernel.ndim == 4 and kernel.shape[1] == 3:
                values = [inflate_conv1(kernel, segment_length)]
            else:
                values = [kernel.transpose(2, 3, 1, 0)]
        else:
            names = [BN_PARTS[w.path.split("/")[-1]] for w in layer.weights]
            missing = [n for n in names if f"{prefix}.{n}" not in state]
            if missing:
                raise Yt8mError(f"{path}: no {prefix}.{missing[0]} for layer {layer.name}")
            values = [state[f"{prefix}.{n}"] for n in names]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise Yt8mError(f"{path}: {prefix} has shapes {[v.shape for v in values]} but "
                            f"layer {layer.name} needs {expected}")
        layer.set_weights([v.astype(np.float32) for v in values])
        loaded += 1
    if not loaded:
        raise Yt8mError(f"{path}: no ResNet layer of the model matched the file")
    return loaded
