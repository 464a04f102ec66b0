"""The toolbox's (mmtracking 0.14) VID models written from its definitions: state dicts with its
names and shapes (SELSA + TRoI on ResNet-50 DC5 at a toy size, FlowNetSimple, the FGFA aggregator)
and plain-torch references of its Temporal RoI Align, SELSA head, flow network, flow warping and
embedding aggregator, for the converter tests; the class orders of its YouTube-VIS models."""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from helpers.mmdet_reference import (
    ToolboxParams,
    toolbox_resnet,
)

# mmtrack's YouTubeVISDataset.CLASSES_2019_version / CLASSES_2021_version (its classifiers' order).
YTVIS_2019_CLASSES = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey", "hand",
    "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear", "motorbike", "giraffe", "leopard",
    "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra", "tiger", "elephant", "snowboard", "boat",
    "shark", "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
)  # fmt: skip
YTVIS_2021_CLASSES = (
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck", "earless_seal", "elephant",
    "fish", "flying_disc", "fox", "frog", "giant_panda", "giraffe", "horse", "leopard", "lizard", "monkey",
    "motorbike", "mouse", "parrot", "person", "rabbit", "shark", "skateboard", "snake", "snowboard", "squirrel",
    "surfboard", "tennis_racket", "tiger", "train", "truck", "turtle", "whale", "zebra",
)  # fmt: skip
CONVERTED = "ImageNetVID/converted/"


# A toy-sized SELSA + TRoI model with the converted config's structure: stem 8, bottleneck widths
# 8..64, neck 32 channels, 64-d FC layers.
TOY = dict(base_channels=8, neck=32, fc=64)


TOY_OPTS = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 8,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.CHANNEL_REDUCTION.OUT_CHANNELS", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
]  # fmt: skip


TOY_YAML = """
MODEL:
  RESNETS: {STEM_OUT_CHANNELS: 8, RES2_OUT_CHANNELS: 32, WIDTH_PER_GROUP: 8}
  CHANNEL_REDUCTION: {OUT_CHANNELS: 32}
  ROI_BOX_HEAD: {FC_DIM: 64}
"""


# The test settings of the toolbox's faster_rcnn_r50_dc5: RPN (12 anchors on stride 16) and detections.
DC5_RPN = dict(strides=(16,), scales=(4, 8, 16, 32), nms_pre=6000, max_per_img=300)


DC5_DETECTIONS = dict(stds=[0.2] * 4, score_thr=1e-4)


def toolbox_state_dict(
    depth=50,
    groups=1,
    base_width=4,
    base_channels=64,
    neck=512,
    fc=1024,
    num_fcs=3,
    selsa=True,
    troi=True,
    num_classes=30,
    device="cpu",
    seed=0,
):
    """The state dict of the toolbox's ``faster_rcnn_r50_dc5`` detector (ResNet / ResNeXt,
    ChannelMapper neck, RPNHead with 12 sigmoid anchors, ``shared_fcs`` box head), wrapped as in
    its SELSA model (``detector.`` prefix; SelsaBBoxHead ``aggregator`` after every FC; TRoI
    ``embed_network``). Random values; BatchNorm variances positive."""
    params = ToolboxParams(device, seed)
    d = "detector."
    inplanes = params.resnet(d + "backbone.", depth, groups, base_width, base_channels)[-1]
    params.conv(d + "neck.convs.0.conv", neck, inplanes, 3, bias=True)
    params.rpn_head(d + "rpn_head.", neck, 12)
    r = d + "roi_head."
    if troi:
        params.conv(r + "bbox_roi_extractor.embed_network.conv", neck, neck, 3, bias=True)
    for i in range(num_fcs):
        params.linear(f"{r}bbox_head.shared_fcs.{i}", fc, neck * 49 if i == 0 else fc)
        for name in ("fc_embed", "ref_fc_embed", "fc", "ref_fc") if selsa else ():
            params.linear(f"{r}bbox_head.aggregator.{i}.{name}", fc, fc)
    params.linear(r + "bbox_head.fc_cls", num_classes + 1, fc)
    params.linear(r + "bbox_head.fc_reg", 4 * num_classes, fc)
    return params.state_dict


def toolbox_dc5_features(sd, x):
    """The detector's extract_feat: ResNet-DC5 (strides (1, 2, 2, 1), dilations (1, 1, 1, 2)),
    then the ChannelMapper neck (3x3 conv + ReLU)."""
    c5 = toolbox_resnet(sd, x, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))[-1]
    p = "detector.neck.convs.0.conv."
    return F.relu(F.conv2d(c5, sd[p + "weight"], sd[p + "bias"], padding=1))


def toolbox_temporal_roi_align(sd, target_map, ref_maps, rois, k=2, num_blocks=4):
    """TemporalRoIAlign at test: RoIAlign (aligned, 7x7, 2 samples, stride 16) on the target map;
    Most Similar RoI Align on each reference map (cosine similarity, top k, softmax); temporal
    attention over [target, refs] with the shared 3x3 embed conv."""
    roi_feats = roi_align(target_map, [rois], 7, 1 / 16, 2, aligned=True)
    n, c = roi_feats.shape[:2]
    queries = roi_feats / roi_feats.norm(dim=1, keepdim=True)
    queries = queries.permute(0, 2, 3, 1).reshape(-1, c)
    refs = torch.cat(ref_maps)
    keys = (refs / refs.norm(dim=1, keepdim=True)).permute(1, 0, 2, 3).reshape(c, -1)
    similarity = (queries @ keys).view(queries.shape[0], len(ref_maps), -1)
    values, indices = similarity.topk(k, dim=2)
    weights = values.softmax(dim=2)
    flat = refs.permute(2, 3, 0, 1).reshape(-1, len(ref_maps), c)
    most_similar = torch.stack(
        [(flat[indices[:, i], i, :] * weights[:, i, :, None]).sum(1) for i in range(len(ref_maps))]
    )
    most_similar = most_similar.view(len(ref_maps), n, 7, 7, c).permute(0, 1, 4, 2, 3)
    frames = torch.cat([roi_feats[None], most_similar])
    p = "detector.roi_head.bbox_roi_extractor.embed_network.conv."
    embed = F.conv2d(frames.flatten(0, 1), sd[p + "weight"], sd[p + "bias"], padding=1).view(*frames.shape)
    embed = embed.view(len(frames), n, num_blocks, -1, 7, 7)
    attention = (embed * embed[[0]]).sum(dim=3, keepdim=True) / math.sqrt(c / num_blocks)
    attention = attention.expand_as(embed).reshape(frames.shape).softmax(dim=0)
    return (frames * attention).sum(dim=0)


def toolbox_selsa_head(sd, x, ref, num_fcs, groups=16):
    """SelsaBBoxHead.forward (x + SelsaAggregator(x, ref) after every shared FC, ReLU on both)."""
    p = "detector.roi_head.bbox_head."

    def linear(t, name):
        return F.linear(t, sd[f"{p}{name}.weight"], sd[f"{p}{name}.bias"])

    x, ref = x.flatten(1), ref.flatten(1)
    for i in range(num_fcs):
        x, ref = linear(x, f"shared_fcs.{i}"), linear(ref, f"shared_fcs.{i}")
        a = f"aggregator.{i}."
        n, c = x.shape
        q = linear(x, a + "fc_embed").view(n, groups, -1).permute(1, 0, 2)
        k = linear(ref, a + "ref_fc_embed").view(len(ref), groups, -1).permute(1, 2, 0)
        v = linear(ref, a + "ref_fc").view(len(ref), groups, -1).permute(1, 0, 2)
        weights = (torch.bmm(q, k) / math.sqrt(c // groups)).softmax(dim=2)
        x = x + linear(torch.bmm(weights, v).permute(1, 0, 2).reshape(n, c), a + "fc")
        x, ref = F.relu(x), F.relu(ref)
    return linear(x, "fc_cls"), linear(x, "fc_reg")


def assert_same_detections(found, expected):
    """A converted model's detections on a whole image are the toolbox's ``(boxes, scores, labels)``."""
    boxes, scores, labels = expected
    assert len(found) == len(boxes) > 10
    torch.testing.assert_close(found.pred_boxes.tensor, boxes, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(found.scores, scores, rtol=1e-4, atol=1e-6)
    assert found.pred_classes.tolist() == labels.tolist()


def toolbox_flow_warp_feats(x, flow):
    """The toolbox's flow_warp_feats, re-computed from its definition: flow resized to x's width
    ratio and scaled by it, pixel grid + flow normalised by W and H, grid_sample with border
    padding and align_corners=True."""
    scale = float(x.shape[-1]) / flow.shape[-1]
    flow = F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False) * scale
    h, w = x.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack((cols, rows)).to(flow)[None] + flow
    grid = torch.stack((grid[:, 0] / w * 2 - 1, grid[:, 1] / h * 2 - 1), dim=-1)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=True)


# The toolbox's keys and shapes, in its module order.
RGB_MEAN, RGB_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FLOW_MEAN, FLOW_STD = (0.411, 0.432, 0.450), (255.0, 255.0, 255.0)
TOOLBOX_FLOWNET = [
    ("conv1.0.conv.weight", (64, 6, 7, 7)), ("conv1.0.conv.bias", (64,)),
    ("conv2.0.conv.weight", (128, 64, 5, 5)), ("conv2.0.conv.bias", (128,)),
    ("conv3.0.conv.weight", (256, 128, 5, 5)), ("conv3.0.conv.bias", (256,)),
    ("conv3.1.conv.weight", (256, 256, 3, 3)), ("conv3.1.conv.bias", (256,)),
    ("conv4.0.conv.weight", (512, 256, 3, 3)), ("conv4.0.conv.bias", (512,)),
    ("conv4.1.conv.weight", (512, 512, 3, 3)), ("conv4.1.conv.bias", (512,)),
    ("conv5.0.conv.weight", (512, 512, 3, 3)), ("conv5.0.conv.bias", (512,)),
    ("conv5.1.conv.weight", (512, 512, 3, 3)), ("conv5.1.conv.bias", (512,)),
    ("conv6.0.conv.weight", (1024, 512, 3, 3)), ("conv6.0.conv.bias", (1024,)),
    ("conv6.1.conv.weight", (1024, 1024, 3, 3)), ("conv6.1.conv.bias", (1024,)),
    ("deconv5.conv.weight", (1024, 512, 4, 4)),
    ("predict_flow6.conv.weight", (2, 1024, 3, 3)),
    ("upsample_flow5.conv.weight", (2, 2, 4, 4)),
    ("deconv4.conv.weight", (1026, 256, 4, 4)),
    ("predict_flow5.conv.weight", (2, 1026, 3, 3)),
    ("upsample_flow4.conv.weight", (2, 2, 4, 4)),
    ("deconv3.conv.weight", (770, 128, 4, 4)),
    ("predict_flow4.conv.weight", (2, 770, 3, 3)),
    ("upsample_flow3.conv.weight", (2, 2, 4, 4)),
    ("deconv2.conv.weight", (386, 64, 4, 4)),
    ("predict_flow3.conv.weight", (2, 386, 3, 3)),
    ("upsample_flow2.conv.weight", (2, 2, 4, 4)),
    ("predict_flow.conv.weight", (2, 194, 3, 3)),
]  # fmt: skip


TOOLBOX_AGGREGATOR = [("embed_convs.0.conv.weight", (512, 512, 3, 3)), ("embed_convs.0.conv.bias", (512,))]


def toolbox_flow_state_dict(seed=0):
    """A toolbox FGFA checkpoint's motion.* and aggregator.* tensors, random, scaled by 1/sqrt(fan-in)."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for prefix, keys in (("motion.", TOOLBOX_FLOWNET), ("aggregator.", TOOLBOX_AGGREGATOR)):
        for key, shape in keys:
            fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 1
            if key.startswith("deconv") or key.startswith("upsample"):  # transposed: [in, out, k, k]
                fan_in = shape[0]
            state[prefix + key] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def toolbox_flownet(state, imgs, img_shape, img_scale_factor=0.5, flow_scale_factor=5.0, p="motion."):
    """The toolbox's FlowNetSimple.forward from its definition, on the source tensors.
    imgs: [N, 6, H, W] (target, reference) normalised RGB; img_shape: the first image's (h, w)."""

    def conv(x, name, stride=1, bias=True, act=True):
        weight = state[f"{p}{name}.conv.weight"]
        b = state[f"{p}{name}.conv.bias"] if bias else None
        x = F.conv2d(x, weight, b, stride=stride, padding=(weight.shape[-1] - 1) // 2)
        return F.leaky_relu(x, 0.1) if act else x

    def deconv(x, name, act):
        x = F.conv_transpose2d(x, state[f"{p}{name}.conv.weight"], stride=2, padding=1)
        return F.leaky_relu(x, 0.1) if act else x

    mean = torch.tensor(RGB_MEAN).repeat(2)[None, :, None, None]
    std = torch.tensor(RGB_STD).repeat(2)[None, :, None, None]
    x = (imgs * std + mean) / torch.tensor(FLOW_STD).repeat(2)[None, :, None, None]
    x = x - torch.tensor(FLOW_MEAN).repeat(2)[None, :, None, None]
    x[:, :, img_shape[0] :, :] = 0.0
    x[:, :, :, img_shape[1] :] = 0.0
    x = F.interpolate(x, scale_factor=img_scale_factor, mode="bilinear", align_corners=False)
    outs = []
    for level in range(1, 7):
        x = conv(x, f"conv{level}.0", stride=2)
        if f"{p}conv{level}.1.conv.weight" in state:
            x = conv(x, f"conv{level}.1")
        if level >= 2:
            outs.append(x)  # conv2 .. conv6 outputs
    concat = outs[-1]
    for i in range(len(outs) - 1, 0, -1):  # level i + 2 -> level i + 1
        h, w = outs[i - 1].shape[-2:]
        flow = conv(concat, f"predict_flow{i + 2}", bias=False, act=False)
        upflow = deconv(flow, f"upsample_flow{i + 1}", act=False)[:, :, :h, :w]
        deconv_out = deconv(concat, f"deconv{i + 1}", act=True)[:, :, :h, :w]
        concat = torch.cat((outs[i - 1], deconv_out, upflow), dim=1)
    flow = conv(concat, "predict_flow", bias=False, act=False)
    flow = F.interpolate(flow, scale_factor=4 / img_scale_factor, mode="bilinear", align_corners=False)
    return flow * (4 / img_scale_factor) * flow_scale_factor


def toolbox_embed_aggregator(state, x, ref_x, p="aggregator."):
    """The toolbox's EmbedAggregator.forward (num_convs=1) from its definition."""

    def embed(t):
        t = F.conv2d(t, state[f"{p}embed_convs.0.conv.weight"], state[f"{p}embed_convs.0.conv.bias"], padding=1)
        return t / t.norm(p=2, dim=1, keepdim=True)

    weights = torch.sum(embed(ref_x) * embed(x), dim=1, keepdim=True).softmax(dim=0)
    return weights, torch.sum(ref_x * weights, dim=0, keepdim=True)
