"""The world's synthetic data: scenes and their rendering (``scenes``), questions and answers
(``tasks``), the world tokenizer and chat format (``tokenizer``), samples, splits and the
LLaVA-JSONL export (``dataset``)."""
