"""The tools agents call: ``terminal`` (allowlisted commands run through the spawner, in
the workspace's venv, each kept as a ``tool.command``)."""
