"""Knowledge distillation: loss registry (losses/), training loop (trainer.py), pipeline step (step.py)."""
