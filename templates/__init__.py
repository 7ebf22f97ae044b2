"""The HTML report's jinja2 templates and stylesheet, shipped as package data."""
