"""Fine-tuning Real-ESRGAN on one's own images: data, losses and the training loop."""
