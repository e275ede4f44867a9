"""Inference: the artifact (never unpickled), the Predictor, ONNX export, explanations and the frozen-output cache."""
