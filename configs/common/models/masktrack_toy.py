"""
Tiny CPU variant of masktrack_fpn.py for the generated toy VIS dataset: the same network as
configs/toy/masktrack_troi.yaml. ResNet-18 with GroupNorm trained from scratch, FPN of 64
channels with GroupNorm, anchors 16..256, box head 2 x 256-d FC, mask head 2 convs of 64
channels, track head 2 x 128-d FC, 3 classes, BGR input.
"""

from .masktrack_fpn import model, resnet_stages

model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages = resnet_stages(18, norm="GN", res5_dilation=1)
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 64
model.backbone.norm = "GN"

model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.post_nms_topk = (200, 64)

model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_pooler.channels = 64
model.roi_heads.box_head.input_shape.channels = 64
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape.channels = 256
model.roi_heads.box_predictor.test_score_thresh = 0.05
model.roi_heads.box_predictor.test_topk_per_image = 10
model.roi_heads.mask_pooler.channels = 64
model.roi_heads.mask_head.input_shape.channels = 64
model.roi_heads.mask_head.conv_dims = [64, 64, 64]
model.roi_heads.track_head.input_channels = 64
model.roi_heads.track_head.fc_dims = [128, 128]
model.roi_heads.track_head.batch_size_per_image = 64

model.pixel_mean = [103.530, 116.280, 123.675]
model.pixel_std = [57.375, 57.120, 58.395]
model.input_format = "BGR"
model.cache_frames = 32
