"""Lessons 4 and 8, the longest, checked as test_lessons.py checks every lesson, in a file of their own so that the
test processes run them beside the others."""

import pytest
from test_lessons import CATALOGUE, LONG, check_notebook


@pytest.mark.parametrize(
    "lesson", [lesson for lesson in CATALOGUE if lesson.number in LONG], ids=lambda lesson: lesson.path.stem
)
def test_a_long_lesson_runs_as_a_notebook_a_wrong_answer_fails_its_check_and_a_student_is_not_answered_yet(
    lesson, fast_mode, tmp_path
):
    check_notebook(lesson, tmp_path)
