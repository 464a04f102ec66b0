"""
MaskTrack R-CNN's track head (Yang, Fan, Xu, ICCV 2019), as the public toolbox builds it
(mmtracking 0.14: ``RoITrackHead`` + ``RoIEmbedHead``), and its training targets.

Each box is embedded from its RoIAlign features by FC layers with ReLU. A target-frame box is
matched against the M instances of a reference frame by ``M + 1`` logits: 0 for "a new object"
(not among the references), then the dot products of its embedding with theirs.

Training, per target frame: one reference frame of the same video (the toolbox draws it
uniformly within +-100 frame indices, never the target itself), whose ground-truth boxes and
``gt_track_ids`` are the M reference instances; its backbone features keep their gradient, as in
the toolbox. With the RPN's training proposals of the target frames::

    boxes, labels = head.sample_targets(proposals, targets, ref_targets)
    logits = head(features, boxes, ref_features, [t.gt_boxes for t in ref_targets])
    losses = head.losses(logits, labels)   # {"loss_track": ...}

Test: :class:`~.masktrack_tracker.MaskTrackTracker` keeps the embeddings (:meth:`MaskTrackHead.embed`
of the detected boxes, in the network input's coordinates) of its tracks and matches every
frame's detections against them.
"""

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry
from torch import nn

__all__ = [
    "ROI_TRACK_HEAD_REGISTRY",
    "MaskTrackHead",
    "build_track_head",
    "match_logits",
    "sample_track_targets",
]

ROI_TRACK_HEAD_REGISTRY = Registry("ROI_TRACK_HEAD")
ROI_TRACK_HEAD_REGISTRY.__doc__ = """
Registry for track heads, which embed boxes from the backbone's features and score how target
boxes match reference instances. Called with ``(cfg, input_shape)``, ``input_shape`` being the
backbone's output shapes (name -> ShapeSpec); the head pools its own RoI features.
"""


def build_track_head(cfg, input_shape: Dict[str, ShapeSpec]) -> nn.Module:
    """The track head ``cfg.MODEL.ROI_TRACK_HEAD.NAME``."""
    return ROI_TRACK_HEAD_REGISTRY.get(cfg.MODEL.ROI_TRACK_HEAD.NAME)(cfg, input_shape)


def match_logits(embeddings: torch.Tensor, ref_embeddings: torch.Tensor) -> torch.Tensor:
    """
    ``[R, D]`` embeddings against ``[M, D]`` reference embeddings -> ``[R, 1 + M]`` logits:
    column 0 is 0 ("a new object"), column ``1 + j`` the dot product with reference ``j``.
    """
    similarity = embeddings @ ref_embeddings.t()
    return torch.cat([similarity.new_zeros(len(similarity), 1), similarity], dim=1)


def sample_track_targets(
    proposal_boxes: Sequence[Boxes],
    targets: Sequence[Instances],
    ref_targets: Sequence[Instances],
    *,
    batch_size_per_image: int,
    positive_fraction: float,
    iou_threshold: float,
    append_gt: bool = True,
) -> Tuple[List[Boxes], List[torch.Tensor]]:
    """
    Training RoIs of the track head and their match labels, per target image.

    A RoI is foreground when its highest IoU with the image's ground-truth boxes is at least
    ``iou_threshold``, assigned to that box; as in the toolbox's MaxIoUAssigner, a ground-truth
    box whose best IoU with the proposals reaches ``iou_threshold`` then claims all proposals
    with exactly that IoU (later boxes override earlier ones). With ``append_gt`` the ground-truth
    boxes join the RoIs after this assignment, each assigned to itself. Then
    ``subsample_labels`` draws at most ``batch_size_per_image * positive_fraction`` foreground
    RoIs and fills up to ``batch_size_per_image`` with background ones.

    Args:
        proposal_boxes: the proposals of each target image.
        targets: per target image, ``gt_boxes`` and ``gt_track_ids``.
        ref_targets: per target image, its reference frame's ``gt_track_ids`` (the order of
            the reference boxes given to :meth:`MaskTrackHead.forward`).

    Returns:
        The sampled boxes (foreground first) and their match labels (int64): ``i + 1`` when the
        RoI's instance is the reference's ``i``-th (first with that track id), 0 when the
        instance is not in the reference frame (a new object), -1 for background RoIs, which
        get no loss (the toolbox samples them with weight 0).
    """
    if not len(proposal_boxes) == len(targets) == len(ref_targets):
        raise ValueError(
            f"sample_track_targets: {len(proposal_boxes)} proposal lists, {len(targets)} targets and "
            f"{len(ref_targets)} reference targets; need one of each per image"
        )
    matcher = Matcher([iou_threshold], [0, 1], allow_low_quality_matches=False)
    boxes_out, labels_out = [], []
    for i, (proposals, target, ref_target) in enumerate(zip(proposal_boxes, targets, ref_targets)):
        for name, inst in (("targets", target), ("ref_targets", ref_target)):
            if not inst.has("gt_track_ids"):
                raise ValueError(
                    f"sample_track_targets: {name}[{i}] has no gt_track_ids (fields: {list(inst.get_fields())})"
                )
        iou = pairwise_iou(target.gt_boxes, proposals)  # [G, P]
        matched, foreground = matcher(iou)
        if iou.numel():
            best = iou.max(dim=1).values
            for gt in range(len(best)):
                if best[gt] >= iou_threshold:
                    matched[iou[gt] == best[gt]] = gt
        boxes = proposals.tensor
        if append_gt:
            num_gt = len(target.gt_boxes)
            boxes = cat([boxes, target.gt_boxes.tensor.to(boxes)])
            matched = cat([matched, torch.arange(num_gt, device=matched.device)])
            foreground = cat([foreground, foreground.new_ones(num_gt)])
        positive, negative = subsample_labels(foreground, batch_size_per_image, positive_fraction, 0)
        track_ids = target.gt_track_ids[matched[positive]]
        same = track_ids[:, None] == ref_target.gt_track_ids.to(track_ids.device)[None, :]
        # Column 0 is true when no reference has the id: argmax = 0, else 1 + the first match.
        positive_labels = torch.cat([~same.any(dim=1, keepdim=True), same], dim=1).int().argmax(dim=1)
        boxes_out.append(Boxes(boxes[cat([positive, negative])]))
        labels_out.append(cat([positive_labels, positive_labels.new_full((len(negative),), -1)]))
    return boxes_out, labels_out


@ROI_TRACK_HEAD_REGISTRY.register()
class MaskTrackHead(nn.Module):
    """
    MaskTrack R-CNN's track head: RoIAlign of each box on the FPN levels (``ROIPooler``), then
    FC layers ``fc1, fc2, ...`` each followed by ReLU (the last one too) -> embedding. Match
    logits: :func:`match_logits`. Parameters: only the FC layers.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        pooler: ROIPooler,
        input_channels: int,
        fc_dims: List[int],
        loss_weight: float = 1.0,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        iou_threshold: float = 0.5,
        append_gt: bool = True,
    ):
        """
        Args:
            in_features: the backbone features pooled, in the order of ``pooler``'s scales.
            pooler: RoI pooling on those features.
            input_channels: their channels.
            fc_dims: output size of each FC layer; the last is the embedding size.
            loss_weight: weight of the match loss.
            batch_size_per_image, positive_fraction, iou_threshold, append_gt: training RoIs,
                see :func:`sample_track_targets`.
        """
        super().__init__()
        if not fc_dims:
            raise ValueError("MaskTrackHead needs at least one FC layer (MODEL.ROI_TRACK_HEAD.NUM_FC >= 1)")
        self.in_features = list(in_features)
        self.pooler = pooler
        self.loss_weight = loss_weight
        self.sampling = dict(
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            iou_threshold=iou_threshold,
            append_gt=append_gt,
        )
        height, width = pooler.output_size
        in_dim = input_channels * height * width
        self.fcs = []
        for k, dim in enumerate(fc_dims):
            fc = nn.Linear(in_dim, dim)  # PyTorch's default init, as the toolbox's nn.Linear
            self.add_module(f"fc{k + 1}", fc)
            self.fcs.append(fc)
            in_dim = dim

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        head = cfg.MODEL.ROI_TRACK_HEAD
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MaskTrackHead: the features {in_features} have different channels {sorted(channels)}")
        return {
            "in_features": in_features,
            "pooler": ROIPooler(
                output_size=head.POOLER_RESOLUTION,
                scales=tuple(1.0 / input_shape[f].stride for f in in_features),
                sampling_ratio=head.POOLER_SAMPLING_RATIO,
                pooler_type=head.POOLER_TYPE,
            ),
            "input_channels": channels.pop(),
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "loss_weight": head.LOSS_WEIGHT,
            "batch_size_per_image": head.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": head.POSITIVE_FRACTION,
            "iou_threshold": head.IOU_THRESHOLD,
            "append_gt": cfg.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT,
        }

    @property
    def embedding_dim(self) -> int:
        return self.fcs[-1].out_features

    def embed(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> List[torch.Tensor]:
        """
        Args:
            features: the backbone's features (name -> ``[N, C, H, W]``); ``in_features`` are used.
            boxes: N box lists, in the coordinates of the (resized) input images.
        Returns:
            N tensors ``[R_i, D]``, the embeddings of each image's boxes.
        """
        x = self.pooler([features[f] for f in self.in_features], boxes).flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return list(x.split([len(b) for b in boxes]))

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        boxes: List[Boxes],
        ref_features: Dict[str, torch.Tensor],
        ref_boxes: List[Boxes],
    ) -> List[torch.Tensor]:
        """
        Match logits of N target images' boxes against the boxes of their reference frames.

        Args:
            features, boxes: the target frames' features and boxes (training: the RoIs of
                :meth:`sample_targets`).
            ref_features, ref_boxes: the reference frames' features and instances (training:
                their ground-truth boxes, in the order of their ``gt_track_ids``).
        Returns:
            N tensors ``[R_i, 1 + M_i]`` (:func:`match_logits`).
        """
        if len(boxes) != len(ref_boxes):
            raise ValueError(f"MaskTrackHead: {len(boxes)} target images but {len(ref_boxes)} reference images")
        return [match_logits(e, r) for e, r in zip(self.embed(features, boxes), self.embed(ref_features, ref_boxes))]

    def sample_targets(
        self, proposals: List[Instances], targets: List[Instances], ref_targets: List[Instances]
    ) -> Tuple[List[Boxes], List[torch.Tensor]]:
        """:func:`sample_track_targets` on ``proposals[i].proposal_boxes`` with this head's settings."""
        return sample_track_targets([p.proposal_boxes for p in proposals], targets, ref_targets, **self.sampling)

    def losses(self, logits: List[torch.Tensor], match_labels: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """
        The toolbox's match loss: per image, the sum of the cross-entropies of the RoIs with a
        label >= 0 divided by ``max(number of labels > 0, 1)`` (RoIs of new objects add to the
        sum, not to the count), then the mean over images, times ``loss_weight``. Logs the
        top-1 match accuracy of those RoIs as ``track_head/match_accuracy`` (needs an EventStorage).

        Args:
            logits: N tensors ``[R_i, 1 + M_i]`` from :meth:`forward`.
            match_labels: N int64 tensors ``[R_i]`` from :meth:`sample_targets`.
        Returns:
            ``{"loss_track": scalar}``
        """
        if len(logits) != len(match_labels):
            raise ValueError(f"MaskTrackHead.losses: {len(logits)} logit tensors but {len(match_labels)} label tensors")
        per_image, correct, counted = [], 0, 0
        for i, (x, y) in enumerate(zip(logits, match_labels)):
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"MaskTrackHead.losses: image {i} has {x.shape[0]} logit rows but {y.shape[0]} labels")
            valid = y >= 0
            x, y_valid = x[valid], y[valid]
            loss = F.cross_entropy(x, y_valid, reduction="sum") if len(y_valid) else x.sum() * 0.0
            per_image.append(loss / (y > 0).sum().clamp(min=1))
            correct += int((x.argmax(dim=1) == y_valid).sum()) if len(y_valid) else 0
            counted += len(y_valid)
        if counted:
            get_event_storage().put_scalar("track_head/match_accuracy", correct / counted)
        if not per_image:
            return {"loss_track": torch.zeros(())}
        return {"loss_track": self.loss_weight * torch.stack(per_image).mean()}
