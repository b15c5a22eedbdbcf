"""The HTTP server (metrics, probes, API) and the live status page."""
