"""
Rules for mmtracking's (mmtrack 0.14) FGFA / DFF parts: its FlowNetSimple (``motion.*``)
-> :class:`~temporal_roi_align.modeling.FlowNetSimple`, its EmbedAggregator (``aggregator.*``)
-> :class:`~temporal_roi_align.modeling.FgfaAggregator`. Pure renames: mmtrack wraps every
conv in a ConvModule (``<name>.conv.weight``), and numbers the second conv of an encoder level
``conv<k>.1`` where FlowNet names it ``conv<k>_1``.

| mmtrack (``motion.``)                           | this project (``flow_net.``)      |
|-------------------------------------------------|-----------------------------------|
| ``conv<k>.0.conv.{weight,bias}``, k = 1..6      | ``conv<k>.{weight,bias}``         |
| ``conv<k>.1.conv.{weight,bias}``, k = 3..6      | ``conv<k>_1.{weight,bias}``       |
| ``deconv<k>.conv.weight``, k = 2..5             | ``deconv<k>.weight``              |
| ``predict_flow<k>.conv.weight``, k = 3..6       | ``predict_flow<k>.weight``        |
| ``predict_flow.conv.weight``                    | ``predict_flow2.weight``          |
| ``upsample_flow<k>.conv.weight``, k = 2..5      | ``upsample_flow<k+1>to<k>.weight``|
| ``aggregator.embed_convs.<i>.conv.{weight,bias}`` | ``aggregator.embed_convs.<i>.{weight,bias}`` |
"""

from typing import List

from .common import Rule

__all__ = ["flownet_rules", "fgfa_aggregator_rules"]


def flownet_rules(source_prefix: str = r"motion\.", target_prefix: str = "flow_net.") -> List[Rule]:
    """
    Rules for mmtrack's FlowNetSimple under ``source_prefix`` (a regex; ``motion\\.`` in its
    FGFA / DFF checkpoints, "" in a checkpoint of the flow network alone), to a
    :class:`FlowNetSimple` under ``target_prefix``.
    """
    p, t = source_prefix, target_prefix
    return [
        Rule(rf"{p}conv([1-6])\.0\.conv\.(weight|bias)", lambda m: f"{t}conv{m[1]}.{m[2]}"),
        Rule(rf"{p}conv([3-6])\.1\.conv\.(weight|bias)", lambda m: f"{t}conv{m[1]}_1.{m[2]}"),
        Rule(rf"{p}deconv([2-5])\.conv\.weight", lambda m: f"{t}deconv{m[1]}.weight"),
        Rule(rf"{p}predict_flow([3-6])\.conv\.weight", lambda m: f"{t}predict_flow{m[1]}.weight"),
        Rule(rf"{p}predict_flow\.conv\.weight", lambda m: f"{t}predict_flow2.weight"),
        Rule(
            rf"{p}upsample_flow([2-5])\.conv\.weight",
            lambda m: f"{t}upsample_flow{int(m[1]) + 1}to{m[1]}.weight",
        ),
    ]


def fgfa_aggregator_rules(source_prefix: str = r"aggregator\.", target_prefix: str = "aggregator.") -> List[Rule]:
    """Rules for mmtrack's EmbedAggregator under ``source_prefix`` (a regex), without norm
    layers (its FGFA configs have none), to a :class:`FgfaAggregator` under ``target_prefix``."""
    return [
        Rule(
            rf"{source_prefix}embed_convs\.(\d+)\.conv\.(weight|bias)",
            lambda m: f"{target_prefix}embed_convs.{m[1]}.{m[2]}",
        )
    ]
