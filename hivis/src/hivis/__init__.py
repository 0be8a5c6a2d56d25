"""hivis: lossless speculative decoding for vision-language models."""
