"""The course's own tests: they prove the checks, the grader and the generator can fail."""
