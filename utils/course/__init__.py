"""The course machinery: the syllabus, the notebook generator, grading (one notebook, a whole class),
skipping ahead with the reference solution, and the generated parts of the teachers' guide.

Commands: ``python -m utils.course.build_notebooks``, ``python -m utils.course.grading NOTEBOOK``,
``python -m utils.course.grade_class FOLDER``, ``python -m utils.course.syllabus``,
``python -m utils.course.teachers_guide``.
"""
