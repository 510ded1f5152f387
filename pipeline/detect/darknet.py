"""Darknet models (YOLOv3, YOLOv3-tiny) in torch: the .cfg parsed, the .weights loaded, ONNX exported.

Only what YOLOv3-family cfgs use is built: ``convolutional`` (batch norm folded in at load time,
leaky or linear activation), ``maxpool`` (a stride-1 pool pads right and bottom with the edge, as
Darknet pads with -inf), ``upsample`` (nearest), ``route``, ``shortcut`` and ``yolo``. The module's
outputs are the raw ``yolo`` head tensors, (B, anchors * (5 + classes), H, W) each, strides 32, 16
(, 8): decoding them is ``decode_yolov3``'s job, as for any anchor-based export.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

FAMILY = "yolov3"  # the output family written in the exported model's metadata


@dataclass
class Section:
    kind: str
    options: dict[str, str]
    line: int

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.options.get(key)
        if value is None:
            if default is None:
                raise ModelError(f"cfg line {self.line}: [{self.kind}] needs {key}=")
            return default
        return int(value)

    def integers(self, key: str) -> list[int]:
        return [int(v) for v in self.options.get(key, "").split(",") if v.strip()]


def parse_cfg(text: str) -> list[Section]:
    """A Darknet .cfg: ``[kind]`` headers, then ``key=value`` lines; # comments."""
    sections: list[Section] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            sections.append(Section(m[1], {}, n))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ModelError(f"cfg line {n}: cannot read {raw!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError("cfg: the first section must be [net]")
    return sections


@dataclass
class YoloHead:
    """One ``yolo`` layer: its anchors (pixels at the network's input size) and stride."""

    anchors: list[tuple[float, float]]
    stride: int
    classes: int


@dataclass
class DarknetSpec:
    width: int
    height: int
    heads: list[YoloHead] = field(default_factory=list)

    def metadata(self, names: list[str], **extra: str) -> dict[str, str]:
        """What the exported model carries: the detector reads its family, classes and heads from it."""
        return {
            "family": FAMILY,
            "names": repr(dict(enumerate(names))),
            "imgsz": repr([self.height, self.width]),
            "heads": json.dumps([{"anchors": h.anchors, "stride": h.stride} for h in self.heads]),
            **extra,
        }


class _Conv(nn.Module):
    def __init__(self, c_in: int, sec: Section) -> None:
        super().__init__()
        self.filters, size = sec.integer("filters"), sec.integer("size")
        self.bn = sec.integer("batch_normalize", 0) == 1
        pad = size // 2 if sec.integer("pad", 0) else 0
        self.conv = nn.Conv2d(c_in, self.filters, size, sec.integer("stride", 1), pad, bias=True)
        self.activation = sec.options.get("activation", "linear")
        if self.activation not in ("leaky", "linear"):
            raise ModelError(f"cfg line {sec.line}: activation {self.activation!r} is not supported")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.leaky_relu(x, 0.1) if self.activation == "leaky" else x

    def load(self, weights: np.ndarray, at: int) -> int:
        """Darknet's order: biases (BN beta), then BN gamma, running mean and variance, then the
        kernel. Batch norm is folded into the convolution with Darknet's own formula,
        ``(x - mean) / (sqrt(variance) + 1e-6) * gamma + beta``."""
        n, w, b = self.filters, self.conv.weight, self.conv.bias
        assert b is not None
        if self.bn:
            beta, gamma, mean, var = (weights[at + i * n : at + (i + 1) * n].copy() for i in range(4))
            at += 4 * n
        else:
            bias = weights[at : at + n]
            at += n
        k = w.numel()
        if at + k > len(weights):
            raise ModelError("the weights file ends before the model does (wrong cfg for these weights?)")
        kernel = torch.from_numpy(weights[at : at + k].copy()).view_as(w)
        at += k
        with torch.no_grad():
            if self.bn:
                scale = torch.from_numpy(gamma / (np.sqrt(var) + 1e-6))
                w.copy_(kernel * scale[:, None, None, None])
                b.copy_(torch.from_numpy(beta) - torch.from_numpy(mean) * scale)
            else:
                w.copy_(kernel)
                b.copy_(torch.from_numpy(bias.copy()))
        return at


class _MaxPool(nn.Module):
    def __init__(self, size: int, stride: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:  # Darknet keeps the size: pads right and bottom (the edge does for -inf)
            x = F.pad(x, (0, self.size - 1, 0, self.size - 1), mode="replicate")
        return F.max_pool2d(x, self.size, self.stride)


class DarknetYolo(nn.Module):
    """The network of a Darknet YOLOv3-family cfg; ``forward`` returns the raw yolo head tensors."""

    def __init__(self, cfg_text: str, *, masks: list[list[int]] | None = None) -> None:
        """``masks``: the anchors each yolo layer uses, overriding the cfg's ``mask=`` lines."""
        super().__init__()
        sections = parse_cfg(cfg_text)
        net, layers = sections[0], sections[1:]
        self.spec = DarknetSpec(net.integer("width"), net.integer("height"))
        self.blocks = nn.ModuleList()
        self.kinds: list[str] = []
        self.routes: dict[int, list[int]] = {}
        channels: list[int] = []
        stride, strides = 1, list[int]()
        heads_seen = 0
        c = net.integer("channels", 3)
        for i, sec in enumerate(layers):
            block: nn.Module = nn.Identity()
            if sec.kind == "convolutional":
                block = _Conv(c, sec)
                c = block.filters
                stride *= sec.integer("stride", 1)
            elif sec.kind == "maxpool":
                block = _MaxPool(sec.integer("size"), sec.integer("stride", 1))
                stride *= sec.integer("stride", 1)
            elif sec.kind == "upsample":
                block = nn.Upsample(scale_factor=sec.integer("stride", 2), mode="nearest")
                stride //= sec.integer("stride", 2)
            elif sec.kind == "route":
                idx = [j if j >= 0 else i + j for j in sec.integers("layers")]
                self.routes[i] = idx
                c = sum(channels[j] for j in idx)
                stride = strides[idx[0]]
            elif sec.kind == "shortcut":
                self.routes[i] = [i + sec.integer("from")]
            elif sec.kind == "yolo":
                anchors = sec.integers("anchors")
                pairs = [(float(anchors[k]), float(anchors[k + 1])) for k in range(0, len(anchors), 2)]
                mask = masks[heads_seen] if masks is not None else sec.integers("mask")
                heads_seen += 1
                classes = sec.integer("classes")
                if c != len(mask) * (5 + classes):
                    raise ModelError(
                        f"cfg line {sec.line}: a yolo layer of {len(mask)} anchors x "
                        f"(5 + {classes}) needs {len(mask) * (5 + classes)} channels, has {c}"
                    )
                self.spec.heads.append(YoloHead([pairs[m] for m in mask], stride, classes))
            else:
                raise ModelError(f"cfg line {sec.line}: [{sec.kind}] layers are not supported")
            self.blocks.append(block)
            self.kinds.append(sec.kind)
            channels.append(c)
            strides.append(stride)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs: list[torch.Tensor] = []
        heads: list[torch.Tensor] = []
        for i, (kind, block) in enumerate(zip(self.kinds, self.blocks, strict=True)):
            if kind == "route":
                x = torch.cat([outputs[j] for j in self.routes[i]], dim=1)
            elif kind == "shortcut":
                x = x + outputs[self.routes[i][0]]
            elif kind == "yolo":
                heads.append(x)
            else:
                x = block(x)
            outputs.append(x)
        return tuple(heads)

    def load_weights(self, data: bytes) -> None:
        """Load a Darknet .weights file: a header (major, minor, revision, images seen), then float32s."""
        header = np.frombuffer(data[:12], dtype=np.int32)
        if len(header) < 3:
            raise ModelError("not a Darknet weights file (no header)")
        major, minor = int(header[0]), int(header[1])
        seen_bytes = 8 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 4
        weights = np.frombuffer(data[12 + seen_bytes :], dtype=np.float32)
        at = 0
        for block in self.blocks:
            if isinstance(block, _Conv):
                at = block.load(weights, at)
        if at != len(weights):
            raise ModelError(
                f"the weights file has {len(weights) - at} values more than the cfg's layers take "
                "(wrong cfg?)"
            )


def load_darknet(cfg: Path, weights: Path, *, masks: list[list[int]] | None = None) -> DarknetYolo:
    model = DarknetYolo(cfg.read_text(), masks=masks)
    model.load_weights(weights.read_bytes())
    return model.eval()


def export_darknet_onnx(model: DarknetYolo, dest: Path, *, names: list[str], **metadata: str) -> Path:
    """ONNX with dynamic batch, height and width (any multiple of 32), one output per yolo head, and
    the family, class names, input size and heads (anchors, strides) in its metadata."""
    import onnx

    spec = model.spec
    if len(names) != spec.heads[0].classes:
        raise ModelError(f"{len(names)} class names for a model of {spec.heads[0].classes} classes")
    outputs = [f"head{h.stride}" for h in spec.heads]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, spec.height, spec.width)
    axes: dict[str, Any] = {"images": {0: "batch", 2: "height", 3: "width"}}
    axes.update({o: {0: "batch", 2: f"{o}_h", 3: f"{o}_w"} for o in outputs})
    with warnings.catch_warnings():  # the edge padding's slices cannot be constant-folded: harmless
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(dest),
            input_names=["images"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(dest))
    for key, value in spec.metadata(names, **metadata).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(dest))
    return dest
