"""Web pages (Jinja2 templates and static assets) served by the API app."""
