"""SGE-ResNets in PyTorch, laid out exactly as sge builds them, for the weight scripts.

The layout is torchvision's v1.5 ResNet (stride on the 3x3 conv of a bottleneck) with a Spatial
Group-wise Enhance module after the last BatchNorm of every residual block, before the residual
add, as in the paper's PytorchInsight `sge_resnet*` models. Parameter names match
`model.state_dict()` of those models, so their checkpoints load here and into sge by name.

Only used by scripts under scripts/ (never a dependency of sge).
"""
import torch
import torch.nn as nn

PRESETS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
    "resnet101": ("bottleneck", [3, 4, 23, 3]),
}


class SpatialGroupEnhance(nn.Module):
    """PytorchInsight's SpatialGroupEnhance (classification/models/imagenet/resnet_sge.py), the
    paper's reference: x (N, C, H, W) in G groups; every position of a group is gated by
    sigmoid(weight * norm(sum_c mean_hw(x_c) * x_c) + bias), norm = (t - mean) / (std_unbiased + 1e-5)."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = t / std
        t = t.view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        x = x * self.sig(t)
        return x.view(b, c, h, w)


class _Block(nn.Module):
    """What both block kinds end with: ReLU, the optional SGE after the last BatchNorm, the
    projection shortcut, and relu(sge(out) + identity)."""

    def _finish(self, cin, out, stride, groups):
        self.relu = nn.ReLU(inplace=True)
        self.sge = SpatialGroupEnhance(groups) if groups else None
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def _merge(self, out, x):
        if self.sge is not None:
            out = self.sge(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, cin, width, stride, groups):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self._finish(cin, width, stride, groups)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self._merge(self.bn2(self.conv2(out)), x)


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, cin, width, stride, groups):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self._finish(cin, out, stride, groups)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._merge(self.bn3(self.conv3(out)), x)


class SGEResNet(nn.Module):
    """An sge model configuration (`ResNetConfig`, as stored in an sge checkpoint's metadata) in
    PyTorch: stem "imagenet" (7x7 stride 2 + max pool) or "small" (3x3 stride 1), stages of
    `blocks` residual blocks of `widths`, SGE `groups` per stage (0 or use_sge False: none)."""

    def __init__(self, widths, blocks, groups, block="bottleneck", stem="imagenet", stem_width=64, classes=1000,
                 in_channels=3, use_sge=True):
        super().__init__()
        block = BasicBlock if block == "basic" else Bottleneck
        self.stem = stem
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        self.stages = len(widths)
        cin = stem_width
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stage = []
            for b in range(count):
                stage.append(block(cin, width, 2 if (b == 0 and i > 0) else 1, groups[i] if use_sge else 0))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    @staticmethod
    def preset(name="resnet50", classes=1000, width=64, groups=64, in_channels=3):
        """`sge train --model NAME --width WIDTH --groups GROUPS` (groups 0: no SGE, like --no-sge)."""
        kind, blocks = PRESETS[name]
        return SGEResNet([width, 2 * width, 4 * width, 8 * width], blocks, [groups] * 4, block=kind, stem="imagenet",
                         stem_width=width, classes=classes, in_channels=in_channels, use_sge=groups > 0)

    @staticmethod
    def from_sge_config(c):
        """The model of an sge checkpoint's `config` metadata (a JSON object)."""
        return SGEResNet(c["widths"], c["blocks"], c["groups"], block=c["block"], stem=c["stem"], stem_width=c["stemWidth"],
                         classes=c["classes"], in_channels=c["inputChannels"], use_sge=c["useSGE"])

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomize(model, seed):
    """Non-trivial values everywhere: BatchNorm affine and running statistics away from their
    initial values and SGE gates that are not the identity, so a loader that drops or misplaces
    any tensor gives visibly different logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(0.5 + torch.rand(c, generator=g))
                module.bias.copy_(0.1 * torch.randn(c, generator=g))
                module.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                module.num_batches_tracked.fill_(1000)
            elif isinstance(module, SpatialGroupEnhance):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(1 + 0.5 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / module.in_features ** 0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
    return model
