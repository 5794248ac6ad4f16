"""Knowledge distillation: loss registry (losses.py), training loop (trainer.py), pipeline step (step.py)."""
