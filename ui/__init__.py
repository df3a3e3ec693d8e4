"""The Gradio web app; it never touches torch (core does).

layout: the page, declared top-down, and its events wired · handlers: the event handlers · view: how a
handler's snapshots update the page's components · request: one request from the form to its run · run:
the run as it fills in · render: pure helpers from a run to markdown, HTML, tables, chart data and JSON ·
models: the loaded models and the errors a user reads · gpu: ZeroGPU's `spaces.GPU`, a no-op elsewhere.
"""
