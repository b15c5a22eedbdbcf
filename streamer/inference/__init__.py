"""The engine process: owns the accelerator, batches windows across cameras, returns scores."""
