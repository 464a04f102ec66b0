from .seq_nms import RESCORE_MODES, seq_nms, seq_nms_arrays

__all__ = ["seq_nms", "seq_nms_arrays", "RESCORE_MODES"]
