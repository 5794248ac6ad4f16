"""edgedistill-agent: measures edgedistill artifacts on the device it runs on and reports back.

Light on purpose: httpx, numpy and whichever runtime the device has (onnxruntime, ai-edge-litert),
imported only when a model of that kind is run. It never imports torch or the service/worker code.
"""

__version__ = "0.1.0"
