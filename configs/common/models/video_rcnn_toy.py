"""
Tiny CPU variant of video_rcnn_dc5.py for the generated toy dataset: the same network as
configs/toy/troi.yaml. ResNet-18 with GroupNorm trained from scratch, stages up to conv4
(stride 16), RPN on conv4, conv4 reduced to 128 channels, Temporal RoI Align (K=4, N=4) to 7x7,
two 256-d FC layers, 3 classes, BGR input.
"""

from .video_rcnn_dc5 import model, resnet_stages

model.backbone.bottom_up.stem.norm = "GN"
model.backbone.bottom_up.stages = resnet_stages(18, norm="GN", res5_dilation=1)
model.backbone.bottom_up.out_features = ["res4"]
model.backbone.bottom_up.freeze_at = 0
model.backbone.in_feature = "res4"
model.backbone.out_channels = 128

model.proposal_generator.head.in_channels = 256
model.proposal_generator.head.num_anchors = 9
model.proposal_generator.anchor_generator.sizes = [[24, 48, 96]]
model.proposal_generator.batch_size_per_image = 128
model.proposal_generator.pre_nms_topk = (1000, 1000)
model.proposal_generator.post_nms_topk = (128, 64)

model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_in_features = ["res4_reduced"]
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape.channels = 256
model.roi_heads.box_predictor.test_score_thresh = 0.01
model.roi_heads.box_predictor.test_topk_per_image = 20

model.pixel_mean = [103.530, 116.280, 123.675]
model.pixel_std = [57.375, 57.120, 58.395]
model.input_format = "BGR"
model.cache_frames = 32
model.support_proposals_train = 32
model.support_proposals_test = 32
