"""The eight classroom lessons, as jupytext percent scripts; shipped in the wheel as tinygrok.lesson_files and
read through tinygrok.lab.lessons."""
