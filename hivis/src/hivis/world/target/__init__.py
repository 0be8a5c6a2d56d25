"""The world's tiny target and its trainer: the LLaVA model (``model``), auxiliary heads
(``aux_heads``), the look-up loss (``lookup``), question packing (``packing``), the training
run (``config``, ``schedule``, ``batches``, ``steps``, ``checkpoint``, ``train``) and its
evaluation (``evaluate``, ``aux_eval``)."""
