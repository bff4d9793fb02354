"""Safety alignment: preference pairs from look-ahead, a reward model and preference-optimised LoRA adapters."""
