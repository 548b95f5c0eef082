"""Study code per notebook: parameters, tasks, tables and figures a notebook calls."""
