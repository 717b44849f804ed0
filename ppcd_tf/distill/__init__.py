"""Class-aware distillation losses (attention transfer, CAM, output L1)."""
