"""Runs of the workspace's own code: its test suite, a smoke run, a web preview.

These sit between the spawner (``sandbox``, how any process runs, isolated) and the stages
(``pipeline``, which decide when to run what): ``testrun`` runs pytest and reads its JUnit
report, ``preview`` smoke-runs or starts the program, ``preview_record`` keeps a started
preview findable by id from another process, and ``usage`` turns what a run used into what
the events record. The patch engine's validator (``executors.validation``) and the terminal
tool (``tools.terminal``) use them too, so none of them depends on ``pipeline``.
"""
