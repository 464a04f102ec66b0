#!/usr/bin/env python
"""
Train or evaluate the video detectors of this project, in Detectron2's train_net.py conventions:

    python tools/train_net.py --config-file configs/ImageNetVID/troi_R_101_DC5.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model_final.pth
    python tools/train_net.py --config-file ... --num-gpus 2      # processes; gloo on CPU
    python tools/train_net.py --import my_datasets --config-file configs/toy/troi.yaml \\
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.ROI_HEADS.NUM_CLASSES 4

--import MODULE imports a module that registers your datasets first, in every process
(docs/custom_data.md).

Safeguards (docs/safeguards.md): the config is checked before anything runs; OUTPUT_DIR is locked
against a second run; training into an OUTPUT_DIR that holds a finished run needs --resume
(continue it) or --overwrite; --eval-only needs DATASETS.TEST; the weights
loaded must fit the model (--eval-only and resuming: every parameter; training: every parameter
outside the backbone, unless the file holds backbone parameters only, as ImageNet-pretrained
weights do), unless --allow-partial-weights.
"""

import detectron2.utils.comm as comm
from detectron2.evaluation import verify_results

from temporal_roi_align.checkpoint import VideoCheckpointer
from temporal_roi_align.engine import (
    VideoTrainer,
    argument_parser,
    errors_as_messages,
    import_modules,
    launch,
    setup_cfg,
)


def parse_args(argv=None):
    return argument_parser(__doc__).parse_args(argv)


def main(args):
    import_modules(args.modules)  # in every process of --num-gpus N
    cfg = setup_cfg(args.config_file, args.opts, args=args)
    if args.eval_only:
        model = VideoTrainer.build_model(cfg)
        checkpointer = VideoCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        checkpointer.check_weights(evaluating=True, allow_partial=args.allow_partial_weights)
        results = VideoTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=args.resume, allow_partial_weights=args.allow_partial_weights)
    return trainer.train()


if __name__ == "__main__":
    args = parse_args()
    print("Command Line Args:", args)
    import_modules(args.modules)  # a module that cannot be imported stops the run once, before any process starts
    with errors_as_messages():
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
