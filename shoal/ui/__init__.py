"""The web page of the cluster: nodes as columns, their tasks as cards, updated live (docs/web-ui.md)."""
