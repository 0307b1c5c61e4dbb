"""The saturation study: the procedural upstream task, few-shot downstream sets and probes."""
