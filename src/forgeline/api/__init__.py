"""The server (``forgeline serve``): an authenticated JSON API over the runtime, a live
event stream and the dashboard. ``forgeline.api.app.create_app(settings)`` builds it;
importing this package loads no web framework (the settings use ``api.config``)."""
