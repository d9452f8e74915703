"""Agent quality: the full pipeline against a single shot, judged by hidden tests
(``python -m benchmarks.agents``; see ``__main__``)."""
