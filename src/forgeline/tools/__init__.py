"""The tools agents call and people use: ``terminal`` (allowlisted commands run through
the spawner, in the workspace's venv, each kept as a ``tool.command``), ``search``,
``fetch`` and ``research`` (a stage run's are its ``toolkit.Toolkit``), ``github``,
``mail`` and ``report``. Each reports every call to a ``calls.Recorder`` as a ``tool.*``
payload."""
