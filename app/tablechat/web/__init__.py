"""Web front ends: the Gradio UI and the FastAPI server. Clients of the core, nothing more."""
