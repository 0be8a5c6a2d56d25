"""Drafter training: LLaVA-style records, target features, stage-1 and stage-2 (HiViS
multi-step self-feedback) training."""
