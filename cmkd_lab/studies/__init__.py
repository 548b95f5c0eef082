"""Studies: :mod:`.runner` (one way to run a study: tasks in, a :class:`~.runner.StudyRun` out) and
the study code per notebook: parameters, tasks, tables and figures a notebook calls."""
