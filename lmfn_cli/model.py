"""LMFN: the lightweight multi-information fusion network for image deblurring.

Zhang, Liu, Li, Qi, Xu, Kong, Wang, "Image deblurring based on lightweight multi-information
fusion network" (ICIP 2021). The paper gives the method in prose; the layer-level reading used
here is the one that reproduces its parameter counts (1.25M default, 1.20M without ALFM/ACFM).

Read top to bottom:

    image (B,3,H,W) in [0,1]
    -> pad (reflect, replicate where too small) to a multiple of 16, at least 64 per side
    -> subtract a fixed RGB mean
    -> MSHF encoder                -> 64-channel feature at 1/4 resolution
    -> MFFD decoder at 1/4 res     -> N RFDBs, ALFM (layer attention), ACFM (channel attention)
    -> conv3x3 + PixelShuffle(4)   -> 3 channels at full resolution
    -> add the mean back, crop to H x W

Variants are small named builders returning an ``LMFNConfig`` (see ``VARIANTS``).
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import from_dict
from .errors import ConfigError

__all__ = [
    "LMFNConfig",
    "LMFN",
    "VARIANTS",
    "DEFAULT_VARIANT",
    "variant_config",
    "build_model",
    "count_parameters",
]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMFNConfig:
    """Everything that defines an LMFN network. Saved in every weights file and checkpoint.

    The defaults are the paper's model (4 RFDBs, 1.25M parameters).
    """

    encoder: Literal["mshf", "plain"] = "mshf"
    """``mshf``: the paper's multi-scale hierarchical fusion encoder (4 downblocks, 8 resblocks).
    ``plain``: Table 3's "without MSHF" ablation: two stride-2 convs, then ``plain_resblocks``."""
    decoder_block: Literal["rfdb", "resblock"] = "rfdb"
    """``resblock``: Table 3's ablation, plain residual blocks in place of RFDBs."""
    fusion: Literal["attention", "concat"] = "attention"
    """``concat``: Table 3's "without ALFM/ACFM" ablation (concatenate, 1x1 reduce, 3x3)."""
    alfm_softmax: Literal["han", "paper"] = "han"
    """``han``: softmax(rowmax(E) - E) as in the cited HAN code; ``paper``: softmax(E), Eq. 1."""
    num_blocks: int = 4
    """N, the number of RFDBs (or resblocks) in the decoder; Table 4 varies it from 1 to 6."""
    enc_channels: int = 64
    dec_channels: int = 50
    esa_channels: int = 12
    plain_resblocks: int = 2
    global_residual: bool = False
    """Add the input image to the output (not in the paper; it lets training start at identity)."""
    rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN

    def __post_init__(self) -> None:
        choices = {
            "encoder": ("mshf", "plain"),
            "decoder_block": ("rfdb", "resblock"),
            "fusion": ("attention", "concat"),
            "alfm_softmax": ("han", "paper"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ConfigError(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
        for field in ("num_blocks", "enc_channels", "dec_channels", "esa_channels"):
            if int(getattr(self, field)) < 1:
                raise ConfigError(f"{field} must be >= 1, got {getattr(self, field)!r}")
        if self.dec_channels % 2:
            raise ConfigError(f"dec_channels must be even (RFDB distils half), got {self.dec_channels}")
        if self.plain_resblocks < 0:
            raise ConfigError(f"plain_resblocks must be >= 0, got {self.plain_resblocks}")
        if len(self.rgb_mean) != 3:
            raise ConfigError(f"rgb_mean needs 3 values, got {self.rgb_mean!r}")
        # JSON round trips turn tuples into lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "rgb_mean", tuple(float(v) for v in self.rgb_mean))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "LMFNConfig":
        return from_dict(cls, data, "LMFN config")

    @classmethod
    def from_json(cls, text: str) -> "LMFNConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"LMFN config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("LMFN config must be a JSON object")
        return cls.from_dict(data)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus identity; no normalisation (EDVR/DeepDeblur style).

    The convs start at 0.1x the Kaiming init, so a fresh block is close to identity.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class MSHF(nn.Module):
    """Multi-scale hierarchical fusion encoder: (B,3,H,W) -> (B,C,H/4,W/4), H and W multiples of 16.

    f0 at full res, four stride-2 downblocks f1..f4, resblocks at 1/4, 1/8, 1/16, and the
    smaller scales upsampled and added into the larger ones; 8 resblocks in all.
    """

    def __init__(self, channels: int):
        super().__init__()
        # In-place activation on the full-resolution map: it dominates inference memory.
        self.head = nn.Sequential(conv3x3(3, channels), nn.LeakyReLU(0.1, inplace=True))
        self.down = nn.ModuleList(
            nn.Sequential(conv3x3(channels, channels, stride=2), nn.LeakyReLU(0.1, inplace=True))
            for _ in range(4)
        )
        self.rb4 = ResBlock(channels)  # on f4 (1/16)
        self.rb3 = ResBlock(channels)  # on f3 (1/8)
        self.rb_g3 = ResBlock(channels)  # on g3, before joining 1/4
        self.rb2 = nn.Sequential(ResBlock(channels), ResBlock(channels))  # on f2 (1/4)
        self.out = nn.Sequential(ResBlock(channels), ResBlock(channels), ResBlock(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        f1 = self.down[0](f)
        del f  # free the full-resolution map as early as possible
        f2 = self.down[1](f1)
        f3 = self.down[2](f2)
        f4 = self.down[3](f3)
        g3 = self.rb3(f3) + up2(self.rb4(f4))
        g2 = self.rb2(f2) + up2(self.rb_g3(g3))
        return self.out(g2)


class PlainEncoder(nn.Module):
    """Table 3's "without MSHF" encoder: head conv, two stride-2 convs, then plain resblocks."""

    def __init__(self, channels: int, resblocks: int):
        super().__init__()
        self.head = nn.Sequential(conv3x3(3, channels), nn.LeakyReLU(0.1, inplace=True))
        self.down = nn.Sequential(
            conv3x3(channels, channels, stride=2),
            nn.LeakyReLU(0.1, inplace=True),
            conv3x3(channels, channels, stride=2),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.body = nn.Sequential(*(ResBlock(channels) for _ in range(resblocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.down(self.head(x)))


class ESA(nn.Module):
    """Enhanced spatial attention (RFANet/RFDN): a cheap large-receptive-field sigmoid mask.

    Needs an input of at least 15x15 (3x3 stride-2 conv without padding, then max-pool 7/3);
    the model's padding to 64 px (16 px at 1/4 resolution) guarantees it.
    """

    def __init__(self, channels: int, f: int):
        super().__init__()
        self.conv1 = conv1x1(channels, f)
        self.conv_f = conv1x1(f, f)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv_max = conv3x3(f, f)
        self.conv3 = conv3x3(f, f)
        self.conv3_ = conv3x3(f, f)
        self.conv4 = conv1x1(f, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        c3 = F.relu(self.conv_max(c1))
        c3 = self.conv3_(F.relu(self.conv3(c3)))
        c3 = F.interpolate(c3, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))
        return x * mask


class RFDB(nn.Module):
    """Residual feature distillation block (Liu et al. 2020), LeakyReLU(0.05).

    Three stages each distil C/2 channels with a 1x1 conv and refine the rest with a
    shallow residual 3x3 conv; the distilled features are concatenated, fused by a 1x1 conv
    and weighted by ESA. (B,C,h,w) -> (B,C,h,w).
    """

    def __init__(self, channels: int, esa_channels: int):
        super().__init__()
        d = channels // 2
        self.distil = nn.ModuleList(conv1x1(channels, d) for _ in range(3))
        self.refine = nn.ModuleList(conv3x3(channels, channels) for _ in range(3))
        self.last = conv3x3(channels, d)
        self.fuse = conv1x1(4 * d, channels)
        self.esa = ESA(channels, esa_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        for distil, refine in zip(self.distil, self.refine):
            distilled.append(F.leaky_relu(distil(x), 0.05))
            x = F.leaky_relu(refine(x) + x, 0.05)
        distilled.append(F.leaky_relu(self.last(x), 0.05))
        return self.esa(self.fuse(torch.cat(distilled, dim=1)))


class ALFM(nn.Module):
    """Attention layer fusion (paper Eq. 1-2): channel-by-channel attention across all N blocks.

    Input: the N block outputs, each (B,C,h,w). X = stack -> (B, N*C, h*w); E = X X^T;
    A = softmax(rowmax(E) - E) (``han``) or softmax(E) (``paper``); out = theta * A X + X,
    theta starting at 0; then a 1x1 conv N*C -> C and LeakyReLU(0.05). Output (B,C,h,w).
    """

    def __init__(self, channels: int, num_blocks: int, softmax: str):
        super().__init__()
        self.softmax = softmax
        self.theta = nn.Parameter(torch.zeros(1))
        self.reduce = conv1x1(num_blocks * channels, channels)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(blocks, dim=1)
        b, nc, h, w = x.shape
        flat = x.reshape(b, nc, h * w)
        # E sums h*w products: it overflows fp16, so it is computed in fp32 even under autocast.
        # (The meta device, used to count operations, has no autocast.)
        no_autocast = nullcontext() if x.is_meta else torch.autocast(x.device.type, enabled=False)
        with no_autocast:
            f32 = flat.float()
            energy = torch.bmm(f32, f32.transpose(1, 2))
            if self.softmax == "han":
                energy = energy.amax(dim=-1, keepdim=True) - energy
            attention = torch.softmax(energy, dim=-1)
            attended = torch.bmm(attention, f32)
        out = self.theta * attended.to(x.dtype).reshape(b, nc, h, w) + x
        return F.leaky_relu(self.reduce(out), 0.05)


class ACFM(nn.Module):
    """Attention channel fusion (paper Eq. 3): pseudo-3D (1x3x3 then 3x1x1) sigmoid attention.

    The feature (B,C,h,w) is seen as a one-channel volume (B,1,C,h,w), so neighbouring channels
    interact; out = x + alpha * sigmoid(conv2(conv1(x))) * x, alpha starting at 0.

    The kernels are kept as one-channel Conv3d weights (the weights files' layout) but run as 2-D
    convs: a one-channel Conv3d has no channels-last form (its output comes back contiguous, and
    it runs on a slow reference path). The 1x3x3 kernel, shared by all channels, is a depthwise
    3x3 conv, and the 3x1x1 kernel across channels a 1x1 conv with a banded (C,C) matrix. Same
    function and parameters; channels-last in, channels-last out.
    """

    def __init__(self):
        super().__init__()
        self.spatial = nn.Conv3d(1, 1, (1, 3, 3), padding=(0, 1, 1))
        self.channel = nn.Conv3d(1, 1, (3, 1, 1), padding=(1, 0, 0))
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if x.is_meta or torch.jit.is_tracing():
            # The Conv3d form itself for `lmfn info`, which counts multiply-adds on the meta
            # device (3 per element across channels, not the band's C), and for ONNX export,
            # which needs kernels of a static shape.
            a = self.channel(self.spatial(x.unsqueeze(1))).squeeze(1)
        else:
            depthwise = self.spatial.weight.reshape(1, 1, 3, 3).expand(c, 1, 3, 3)
            a = F.conv2d(x, depthwise, self.spatial.bias.expand(c), padding=1, groups=c)
            a = F.conv2d(a, self.channel_matrix(c), self.channel.bias.expand(c))
        return x + self.alpha * torch.sigmoid(a) * x

    def channel_matrix(self, c: int) -> torch.Tensor:
        """The 3x1x1 kernel (w0, w1, w2) as a (C,C,1,1) 1x1-conv weight:
        out[i] = w0 in[i-1] + w1 in[i] + w2 in[i+1], zero beyond the first and last channel
        (the Conv3d's padding)."""
        w0, w1, w2 = self.channel.weight.reshape(3)
        off = torch.ones(c - 1, dtype=w1.dtype, device=w1.device)
        eye = torch.eye(c, dtype=w1.dtype, device=w1.device)
        band = torch.diag(w0 * off, -1) + w1 * eye + torch.diag(w2 * off, 1)
        return band.reshape(c, c, 1, 1)

    def _apply(self, fn, recurse=True):
        # model.to(memory_format=torch.channels_last) converts every 4-D and 5-D tensor, and a
        # 5-D tensor has no channels-last format: the two 5-D kernels go through a 4-D view.
        def via_4d(t: torch.Tensor) -> torch.Tensor:
            return fn(t.reshape(t.shape[0], -1, 1, 1)).reshape(t.shape) if t.dim() == 5 else fn(t)

        return super()._apply(via_4d, recurse)


class MFFD(nn.Module):
    """Multi-feature fusion distillation decoder: (B,enc,h,w) -> (B,dec,h,w) at 1/4 resolution."""

    def __init__(self, cfg: LMFNConfig):
        super().__init__()
        c = cfg.dec_channels
        self.head = conv3x3(cfg.enc_channels, c)
        if cfg.decoder_block == "rfdb":
            self.blocks = nn.ModuleList(RFDB(c, cfg.esa_channels) for _ in range(cfg.num_blocks))
        else:
            self.blocks = nn.ModuleList(ResBlock(c) for _ in range(cfg.num_blocks))
        self.attention = cfg.fusion == "attention"
        if self.attention:
            self.alfm = ALFM(c, cfg.num_blocks, cfg.alfm_softmax)
            self.acfm = ACFM()
            self.fuse = conv3x3(2 * c, c)
        else:
            self.reduce = nn.Sequential(conv1x1(cfg.num_blocks * c, c), nn.LeakyReLU(0.05))
        self.tail = conv3x3(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.head(x)
        outs = []
        b = f0
        for block in self.blocks:
            b = block(b)
            outs.append(b)
        if self.attention:
            fused = self.fuse(torch.cat([self.alfm(outs), self.acfm(outs[-1])], dim=1))
        else:
            fused = self.reduce(torch.cat(outs, dim=1))
        return self.tail(fused) + f0


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int) -> torch.Tensor:
    """Pad (B,C,H,W) bottom/right to a multiple of ``multiple`` and at least ``min_size`` per side.

    Reflect where the image is large enough, replicate where it is not (reflect needs the pad
    to be smaller than the side).
    """
    h, w = x.shape[-2:]
    ph = max(min_size, -(-h // multiple) * multiple) - h
    pw = max(min_size, -(-w // multiple) * multiple) - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class LMFN(nn.Module):
    """LMFN deblurring network. ``forward``: (B,3,H,W) float in [0,1] -> (B,3,H,W), any H, W >= 1.

    The output is not clamped (training wants the raw values); clamp to [0,1] for display.
    """

    multiple = 16  # four stride-2 downblocks
    min_size = 64  # ESA at 1/4 resolution needs >= 15 px

    def __init__(self, config: LMFNConfig | None = None):
        super().__init__()
        self.config = config = config or LMFNConfig()
        if config.encoder == "mshf":
            self.encoder = MSHF(config.enc_channels)
        else:
            self.encoder = PlainEncoder(config.enc_channels, config.plain_resblocks)
        self.decoder = MFFD(config)
        self.reconstruct = nn.Sequential(conv3x3(config.dec_channels, 3 * 16), nn.PixelShuffle(4))
        self.register_buffer(
            "rgb_mean", torch.tensor(config.rgb_mean).view(1, 3, 1, 1), persistent=False
        )

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right to a multiple of 16 and at least 64 per side (`pad_to_multiple`)."""
        return pad_to_multiple(x, self.multiple, self.min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LMFN expects a (B,3,H,W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        inp = self.pad(x)
        feat = self.encoder(inp - self.rgb_mean)
        out = self.reconstruct(self.decoder(feat))
        out = out + (inp if self.config.global_residual else self.rgb_mean)
        return out[..., :h, :w]


# --------------------------------------------------------------------------------------------
# Named variants (the paper's Tables 3 and 4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    config: LMFNConfig
    description: str
    paper_params_m: float | None  # the paper's "Model Size" in millions, where it gives one


VARIANTS: dict[str, Variant] = {}
DEFAULT_VARIANT = "lmfn"


def _register(name: str, description: str, paper_params_m: float | None, **overrides) -> None:
    VARIANTS[name] = Variant(name, LMFNConfig(**overrides), description, paper_params_m)


_register("lmfn", "the paper's model: MSHF + 4 RFDBs + ALFM/ACFM", 1.25)
for _n, _paper in zip(range(1, 7), (1.15, 1.18, 1.22, 1.25, 1.28, 1.31)):
    _register(f"lmfn-rfdb{_n}", f"Table 4: {_n} RFDB{'s' if _n > 1 else ''}", _paper, num_blocks=_n)
_register("lmfn-no-mshf", "Table 3: plain stride-2 encoder instead of MSHF", 1.8, encoder="plain")
_register("lmfn-resblocks", "Table 3: residual blocks instead of RFDBs", 2.9, decoder_block="resblock")
_register("lmfn-no-attention", "Table 3: concatenation instead of ALFM/ACFM", 1.20, fusion="concat")
_register("lmfn-paper-softmax", "ALFM with softmax(E) as the paper's Eq. 1 reads", 1.25, alfm_softmax="paper")
_register("lmfn-residual", "lmfn plus a global input residual (not in the paper)", None, global_residual=True)


def variant_config(name: str, **overrides) -> LMFNConfig:
    """The config of a named variant, with fields optionally overridden."""
    try:
        base = VARIANTS[name].config
    except KeyError:
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base


def build_model(name: str = DEFAULT_VARIANT, **overrides) -> LMFN:
    """A freshly initialised LMFN of a named variant, e.g. ``build_model("lmfn-rfdb6")``."""
    return LMFN(variant_config(name, **overrides))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
