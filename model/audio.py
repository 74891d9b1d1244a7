"""Audio branch: a 2-D ResNet over each segment's MFCC matrix.

Built from torchvision's :class:`~torchvision.models.resnet.ResNet` (its ``_make_layer`` and
forward), with one input channel and a (7, 1) stem kernel of stride (2, 1) so the 32 coefficients
are not downsampled early. Module names match torchvision's, so an ImageNet ResNet-34 checkpoint
(``resnet34-b627a593.pth``) loads into it; its RGB 7x7 stem kernel is summed over colour and width
to the (7, 1) one-channel kernel (the response to an input constant along those axes is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from model.visual import CheckpointMismatchError, read_state_dict

__all__ = ["MFCCResNet", "SegmentAudio", "load_resnet_checkpoint"]


class MFCCResNet(ResNet):
    """torchvision ResNet with BasicBlocks, a one-channel (7, 1) stem and configurable widths.

    Forward: (N, 1, frames, coefficients) -> (N, widths[-1]). ``layers=(3, 4, 6, 3)`` and the default
    widths are ResNet-34.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        # ResNet.__init__ hard-codes the widths, so set up its attributes here and reuse its methods.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(1, widths[0], kernel_size=(7, 1), stride=(2, 1), padding=(3, 0), bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
        self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()
        self.num_features = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


class SegmentAudio(nn.Module):
    """ResNet over each of the S MFCC segments, then Linear, BatchNorm, Tanh.

    Input MFCC (B, S * F, n_mfcc); output (B, S, C).
    """

    def __init__(self, resnet: MFCCResNet, segments: int, out_dim: int = 512) -> None:
        super().__init__()
        self.resnet = resnet
        self.segments = segments
        self.proj = nn.Linear(resnet.num_features, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.act = nn.Tanh()

    def forward(self, mfcc: Tensor) -> Tensor:
        batch, frames, coefficients = mfcc.shape
        x = mfcc.reshape(batch * self.segments, 1, frames // self.segments, coefficients)  # (B*S, 1, F, n_mfcc)
        x = self.resnet(x)  # (B*S, R)
        x = self.act(self.norm(self.proj(x)))  # (B*S, C)
        return x.view(batch, self.segments, -1)  # (B, S, C)


def load_resnet_checkpoint(resnet: MFCCResNet, path: str | Path) -> None:
    """Load an ImageNet ResNet-34 checkpoint (torchvision key names), adapting the stem, dropping ``fc``."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    own = resnet.state_dict()
    stem = state.get("conv1.weight")
    if stem is None:
        raise CheckpointMismatchError(f"{path} is not a torchvision ResNet checkpoint (no conv1.weight)")
    if stem.shape[1] != 1 or stem.shape[3] != 1:
        # (64, 3, 7, 7) -> (64, 1, 7, 1)
        state["conv1.weight"] = stem.sum(dim=(1, 3), keepdim=True)
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointMismatchError(f"{path} lacks {len(missing)} ResNet keys (first: {missing[0]!r})")
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointMismatchError(
                f"{path}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    resnet.load_state_dict({k: v for k, v in state.items() if k in own})

