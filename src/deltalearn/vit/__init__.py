"""What the MAE and the MCN share about plain ViT encoders: reading their checkpoints."""
