"""LMFN's inference graph for CPUs: the same function as `model.LMFN`, in fewer passes over memory.

`FusedLMFN.from_model(net)` reads a trained `LMFN` (any config) and runs the same network with
the changes an inference engine makes, each exact in real arithmetic (the outputs differ from
`LMFN.forward` only by float rounding, ~1e-6; ``tests/test_fused.py`` holds every variant to 1e-4):

- convolutions with their activation or residual add fused in (oneDNN post-ops,
  ``torch.ops.mkldnn._convolution_pointwise``), on channels-last (NHWC) tensors;
- the first two layers (3->64 conv at full resolution, then the stride-2 conv) run in strips of
  16 output rows, so the 64-channel full-resolution map, the biggest tensor of the network, never
  exists whole: less memory traffic and less peak memory;
- ALFM's attention is folded into its 1x1 reduction: W (theta A X + X) = (W (theta A + I)) X, one
  matrix product on the (h*w, N*C) features instead of two, and no N*C-channel sum;
- ACFM's two one-channel 3-D convolutions become a depthwise 3x3 conv and a banded 1x1 conv with
  the sigmoid fused (PyTorch runs a one-channel Conv3d on a slow reference path);
- the RGB mean added back at the end is folded into the last conv's bias.

``FusedLMFN.from_model(net, dtype=torch.bfloat16)`` is its bf16 twin for CPUs that compute bf16
natively (AVX512-BF16, AMX): the feature maps and conv weights stay bf16 and channels-last end to
end (no autocast casts between layers), while what rounding would hurt stays fp32: ALFM's
energies, softmax and folded weight (sums over every pixel), the input minus its RGB mean, and
the last conv with the residual or mean added back, so the output is fp32 at the input's precision.

Where the fused oneDNN ops cannot run (another device, a CPU build without oneDNN, or while
tracing for `lmfn export --onnx`), the same graph runs on plain torch ops. Inference only:
there is no backward, and the weights are copied at construction (rebuild after training steps).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .model import ESA, LMFN, MSHF, RFDB, ResBlock, pad_to_multiple

__all__ = ["FusedLMFN", "fused_bf16_available", "fused_ops_available"]

_CL = torch.channels_last
STRIP_ROWS = 8  # rows of the stem's output per strip: 8 measured faster than 4, 16, 32 and whole


def fused_ops_available() -> bool:
    """Whether this torch build has oneDNN's fused convolution ops (x86 and ARM CPU wheels do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def fused_bf16_available() -> bool:
    """Whether oneDNN's fused ops run in bf16 on this CPU (x86 needs AVX512 BW/VL/DQ or
    AVX-NE-CONVERT; without them torch raises "bf16 path needs the cpu support ..."), per torch's
    own check. Where they do not, the bf16 graph runs on plain torch ops."""
    try:
        return fused_ops_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Act:
    """An activation applied after a conv: ``none``, ``relu``, ``leaky_relu`` (with ``slope``), ``sigmoid``."""

    kind: str = "none"
    slope: float = 0.0


NONE, RELU, SIGMOID = Act(), Act("relu"), Act("sigmoid")


def leaky(slope: float) -> Act:
    return Act("leaky_relu", slope)


@dataclass(frozen=True)
class Conv:
    """A conv's weight (channels-last), bias, stride, padding and groups."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int = 1
    padding: int = 1
    groups: int = 1

    @classmethod
    def of(cls, conv: nn.Conv2d) -> "Conv":
        bias = None if conv.bias is None else conv.bias.detach().clone()
        return cls(conv.weight.detach().clone().contiguous(memory_format=_CL), bias,
                   conv.stride[0], conv.padding[0], conv.groups)

    def to(self, dtype: torch.dtype) -> "Conv":
        bias = None if self.bias is None else self.bias.to(dtype)
        return dataclasses.replace(self, weight=self.weight.to(dtype).contiguous(memory_format=_CL), bias=bias)


def cast(obj, dtype: torch.dtype):
    """A copy of a block (a tree of frozen dataclasses and tuples) with every `Conv` in ``dtype``.
    FALFM keeps its fp32 weight: it is folded with the attention in fp32 at run time."""
    if isinstance(obj, Conv):
        return obj.to(dtype)
    if isinstance(obj, tuple):
        return tuple(cast(o, dtype) for o in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, FALFM):
        return dataclasses.replace(obj, **{f.name: cast(getattr(obj, f.name), dtype) for f in dataclasses.fields(obj)
                                           if isinstance(getattr(obj, f.name), (Conv, tuple)) or dataclasses.is_dataclass(getattr(obj, f.name))})
    return obj


def _activate(y: torch.Tensor, act: Act) -> torch.Tensor:
    if act.kind == "relu":
        return F.relu_(y)
    if act.kind == "leaky_relu":
        return F.leaky_relu_(y, act.slope)
    if act.kind == "sigmoid":
        return torch.sigmoid_(y)
    return y


def conv(x: torch.Tensor, c: Conv, act: Act = NONE, add: torch.Tensor | None = None, *, fused: bool,
         padding: tuple[int, int] | None = None) -> torch.Tensor:
    """``act(conv(x) + add)``; one oneDNN call when ``fused``. ``padding`` (rows, cols) overrides."""
    pad = list(padding) if padding is not None else [c.padding, c.padding]
    if fused:
        ops = torch.ops.mkldnn._convolution_pointwise
        args = (c.weight, c.bias, pad, [c.stride, c.stride], [1, 1], c.groups)
        if add is None:
            return ops(x, *args, act.kind, [act.slope] if act.kind == "leaky_relu" else [], None)
        if act.kind in ("none", "relu"):  # oneDNN fuses only these after a sum
            return ops.binary(x, add, *args, "add", None, None if act.kind == "none" else "relu", [], None)
        return _activate(ops.binary(x, add, *args, "add", None, None, [], None), act)
    y = F.conv2d(x, c.weight, c.bias, c.stride, pad, 1, c.groups)
    if add is not None:
        y = y + add
    if act.kind == "relu":
        return F.relu(y)
    if act.kind == "leaky_relu":
        return F.leaky_relu(y, act.slope)
    if act.kind == "sigmoid":
        return torch.sigmoid(y)
    return y


def conv1x1_concat(parts: list[torch.Tensor], c: Conv, fused: bool) -> torch.Tensor:
    """The 1x1 conv ``c`` of ``torch.cat(parts, dim=1)``, without the concatenation when ``fused``.

    A channel concatenation of channels-last maps copies a few channels per pixel at a time
    (slow); instead each part's (pixels, channels) view is multiplied by its slice of the weight
    and the products summed.
    """
    if not fused:
        return conv(torch.cat(parts, dim=1), c, fused=False)
    b, _, h, w = parts[0].shape
    weight = c.weight.reshape(c.weight.shape[0], -1)  # (Cout, Cin)
    y, start = None, 0
    for part in parts:
        k = part.shape[1]
        flat = part.permute(0, 2, 3, 1).reshape(-1, k)  # (B*h*w, k): a view of a channels-last map
        piece = weight[:, start:start + k].t()
        y = torch.addmm(c.bias, flat, piece) if y is None else y.addmm_(flat, piece)
        start += k
    return y.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------
# Blocks: each a small frozen dataclass of `Conv`s with a ``__call__(x, fused)``
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FResBlock:
    conv1: Conv
    conv2: Conv

    @classmethod
    def of(cls, block: ResBlock) -> "FResBlock":
        return cls(Conv.of(block.conv1), Conv.of(block.conv2))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        return conv(conv(x, self.conv1, RELU, fused=fused), self.conv2, add=x, fused=fused)


def _chain(blocks: tuple[FResBlock, ...], x: torch.Tensor, fused: bool) -> torch.Tensor:
    for block in blocks:
        x = block(x, fused)
    return x


def strided_stem(x: torch.Tensor, layers: tuple[Conv, ...], slope: float, fused: bool) -> torch.Tensor:
    """leaky(layer_n(... leaky(layer_1(x)))) for 3x3 convs (the head, then stride-2 convs).

    With ``fused``, the last layer's output is made in strips of `STRIP_ROWS` rows: each strip
    computes only the rows of the earlier layers it reads (zero rows beyond the image edges, as
    the convs' own padding would give), so the full-resolution 64-channel maps never exist whole:
    less memory traffic and a smaller peak. Same values as the layer-by-layer form.
    """
    act = leaky(slope)
    if not fused:
        for layer in layers:
            x = conv(x, layer, act, fused=fused)
        return x
    heights = [x.shape[-2]]
    for layer in layers:
        heights.append((heights[-1] + 2 * layer.padding - 3) // layer.stride + 1)
    strips = []
    for a in range(0, heights[-1], STRIP_ROWS):
        b = min(heights[-1], a + STRIP_ROWS)
        # Walk back: rows [a, b) of layer l's output read rows [a s - p, (b-1) s - p + 3) of its input.
        plan = []
        for layer, h_in in zip(reversed(layers), reversed(heights[:-1])):
            lo, hi = a * layer.stride - layer.padding, (b - 1) * layer.stride - layer.padding + 3
            plan.append((max(0, -lo), max(0, hi - h_in)))  # zero rows to add above and below
            a, b = max(lo, 0), min(hi, h_in)
        t = x[:, :, a:b]
        for layer, (top, bottom) in zip(layers, reversed(plan)):
            if top or bottom:
                t = F.pad(t, (0, 0, top, bottom))
            t = conv(t, layer, act, fused=True, padding=(0, layer.padding))
        strips.append(t)
    return torch.cat(strips, dim=2).contiguous(memory_format=_CL)


@dataclass(frozen=True)
class FMSHF:
    head: Conv
    down: tuple[Conv, ...]
    rb4: FResBlock
    rb3: FResBlock
    rb_g3: FResBlock
    rb2: tuple[FResBlock, ...]
    out: tuple[FResBlock, ...]

    @classmethod
    def of(cls, enc: MSHF) -> "FMSHF":
        return cls(Conv.of(enc.head[0]), tuple(Conv.of(d[0]) for d in enc.down), FResBlock.of(enc.rb4),
                   FResBlock.of(enc.rb3), FResBlock.of(enc.rb_g3), tuple(FResBlock.of(b) for b in enc.rb2),
                   tuple(FResBlock.of(b) for b in enc.out))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        act = leaky(0.1)
        f2 = strided_stem(x, (self.head, self.down[0], self.down[1]), 0.1, fused)
        f3 = conv(f2, self.down[2], act, fused=fused)
        f4 = conv(f3, self.down[3], act, fused=fused)
        g3 = self.rb3(f3, fused) + up2(self.rb4(f4, fused))
        g2 = _chain(self.rb2, f2, fused) + up2(self.rb_g3(g3, fused))
        return _chain(self.out, g2, fused)


@dataclass(frozen=True)
class FPlainEncoder:
    head: Conv
    down1: Conv
    down2: Conv
    body: tuple[FResBlock, ...]

    @classmethod
    def of(cls, enc: nn.Module) -> "FPlainEncoder":
        return cls(Conv.of(enc.head[0]), Conv.of(enc.down[0]), Conv.of(enc.down[2]),
                   tuple(FResBlock.of(b) for b in enc.body))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        return _chain(self.body, strided_stem(x, (self.head, self.down1, self.down2), 0.1, fused), fused)


@dataclass(frozen=True)
class FESA:
    conv1: Conv
    conv_f: Conv
    conv2: Conv
    conv_max: Conv
    conv3: Conv
    conv3_: Conv
    conv4: Conv

    @classmethod
    def of(cls, esa: ESA) -> "FESA":
        return cls(*(Conv.of(getattr(esa, f.name)) for f in dataclasses.fields(cls)))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        c1_ = conv(x, self.conv1, fused=fused)
        c1 = F.max_pool2d(conv(c1_, self.conv2, fused=fused), kernel_size=7, stride=3)
        c3 = conv(c1, self.conv_max, RELU, fused=fused)
        c3 = conv(conv(c3, self.conv3, RELU, fused=fused), self.conv3_, fused=fused)
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = conv(conv(c1_, self.conv_f, add=c3, fused=fused), self.conv4, SIGMOID, fused=fused)
        return x * mask


@dataclass(frozen=True)
class FRFDB:
    distil: tuple[Conv, ...]
    refine: tuple[Conv, ...]
    last: Conv
    fuse: Conv
    esa: FESA

    @classmethod
    def of(cls, block: RFDB) -> "FRFDB":
        return cls(tuple(Conv.of(c) for c in block.distil), tuple(Conv.of(c) for c in block.refine),
                   Conv.of(block.last), Conv.of(block.fuse), FESA.of(block.esa))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        act = leaky(0.05)
        distilled = []
        for distil, refine in zip(self.distil, self.refine):
            distilled.append(conv(x, distil, act, fused=fused))
            x = conv(x, refine, act, add=x, fused=fused)
        distilled.append(conv(x, self.last, act, fused=fused))
        return self.esa(conv1x1_concat(distilled, self.fuse, fused), fused)


@dataclass(frozen=True)
class FALFM:
    """ALFM with its attention folded into the 1x1 reduction (see the module docstring).

    The N block outputs are never concatenated: E = X X^T is assembled from the N(N+1)/2 products
    of blocks i <= j (E is symmetric), and the reduction sums N products, one per block (28 %
    less time than concatenating, measured on 4 blocks of 50x180x320).
    """

    theta: float
    softmax: str
    weight: torch.Tensor  # (C, N*C), the reduction's 1x1 weight
    bias: torch.Tensor

    def __call__(self, blocks: list[torch.Tensor], fused: bool) -> torch.Tensor:
        b, c, h, w = blocks[0].shape
        n = len(blocks)
        # (B, h*w, C) views of channels-last maps (a copy otherwise).
        flats = [t.permute(0, 2, 3, 1).reshape(b, h * w, c) for t in blocks]
        # The energies are sums over every pixel, and the softmax of them is sensitive: fp32.
        wide = flats if flats[0].dtype == torch.float32 else [f.float() for f in flats]
        grid = [[torch.empty(0)] * n for _ in range(n)]
        for i in range(n):
            for j in range(i, n):
                grid[i][j] = torch.bmm(wide[i].transpose(1, 2), wide[j])
                grid[j][i] = grid[i][j].transpose(1, 2)
        energy = torch.cat([torch.cat(row, dim=2) for row in grid], dim=1)  # (B, NC, NC)
        if self.softmax == "han":
            energy = energy.amax(dim=-1, keepdim=True) - energy
        eye = torch.eye(n * c, dtype=energy.dtype, device=energy.device)
        del wide, grid
        folded = torch.matmul(self.weight, self.theta * torch.softmax(energy, dim=-1) + eye)  # (B, C, NC)
        folded = folded.to(flats[0].dtype)
        y = torch.baddbmm(self.bias.to(flats[0].dtype), flats[0], folded[:, :, :c].transpose(1, 2))  # (B, hw, C)
        for i in range(1, n):
            part = folded[:, :, i * c:(i + 1) * c].transpose(1, 2)
            y = y.baddbmm_(flats[i], part) if fused else torch.baddbmm(y, flats[i], part)
        y = y.reshape(b, h, w, -1).permute(0, 3, 1, 2)  # channels-last (B, C, h, w)
        return F.leaky_relu_(y, 0.05) if fused else F.leaky_relu(y, 0.05)


@dataclass(frozen=True)
class FACFM:
    """ACFM as a depthwise 3x3 conv (the shared 1x3x3 kernel) and a banded 1x1 conv (the 3x1x1
    kernel across channels, zero-padded at both ends) with the sigmoid fused."""

    spatial: Conv
    channel: Conv
    alpha: float

    @classmethod
    def of(cls, acfm: nn.Module, channels: int) -> "FACFM":
        k = acfm.spatial.weight.detach().reshape(1, 1, 3, 3)
        spatial = Conv(k.expand(channels, 1, 3, 3).contiguous(memory_format=_CL),
                       acfm.spatial.bias.detach().expand(channels).clone(), 1, 1, channels)
        taps = acfm.channel.weight.detach().reshape(3)
        band = torch.zeros(channels, channels)
        for offset, tap in zip((-1, 0, 1), taps):  # out[c] = sum_k taps[k] * in[c + k - 1]
            band += torch.diag(tap.expand(channels - abs(offset)), offset)
        channel = Conv(band.reshape(channels, channels, 1, 1).contiguous(memory_format=_CL),
                       acfm.channel.bias.detach().expand(channels).clone(), 1, 0)
        return cls(spatial, channel, float(acfm.alpha))

    def __call__(self, x: torch.Tensor, fused: bool) -> torch.Tensor:
        a = conv(conv(x, self.spatial, fused=fused), self.channel, SIGMOID, fused=fused)
        return torch.addcmul(x, a, x, value=self.alpha)  # x + alpha * a * x


def _fold_rgb_mean(c: Conv, mean: torch.Tensor, upscale: int) -> Conv:
    """PixelShuffle(r) sends channels [k r^2, (k+1) r^2) to colour k: add mean[k] to their bias."""
    bias = c.bias + mean.reshape(3).repeat_interleave(upscale * upscale)
    return dataclasses.replace(c, bias=bias)


class FusedLMFN(nn.Module):
    """An LMFN's inference graph. ``forward``: (B,3,H,W) float in [0,1] -> (B,3,H,W) float32, any
    H, W >= 1, like `LMFN.forward` (pad to a multiple of 16 and at least 64, crop back; not clamped).

    ``dtype``: the arithmetic of the feature maps, ``torch.float32`` (default) or ``torch.bfloat16``
    (see the module docstring for what stays fp32).
    """

    multiple = LMFN.multiple
    min_size = LMFN.min_size

    def __init__(self, net: LMFN, dtype: torch.dtype = torch.float32):
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"FusedLMFN computes in float32 or bfloat16, not {dtype}")
        self.dtype = dtype
        cfg = self.config = net.config
        net_enc = net.encoder
        self.encoder = FMSHF.of(net_enc) if isinstance(net_enc, MSHF) else FPlainEncoder.of(net_enc)
        dec = net.decoder
        self.head = Conv.of(dec.head)
        if cfg.decoder_block == "rfdb":
            self.blocks = tuple(FRFDB.of(b) for b in dec.blocks)
        else:
            self.blocks = tuple(FResBlock.of(b) for b in dec.blocks)
        c = cfg.dec_channels
        if cfg.fusion == "attention":
            reduce = dec.alfm.reduce
            self.alfm = FALFM(float(dec.alfm.theta), cfg.alfm_softmax,
                              reduce.weight.detach().reshape(c, -1).clone(), reduce.bias.detach().clone())
            self.acfm = FACFM.of(dec.acfm, c)
            # fuse(cat(a, b)) = fuse_a(a) + fuse_b(b): two convs, the second adding onto the first,
            # instead of a (slow, channels-last) channel concatenation.
            fuse = Conv.of(dec.fuse)
            self.fuse_a = dataclasses.replace(fuse, weight=fuse.weight[:, :c].contiguous(memory_format=_CL))
            self.fuse_b = dataclasses.replace(fuse, weight=fuse.weight[:, c:].contiguous(memory_format=_CL), bias=None)
        else:
            self.reduce = Conv.of(dec.reduce[0])
        self.tail = Conv.of(dec.tail)
        last = Conv.of(net.reconstruct[0])
        mean = net.rgb_mean.detach().clone()
        self.reconstruct = last if cfg.global_residual else _fold_rgb_mean(last, mean, 4)  # stays fp32
        if dtype != torch.float32:
            for name in ("encoder", "head", "blocks", "acfm", "fuse_a", "fuse_b", "reduce", "tail"):
                if hasattr(self, name):
                    setattr(self, name, cast(getattr(self, name), dtype))
        self.register_buffer("rgb_mean", mean, persistent=False)
        # restore() asks a model's parameters for its device; this graph's tensors live in the
        # dataclasses above, on the CPU.
        self.anchor = nn.Parameter(torch.zeros(0, device=mean.device), requires_grad=False)

    @classmethod
    def from_model(cls, net: LMFN, dtype: torch.dtype = torch.float32) -> "FusedLMFN":
        with torch.no_grad():
            return cls(net, dtype).eval()

    def _apply(self, fn, recurse=True):
        if fn(torch.zeros(0)).device.type != "cpu":
            raise ValueError("FusedLMFN runs on the CPU; move the LMFN itself to other devices")
        return super()._apply(fn, recurse)

    def core(self, inp: torch.Tensor, fused: bool) -> torch.Tensor:
        """The network on an input already padded to a multiple of 16, at least 64 per side."""
        feat = self.encoder((inp - self.rgb_mean).to(self.dtype).contiguous(memory_format=_CL), fused)
        f0 = conv(feat, self.head, fused=fused)
        del feat
        outs, b = [], f0
        for block in self.blocks:
            b = block(b, fused)
            outs.append(b)
        if self.config.fusion == "attention":
            x = conv(self.acfm(outs[-1], fused), self.fuse_b, add=conv(self.alfm(outs, fused), self.fuse_a, fused=fused),
                     fused=fused)
        else:
            x = conv1x1_concat(outs, self.reduce, fused)
            x = F.leaky_relu_(x, 0.05) if fused else F.leaky_relu(x, 0.05)
        del outs, b
        x = conv(x, self.tail, add=f0, fused=fused).float()  # the last conv and the residual in fp32
        out = F.pixel_shuffle(conv(x, self.reconstruct, fused=fused), 4)
        return out + inp if self.config.global_residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LMFN expects a (B,3,H,W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        fused = (x.device.type == "cpu" and not torch.jit.is_tracing() and fused_ops_available()
                 and (self.dtype == torch.float32 or fused_bf16_available()))
        inp = pad_to_multiple(x.float(), self.multiple, self.min_size)
        return self.core(inp, fused)[..., :h, :w]
