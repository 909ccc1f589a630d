#!/usr/bin/env python3
"""PyTorch eager reference of `slim-train bench-step`: one SlimCLR (SimCLR) slimmable
training step against one full-width-only step, on the same random two-view batch.

The same computation as crates/slim-train/src/bench.rs, written as one would in plain
PyTorch:

- a slimmable CIFAR ResNet-20 (3x3 stem with 16 channels, stages 16/32/64 of 3 basic
  blocks, 1x1 conv + BN shortcuts where channels or stride change; `--backbone
  resnet18-cifar` gives 64/128/256/512 x 2): every conv keeps one full-width weight and
  width w uses its leading block `W[:out(w), :in(w)]` through `F.conv2d`, with
  `out(w) = max(1, floor(c * w))` and the image channels never sliced; switchable
  BatchNorm (`F.batch_norm` with each width's own affine pair and running statistics);
- SimCLR's slimmable projection head as SlimCLR builds it: Linear with bias (sliced)
  -> that width's BatchNorm -> ReLU -> Linear to 128 without bias -> that width's
  BatchNorm of the 128 outputs (hidden = the backbone's features);
- NT-Xent (temperature 0.5) with the positive in column 0 and the 2N-2 negatives after
  it, cross-entropy with target 0; distillation of each sub-width toward the full width's
  detached raw similarities (the logits times tau, as SlimCLR distils them):
  KL(softmax(t/5) || softmax(s/5)), batchmean, times 25; SlimCLR's re-weighting: full
  width 1 + sum(widths) - max = 2.5, each sub-width 0.5 contrastive + 0.5 distillation;
  the full-width-only step is its NT-Xent alone;
- SGD, momentum 0.9, weight decay 1e-4 on the conv and linear weights only;
- `--bf16`: each convolution in bfloat16 (input and weight cast, output back to float32),
  everything else float32, as slim-train's `--bf16` does (autocast would also run the
  head's matmuls in bfloat16: not the same computation); `--channels-last`: conv weights
  and the inputs in NHWC memory order.

After --warmup untimed steps of each kind, the kinds alternate step by step, each timed.
Prints the figures as a table and, on the last line, as JSON.

    $SLIM_PYTHON tools/bench_step_torch.py --batch 64 --threads 2
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

TEMPERATURE = 0.5
DISTILL_T = 5.0
HEAD_OUT = 128
LR = 0.05
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
# Set from --bf16 and --channels-last.
BF16 = False
CHANNELS_LAST = False


def scaled(c, w):
    """slim_core::width::scaled: max(1, floor(c * w))."""
    return max(1, int(math.floor(c * w + 1e-9)))


class BatchNorms:
    """One BatchNorm per width: affine pair (trained) and running statistics."""

    def __init__(self, channels, widths, device, sliced=True):
        self.per_width = []
        for w in widths:
            c = scaled(channels, w) if sliced else channels
            self.per_width.append(
                (
                    torch.ones(c, device=device, requires_grad=True),
                    torch.zeros(c, device=device, requires_grad=True),
                    torch.zeros(c, device=device),
                    torch.ones(c, device=device),
                )
            )

    def __call__(self, x, i):
        g, b, m, v = self.per_width[i]
        return F.batch_norm(x, m, v, g, b, training=True, momentum=BN_MOMENTUM, eps=BN_EPS)

    def parameters(self):
        return [t for g, b, _, _ in self.per_width for t in (g, b)]


class SlimConv:
    """Conv (no bias) + switchable BatchNorm + optional ReLU."""

    def __init__(self, cin, cout, k, stride, relu, widths, device, slim_input=True):
        self.cin, self.cout, self.stride, self.pad = cin, cout, stride, k // 2
        self.relu, self.slim_input = relu, slim_input
        self.weight = torch.empty(cout, cin, k, k, device=device)
        torch.nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        if CHANNELS_LAST:
            self.weight = self.weight.contiguous(memory_format=torch.channels_last)
        self.weight.requires_grad_(True)
        self.bn = BatchNorms(cout, widths, device)

    def __call__(self, x, w, i):
        cin = scaled(self.cin, w) if self.slim_input else self.cin
        weight = self.weight[: scaled(self.cout, w), :cin]
        if BF16:
            y = F.conv2d(x.bfloat16(), weight.bfloat16(), None, self.stride, self.pad).float()
        else:
            y = F.conv2d(x, weight, None, self.stride, self.pad)
        y = self.bn(y, i)
        return F.relu(y) if self.relu else y

    def parameters(self):
        return [self.weight] + self.bn.parameters()


class Block:
    """Basic block: relu(conv2(conv1(x)) + shortcut(x))."""

    def __init__(self, cin, cout, stride, widths, device):
        self.conv1 = SlimConv(cin, cout, 3, stride, True, widths, device)
        self.conv2 = SlimConv(cout, cout, 3, 1, False, widths, device)
        self.shortcut = (
            SlimConv(cin, cout, 1, stride, False, widths, device)
            if stride != 1 or cin != cout
            else None
        )

    def __call__(self, x, w, i):
        y = self.conv2(self.conv1(x, w, i), w, i)
        s = x if self.shortcut is None else self.shortcut(x, w, i)
        return F.relu(y + s)

    def parameters(self):
        convs = [self.conv1, self.conv2] + ([self.shortcut] if self.shortcut else [])
        return [p for c in convs for p in c.parameters()]


BACKBONES = {
    "resnet20": ([16, 32, 64], [3, 3, 3]),
    "resnet18-cifar": ([64, 128, 256, 512], [2, 2, 2, 2]),
}


class SlimResNet:
    def __init__(self, backbone, in_channels, widths, device):
        stages, blocks = BACKBONES[backbone]
        self.widths = widths
        self.stem = SlimConv(in_channels, stages[0], 3, 1, True, widths, device, slim_input=False)
        self.blocks = []
        cin = stages[0]
        for s, (cout, n) in enumerate(zip(stages, blocks)):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                self.blocks.append(Block(cin, cout, stride, widths, device))
                cin = cout
        self.features = cin

    def __call__(self, x, w):
        i = self.widths.index(w)
        h = self.stem(x, w, i)
        for b in self.blocks:
            h = b(h, w, i)
        return h.mean(dim=(2, 3))

    def parameters(self):
        return self.stem.parameters() + [p for b in self.blocks for p in b.parameters()]


class SlimHead:
    """Linear (sliced, bias) -> that width's BN -> ReLU -> Linear to HEAD_OUT (no bias)
    -> that width's BN."""

    def __init__(self, features, hidden, out, widths, device):
        self.features, self.hidden, self.widths = features, hidden, widths

        def uniform(shape, fan_in):
            b = 1.0 / math.sqrt(fan_in)
            return torch.empty(shape, device=device).uniform_(-b, b).requires_grad_(True)

        self.fc1 = uniform((hidden, features), features)
        self.bias1 = uniform((hidden,), features)
        self.bn = BatchNorms(hidden, widths, device)
        self.fc2 = uniform((out, hidden), hidden)
        self.out_bn = BatchNorms(out, widths, device, sliced=False)

    def __call__(self, e, w):
        i = self.widths.index(w)
        f, h = scaled(self.features, w), scaled(self.hidden, w)
        x = F.relu(self.bn(F.linear(e, self.fc1[:h, :f], self.bias1[:h]), i))
        return self.out_bn(F.linear(x, self.fc2[:, :h]), i)

    def parameters(self):
        return [self.fc1, self.bias1, self.fc2] + self.bn.parameters() + self.out_bn.parameters()


_COLUMNS = {}


def nt_xent_columns(n, device):
    """Row i: its positive (i + n mod 2n) first, then the other 2n - 2 in ascending order."""
    key = (n, str(device))
    if key not in _COLUMNS:
        m = 2 * n
        rows = []
        for i in range(m):
            pos = (i + n) % m
            rows.append([pos] + [j for j in range(m) if j != i and j != pos])
        _COLUMNS[key] = torch.tensor(rows, dtype=torch.long, device=device)
    return _COLUMNS[key]


def nt_xent_logits(z1, z2):
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.t() / TEMPERATURE
    return sim.gather(1, nt_xent_columns(z1.shape[0], z.device))


def infonce(logits):
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))


def distillation(student, teacher):
    """On the raw similarities: the logits times the temperature."""
    return (
        F.kl_div(
            F.log_softmax(student * TEMPERATURE / DISTILL_T, dim=-1),
            F.log_softmax(teacher.detach() * TEMPERATURE / DISTILL_T, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * DISTILL_T
        * DISTILL_T
    )


class Stepper:
    def __init__(self, args, widths, active, device):
        torch.manual_seed(args.seed)
        self.net = SlimResNet(args.backbone, args.channels, widths, device)
        f = self.net.features
        self.head = SlimHead(f, f, HEAD_OUT, widths, device)
        self.active = active
        params = self.net.parameters() + self.head.parameters()
        self.opt = torch.optim.SGD(
            [
                {"params": [p for p in params if p.dim() > 1], "weight_decay": 1e-4},
                {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0},
            ],
            lr=LR,
            momentum=0.9,
        )
        if len(active) > 1:
            self.w_full = 1.0 + sum(widths) - max(widths)
            self.w_sub_c, self.w_sub_d = 0.5, 0.5
        else:
            self.w_full = 1.0
        self.cuda = device.type == "cuda"

    def logits(self, x1, x2, w):
        z1 = self.head(self.net(x1, w), w)
        z2 = self.head(self.net(x2, w), w)
        return nt_xent_logits(z1, z2)

    def step(self, x1, x2):
        full = self.logits(x1, x2, 1.0)
        total = infonce(full) * self.w_full
        teacher = full.detach()
        for w in self.active[1:]:
            logits = self.logits(x1, x2, w)
            total = total + infonce(logits) * self.w_sub_c
            total = total + distillation(logits, teacher) * self.w_sub_d
        value = total.item()
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        if self.cuda:
            torch.cuda.synchronize()
        return value

    def timed(self, x1, x2):
        t = time.perf_counter()
        loss = self.step(x1, x2)
        return time.perf_counter() - t, loss


def stats(times, images, loss):
    s = sorted(times)
    med = statistics.median(s)
    return {
        "median_s": med,
        "min_s": s[0],
        "max_s": s[-1],
        "images_per_s": images / med,
        "times_s": times,
        "last_loss": loss,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="resnet20", choices=sorted(BACKBONES))
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", default="1.0,0.75,0.5,0.25")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", choices=["on", "off"], default="off", help="convolutions in bfloat16")
    ap.add_argument("--channels-last", choices=["on", "off"], default="off", help="NHWC weights and inputs")
    ap.add_argument("--json", default=None, help="also write the JSON here")
    args = ap.parse_args()
    global BF16, CHANNELS_LAST
    BF16, CHANNELS_LAST = args.bf16 == "on", args.channels_last == "on"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = sorted({float(w) for w in args.widths.split(",")}, reverse=True)
    assert widths[0] == 1.0, "the widths must include 1.0"

    slim = Stepper(args, widths, widths, device)
    full = Stepper(args, widths, [1.0], device)
    torch.manual_seed(args.seed + 1)
    shape = (args.batch, args.channels, args.image_size, args.image_size)
    x1 = torch.randn(shape, device=device)
    x2 = torch.randn(shape, device=device)
    if CHANNELS_LAST:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)

    for _ in range(args.warmup):
        slim.step(x1, x2)
        full.step(x1, x2)
    t_slim, t_full, l_slim, l_full = [], [], 0.0, 0.0
    for _ in range(args.steps):
        t, l_slim = slim.timed(x1, x2)
        t_slim.append(t)
        t, l_full = full.timed(x1, x2)
        t_full.append(t)

    images = 2 * args.batch
    r = {
        "implementation": f"PyTorch {torch.__version__} eager",
        "backbone": args.backbone,
        "image_size": args.image_size,
        "channels": args.channels,
        "batch": args.batch,
        "widths": widths,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "steps": args.steps,
        "bf16": BF16,
        "channels_last": CHANNELS_LAST,
        "slimmable": stats(t_slim, images, l_slim),
        "full": stats(t_full, images, l_full),
    }
    r["ratio"] = r["slimmable"]["median_s"] / r["full"]["median_s"]
    print(
        f"bench-step ({r['implementation']}): {args.backbone} {args.channels}x{args.image_size}x{args.image_size}, "
        f"batch {args.batch} x 2 views, widths {widths}, {device} with {r['threads']} threads, "
        f"{args.warmup} warmup + {args.steps} timed steps each"
        f"{', bf16 convs' if BF16 else ''}{', channels-last' if CHANNELS_LAST else ''}"
    )
    print(f"{'step':<12} {'median s':>10} {'min s':>10} {'max s':>10} {'img/s':>10} {'loss':>10}")
    for name, key in [("slimmable", "slimmable"), ("full (1.0)", "full")]:
        s = r[key]
        print(
            f"{name:<12} {s['median_s']:>10.4f} {s['min_s']:>10.4f} {s['max_s']:>10.4f} "
            f"{s['images_per_s']:>10.1f} {s['last_loss']:>10.4f}"
        )
    print(f"ratio slimmable/full (time per step): {r['ratio']:.3f}")
    line = json.dumps(r)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
