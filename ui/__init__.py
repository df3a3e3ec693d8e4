"""The Gradio web app: layout (ui.layout), event handlers (ui.handlers), display helpers (ui.render)."""
