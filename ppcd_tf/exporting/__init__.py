"""Export and serving: the export pipeline, the SavedModel and its served
graph, ONNX and TFLite conversion and runners."""
