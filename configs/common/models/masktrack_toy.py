"""
Tiny CPU variant of masktrack_fpn.py for the generated toy VIS dataset, the same network as
configs/toy/masktrack_troi.yaml: the toy detector of video_rcnn_toy.py (ResNet-18 with GroupNorm
up to conv4, RPN on conv4, conv4 reduced to 128 channels, Temporal RoI Align (K=4, N=4) to 7x7,
2 x 256-d FC) plus MaskTrack R-CNN's mask head (14x14 RoIs, 2 convs of 64 channels) and track
head (7x7 RoIs, 2 x 128-d FC), all on the reduced conv4; 3 classes, BGR input.
"""

from .masktrack_fpn import model
from .video_rcnn_toy import model as detector

FEATURES = ["res4_reduced"]
SCALES = (1.0 / 16,)

model.backbone = detector.backbone
model.proposal_generator = detector.proposal_generator

model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_in_features = FEATURES
model.roi_heads.box_pooler = detector.roi_heads.box_pooler
model.roi_heads.box_pooler.channels = 128
model.roi_heads.box_head = detector.roi_heads.box_head
model.roi_heads.box_head.input_shape.channels = 128
model.roi_heads.box_predictor.input_shape.channels = 256
model.roi_heads.box_predictor.test_score_thresh = 0.05
model.roi_heads.box_predictor.test_topk_per_image = 10
model.roi_heads.mask_in_features = FEATURES
model.roi_heads.mask_pooler.scales = SCALES
model.roi_heads.mask_pooler.sampling_ratio = 2
model.roi_heads.mask_pooler.channels = 128
model.roi_heads.mask_head.input_shape.channels = 128
model.roi_heads.mask_head.conv_dims = [64, 64, 64]
model.roi_heads.track_head.in_features = FEATURES
model.roi_heads.track_head.pooler.scales = SCALES
model.roi_heads.track_head.input_channels = 128
model.roi_heads.track_head.fc_dims = [128, 128]
model.roi_heads.track_head.batch_size_per_image = 64

model.pixel_mean = [103.530, 116.280, 123.675]
model.pixel_std = [57.375, 57.120, 58.395]
model.input_format = "BGR"
model.cache_frames = 32
model.support_proposals_train = detector.support_proposals_train
model.support_proposals_test = detector.support_proposals_test
