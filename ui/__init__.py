"""The web app of qa (``qa serve``); the only part of the project that uses Gradio."""

import os

# Set before Gradio is imported: no usage reports or version checks over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue otherwise rebuilds a pandas summary of its last 10,000 events after every event, for a
# monitoring page qa never enables: a fifth of the server's CPU under load (bench.load, profiled).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "256")
