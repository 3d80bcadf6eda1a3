"""The Jupyter front ends: magics, the widget panel, the jupyter-server extension and its
REST API, and reading a remote server's history."""
