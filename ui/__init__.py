"""The web app of qa (``qa serve``); the only part of the project that uses Gradio."""

import os

# Set before Gradio is imported: no usage reports or version checks over the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
