"""The matrix workflow's own steps, run here: its shell lines and the commands they call, read from the YAML.

Only what cannot run here is stood in for: the package index (a local one offering torch 1.13.1, 2.13.0 and
7.1.2), installing nox and uv (already installed), and each version's environment (nox runs the session in this
Python, which has torch 2.13.0 and nothing else, so only the 2.13.0 job produces results). Artifacts are folders.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tools import matrix

ROOT = matrix.ROOT
WORKFLOW = ROOT / ".github" / "workflows" / "torch-matrix.yml"
HERE = "2.13.0"  # the torch this Python has
NEWEST = "7.1.2"  # the local index's newest release: no number the code could know


def jobs() -> dict:
    """The workflow's jobs as YAML gives them."""
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]


def expand(text: str, values: dict[str, str]) -> str:
    """Replace each ${{ expression }} by its value here; an expression this test does not know fails it."""

    def value(match: re.Match) -> str:
        expression = match.group(1).strip()
        assert expression in values, f"the workflow uses ${{{{ {expression} }}}}, which this test does not stand in for"
        return values[expression]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def checkout(folder: Path) -> Path:
    """A fresh checkout: the tracked tree, committed reports included, nothing run."""
    ignore = shutil.ignore_patterns(".git", ".matrix", ".nox", "results", "__pycache__", "*.egg-info", ".hypothesis")
    shutil.copytree(ROOT, folder, ignore=ignore)
    return folder


def fake_index(folder: Path) -> Path:
    """A package index offering torch 1.13.1, 2.13.0, 7.1.2 and a 7.2.0 release candidate."""
    (folder / "torch").mkdir(parents=True)
    wheels = [f"torch-{v}-cp311-cp311-manylinux_2_28_x86_64.whl" for v in ("1.13.1", HERE, NEWEST, "7.2.0rc1")]
    (folder / "torch" / "index.html").write_text("".join(f'<a href="{w}">{w}</a>\n' for w in wheels))
    return folder


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A runner's environment: this Python first on PATH, pip's configuration replaced by the local index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "NOX_", "MATRIX_")) and k != "PYTHONPATH"}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", PIP_CONFIG_FILE=os.devnull)
    env.update(PIP_INDEX_URL=fake_index(tmp_path / "index").as_uri())
    return {**env, **extra}


def run_steps(job: dict, folder: Path, env: dict[str, str], values: dict[str, str], skip=()) -> list[subprocess.CompletedProcess]:
    """Each `run:` step of `job` with bash in `folder`, its `env:` expanded; the completed processes."""
    done = []
    for step in job["steps"]:
        if "run" not in step or step.get("name") in skip:
            continue
        step_env = {k: expand(str(v), values) for k, v in step.get("env", {}).items()}
        command = ["bash", "-e", "-c", expand(step["run"], values)]
        done.append(subprocess.run(command, cwd=folder, env={**env, **step_env}, capture_output=True, text=True))
        if done[-1].returncode:
            break
    return done


def test_the_workflow_s_jobs_find_the_newest_torch_run_each_version_and_report_a_version_with_no_results_as_not_run(tmp_path):
    workflow = jobs()
    outputs = tmp_path / "github-output"
    outputs.touch()
    env = environment(tmp_path, GITHUB_OUTPUT=str(outputs))

    # versions: the lookup on the (local) index
    (versions,) = run_steps(workflow["versions"], ROOT, env, {"inputs.all && '--all' || ''": ""})
    assert versions.returncode == 0, versions.stderr
    found = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert found["list"] == f"1.13.1 {HERE} {NEWEST}" and workflow["suite"]["strategy"]["matrix"]["torch"].strip()

    # suite: one job per version; installing nox and uv is stood in for, and nox gets no environment of its own
    suite = workflow["suite"]
    install = [s for s in suite["steps"] if "run" in s and "pip install" in s["run"]]
    assert [s["run"].split() for s in install] == [["python", "-m", "pip", "install", "nox", "uv"]]
    upload = next(s["with"] for s in suite["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    artifacts = tmp_path / "artifacts"
    for version in found["list"].split():
        job = checkout(tmp_path / f"suite-{version}")
        values = {"matrix.torch": version, "inputs.pytest-args": "tests/test_versions.py"}
        done = run_steps(suite, job, {**env, "NOX_DEFAULT_VENV_BACKEND": "none"}, values, skip=[install[0]["name"]])
        assert (done[-1].returncode == 0) == (version == HERE), done[-1].stdout[-3000:] + done[-1].stderr[-3000:]
        produced = job / expand(upload["path"], values)
        shutil.copytree(produced, artifacts / expand(upload["name"], values))
        suffixes = sorted(matrix.RAW) if version == HERE else ["run.json"]  # the others say why they could not run
        assert sorted(p.name for p in produced.glob("torch-*")) == [f"torch-{version}.{suffix}" for suffix in suffixes]

    # report: a fresh checkout, the artifacts downloaded, rendered from them alone
    report = workflow["report"]
    download = next(s["with"] for s in report["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    summary = tmp_path / "summary.md"
    values = {"needs.versions.outputs.list": found["list"]}

    def render(artifact_names):
        folder = checkout(tmp_path / f"report-{len(artifact_names)}")
        for name in artifact_names:
            assert re.fullmatch(download["pattern"].replace("*", ".*"), name)
            shutil.copytree(artifacts / name, folder / download["path"], dirs_exist_ok=True)
        summary.write_text("")
        (done,) = run_steps(report, folder, {**env, "GITHUB_STEP_SUMMARY": str(summary)}, values)
        return done, summary.read_text()

    every = sorted(p.name for p in artifacts.iterdir())
    done, text = render(every)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"| verdict | **red**: asked for torch 1.13.1, the environment has {HERE}" in text and "| **green** |" in text, text[
        :2000
    ]

    done, text = render([f"matrix-torch-{HERE}"])  # the other jobs left nothing: cancelled, or never started
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"\| verdict \| \*\*not run\*\*: no results in [^|]* \| \*\*green\*\* \| \*\*not run\*\*", text), text[:2000]
    assert "matrix not green: torch 1.13.1: not run" in done.stdout and f"torch {NEWEST}: not run" in done.stdout

    done, text = render([])  # a fresh checkout with no new results
    assert done.returncode == 1 and text.count("**not run**") == 3 and "**green**" not in text, text[:2000]
