# Training settings read by tools/lazyconfig_train_net.py (as in Detectron2's configs/common/train.py).
train = dict(
    output_dir="./output",
    # The paper starts from ImageNet weights: torchvision's, converted with tools/convert_checkpoint.py.
    init_checkpoint="",
    max_iter=90000,
    amp=dict(enabled=False),  # Automatic Mixed Precision (needs CUDA)
    ddp=dict(  # options of DistributedDataParallel
        broadcast_buffers=False,
        find_unused_parameters=False,
        fp16_compression=False,
    ),
    checkpointer=dict(period=5000, max_to_keep=100),  # options of PeriodicCheckpointer
    eval_period=0,  # 0: evaluate after the last iteration only
    log_period=20,  # iterations (and at most 20 seconds) between log lines
    seed=-1,  # of every random generator (+ the process rank), read by Detectron2's default_setup; -1: random
    device="cuda",  # tools/lazyconfig_train_net.py falls back to "cpu" without CUDA
)
