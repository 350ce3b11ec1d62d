"""The README's first screen: two set-up commands that match the repository and CI."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks():
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def test_the_first_two_commands_install_and_run_the_main_lesson_and_the_tests():
    main, tests = bash_blocks()[:2]
    assert 'pip install -e ".[lessons]"' in main
    lesson = re.search(r"python (lessons/\S+\.py)", main).group(1)
    assert (ROOT / lesson).is_file(), f"the README's main command runs {lesson}, which does not exist"
    assert lesson == "lessons/07_training_with_and_without_bn.py", "the main job is lesson 7"
    assert 'pip install -e ".[test]" && pytest' in tests


def test_ci_runs_the_readmes_test_command():
    test_command = bash_blocks()[1].split("&& ", 2)[-1]  # after the venv and its activation
    assert test_command == 'pip install -e ".[test]" && pytest'
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_every_image_and_lesson_the_readme_names_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images, "the README should show lesson 7's plot"
    for image in images:
        assert (ROOT / image).is_file(), f"README shows {image}, which is missing"
    for lesson in set(re.findall(r"`(\d\d_\w+\.py)`", README)):
        assert (ROOT / "lessons" / lesson).is_file(), f"README lists lessons/{lesson}, which is missing"
    listed = set(re.findall(r"`(\d\d_\w+\.py)`", README))
    actual = {p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py")}
    assert actual <= listed, f"lessons missing from the README's index: {sorted(actual - listed)}"
