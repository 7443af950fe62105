"""The CI gate runs exactly the set-up and test commands the README tells people to run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The lines of the first ```bash block under '## Set up and run'."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up and run", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's 'Set up and run' section has no bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_names_one_install_command_and_pytest_n_auto():
    commands = readme_commands()
    assert len(commands) == 2 and commands[1] == "pytest -n auto", commands


def test_the_ci_gate_runs_every_readme_command_verbatim():
    gate = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    missing = [command for command in readme_commands() if not any(line.startswith(command) for line in gate)]
    assert not missing, f".ci/run does not run these README commands: {missing}"
