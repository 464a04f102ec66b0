#!/usr/bin/env python
"""
Convert third-party checkpoints to this project's models (docs/converting_checkpoints.md).

    # mmtracking's (mmtrack's) ImageNet VID models (SELSA, SELSA + TRoI, FGFA, DFF, single-frame)
    # -> MODEL.WEIGHTS:
    python tools/convert_checkpoint.py mmtrack \\
        selsa_troialign_faster_rcnn_r50_dc5_7e_imagenetvid_20210820_162714-939fd657.pth \\
        output/selsa_troi_R_50_DC5_mmtrack.pth \\
        --config-file configs/ImageNetVID/converted/selsa_troi_R_50_DC5.yaml

    # mmtrack's YouTube-VIS MaskTrack R-CNN models (recognised by their track_head.* tensors):
    python tools/convert_checkpoint.py mmtrack \\
        masktrack_rcnn_r50_fpn_12e_youtubevis2019_20211022_194830-6ca6b91e.pth \\
        output/masktrack_R_50_FPN_ytvis2019_mmtrack.pth \\
        --config-file configs/YouTubeVIS/converted/masktrack_R_50_FPN_ytvis2019.yaml

    # torchvision ImageNet ResNet / ResNeXt -> backbone weights to start training from:
    python tools/convert_checkpoint.py torchvision resnet50-0676ba61.pth output/R-50.pth \\
        --config-file configs/ImageNetVID/selsa_troi_R_50_DC5.yaml

    # FGFA / DFF: mmtrack's pretrained flow network added to them (--base):
    python tools/convert_checkpoint.py mmtrack flownet_simple.pth output/R-50_flownet.pth \\
        --base output/R-50.pth --config-file configs/ImageNetVID/fgfa_R_50_DC5.yaml

The config gives the target model: every tensor is checked against it. Strict by default: every
source key converted or explicitly ignored, every target key filled, shapes equal, and the config
preprocessing images as the source's models do.
"""

import argparse
import sys
from collections import OrderedDict

from temporal_roi_align.checkpoint import (
    ConversionError,
    ConversionReport,
    convert_mmtrack_checkpoint,
    convert_torchvision_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from temporal_roi_align.checkpoint.common import state_dict_of
from temporal_roi_align.engine import HelpFormatter, setup_cfg

CONVERTERS = {
    "mmtrack": (
        convert_mmtrack_checkpoint,
        "an mmtracking 0.x (mmtrack) ImageNet VID or YouTube-VIS MaskTrack R-CNN checkpoint",
    ),
    "torchvision": (convert_torchvision_checkpoint, "a torchvision ImageNet ResNet / ResNeXt checkpoint"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="source_format", required=True, metavar="{mmtrack,torchvision}")
    for name, (_, what) in CONVERTERS.items():
        command = commands.add_parser(name, help=f"convert {what}", formatter_class=HelpFormatter)
        command.add_argument("source", help=f"{what} (.pth)")
        command.add_argument("output", nargs="?", help="converted checkpoint to write (.pth)")
        command.add_argument("--config-file", required=True, help="config of the target model")
        command.add_argument("--dry-run", action="store_true", help="convert and report, write nothing")
        command.add_argument(
            "--no-strict",
            action="store_true",
            help="leave out unmatched keys and accept config differences (listed in the report)",
        )
        command.add_argument(
            "--base",
            metavar="CONVERTED.pth",
            help="write the tensors of this converted file too (e.g. the torchvision backbone, to which a "
            "pretrained flow network is added); a name in both files is an error",
        )
        command.add_argument("-v", "--verbose", action="store_true", help="list every converted tensor")
        command.add_argument(
            "--unsafe-pickle",
            action="store_true",
            help="load with torch.load(weights_only=False): runs code in the file, only for trusted files",
        )
    args = parser.parse_args(argv)
    if args.output is None and not args.dry_run:
        parser.error("give an output file, or --dry-run")
    return args


def with_base(state_dict, base: str, report: ConversionReport, unsafe_pickle: bool):
    """The tensors of the converted file ``base`` followed by ``state_dict``."""
    base_tensors, _ = state_dict_of(load_checkpoint(base, unsafe_pickle=unsafe_pickle), base, ("model",))
    both = [name for name in state_dict if name in base_tensors]
    if both:
        raise ConversionError(f"{base}: --base has tensors that the conversion gives too: {', '.join(both[:8])}")
    report.notes.append(f"added to the {len(base_tensors)} tensors of {base}")
    return OrderedDict(list(base_tensors.items()) + list(state_dict.items()))


def main(argv=None) -> int:
    args = parse_args(argv)
    convert, _ = CONVERTERS[args.source_format]
    cfg = setup_cfg(args.config_file)
    try:
        checkpoint = load_checkpoint(args.source, unsafe_pickle=args.unsafe_pickle)
        state_dict, report = convert(checkpoint, cfg, source=args.source, strict=not args.no_strict)
        if args.base:
            state_dict = with_base(state_dict, args.base, report, args.unsafe_pickle)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.format(verbose=args.verbose))
    if args.dry_run:
        print("dry run: nothing written")
    else:
        save_checkpoint(args.output, state_dict, author=f"tools/convert_checkpoint.py {args.source_format}")
        print(f"wrote {args.output} ({len(state_dict)} tensors) for {args.config_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
