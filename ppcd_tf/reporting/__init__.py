"""Reports: the teacher-vs-student report and sample grids."""
