"""Comparing a lazy config's model with a yaml config's: module by module, argument by argument."""

import inspect
from collections.abc import Mapping, Sequence

import torch
from detectron2.modeling.roi_heads import FastRCNNOutputLayers


def plain(value, levels=2):
    """Comparable form of a value: numbers, strings and containers as they are, plain objects
    (Matcher, Box2BoxTransform, ...) as their attributes down to ``levels`` levels; tensors and
    modules left out."""
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        return None
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, Mapping):
        return {k: plain(v, levels) for k, v in value.items()}
    if isinstance(value, Sequence):  # lists, tuples and ListConfigs alike
        return tuple(plain(v, levels) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, type) and not inspect.isroutine(value) and levels > 0:
        return type(value).__name__, {k: plain(v, levels - 1) for k, v in vars(value).items() if not k.startswith("_")}
    return type(value).__name__


def model_description(model):
    """Every module's type and settings, every parameter's shape and trainability, every buffer."""
    out = {}
    for name, module in model.named_modules():
        settings = {k: plain(v) for k, v in vars(module).items() if not k.startswith("_")}
        if isinstance(module, FastRCNNOutputLayers):
            # A float 1.0 (the default) and the yaml's {"loss_box_reg": 1.0} both weigh each loss 1.
            settings["loss_weight"] = {k: settings["loss_weight"].get(k, 1.0) for k in ("loss_cls", "loss_box_reg")}
        out[name] = type(module).__name__, settings
    for name, param in model.named_parameters():
        out[f"parameter {name}"] = tuple(param.shape), param.requires_grad
    for name, buffer in model.named_buffers():
        out[f"buffer {name}"] = tuple(buffer.shape), buffer.tolist()
    out["state_dict"] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return out


def assert_same_model(lazy_model, yaml_model):
    lazy, from_yaml = model_description(lazy_model), model_description(yaml_model)
    assert lazy["state_dict"] == from_yaml["state_dict"]
    differences = []
    for name in sorted(lazy.keys() | from_yaml.keys()):
        ours, theirs = lazy.get(name), from_yaml.get(name)
        if ours == theirs:
            continue
        if ours and theirs and ours[0] == theirs[0] and isinstance(ours[1], dict):  # same module type
            ours, theirs = ours[1], theirs[1]
            differences += [
                f"{name}.{k}: {ours.get(k)} != {theirs.get(k)}"
                for k in ours.keys() | theirs.keys()
                if ours.get(k) != theirs.get(k)
            ]
        else:
            differences.append(f"{name}: {ours} != {theirs}")
    assert not differences, "lazy != yaml:\n" + "\n".join(differences)
