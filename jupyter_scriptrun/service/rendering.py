"""An executed notebook as HTML (nbconvert): a whole page for the REST API and a browser,
a light fragment for a run's card. Imported only when a notebook is shown (~1.5 s)."""

from __future__ import annotations

import html

from jupyter_scriptrun.schemas import load_jsonschema


def notebook_page(content: bytes) -> str:
    """The notebook as a standalone page, in JupyterLab's look (inputs, outputs, images)."""
    load_jsonschema()  # before nbformat does (see schemas.py)
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    return str(body)


FRAGMENT_CSS = (
    "<style>body{font:13px/1.4 system-ui,sans-serif;margin:8px;color:#222;background:#fff}"
    "pre{margin:0;white-space:pre-wrap}.input_area pre{background:#f5f5f5;padding:4px}"
    ".prompt{display:none}.cell{margin:6px 0}.output_error pre{color:#b00}"
    "img{max-width:100%}table{border-collapse:collapse}td,th{padding:2px 8px}</style>"
)


def notebook_frame(content: bytes, height: int = 420) -> str:
    """The notebook in a sandboxed frame for a card: nbconvert's basic fragment (no
    script runs in it, and it cannot reach the page around it)."""
    load_jsonschema()
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(notebook)
    document = f"<!doctype html><meta charset='utf-8'>{FRAGMENT_CSS}{body}"
    return (
        f"<iframe sandbox srcdoc='{html.escape(document, quote=True)}' "
        f"style='width:100%;height:{height}px;border:1px solid rgba(127,127,127,.3)'></iframe>"
    )
