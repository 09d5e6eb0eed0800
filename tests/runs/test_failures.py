"""How runs fail: user_error (the user's traceback) versus system_error (killed, out of memory)."""

from tests.conftest import Project, model_source


def test_an_exception_in_model_code_is_a_user_error_with_the_users_traceback(
    model_project: Project,
):
    result = model_project.mllib("train", "model.py", "--fail_in=train")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.output
    assert 'model.py", line' in result.output and "in train" in result.output
    assert "ValueError: asked to fail in train" in result.output
    assert "mllib/worker" not in result.output and "importlib" not in result.output  # no internals
    run = model_project.last_run()
    assert (run["status"], run["failure_class"]) == ("failed", "user_error")
    assert run["error"] == "ValueError: asked to fail in train"
    assert run["model_version"] is None


def test_evaluate_returning_a_non_number_is_a_clear_user_error(model_project: Project):
    result = model_project.mllib("train", "model.py", "--evaluate", "--fail_in=evaluate")
    assert result.returncode == 1
    run = model_project.last_run()
    assert run["failure_class"] == "user_error"
    assert "'accuracy': 'high'" in run["error"] and "not a number" in run["error"]


def test_a_worker_killed_with_sigkill_is_a_system_error(project: Project):
    project.write("model.py", model_source("behaviours"))
    result = project.mllib("train", "model.py", "--behaviour=sigkill")
    assert result.returncode == 3, result.output
    run = project.last_run()
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "SIGKILL" in run["error"]
    assert "about to be killed" in project.mllib("runs", "logs", run["id"]).stdout


def test_running_out_of_memory_is_a_system_error(project: Project):
    project.write("model.py", model_source("behaviours"))
    assert project.mllib("train", "model.py", "--behaviour=memory").returncode == 3
    run = project.last_run()
    assert run["failure_class"] == "system_error" and "Out of memory" in run["error"]


def test_sys_exit_in_model_code_is_a_user_error_that_says_so(project: Project):
    project.write("model.py", model_source("behaviours"))
    assert project.mllib("train", "model.py", "--behaviour=exit").returncode == 1
    assert "called sys.exit(3)" in project.last_run()["error"]


def test_an_import_error_in_model_py_is_a_user_error(project: Project):
    project.write("model.py", "import not_a_real_package\n" + model_source("behaviours"))
    assert project.mllib("train", "model.py").returncode == 1
    run = project.last_run()
    assert run["failure_class"] == "user_error" and "not_a_real_package" in run["error"]


def test_an_errors_hint_is_indented_under_it_in_the_summary_and_in_show(model_project: Project):
    result = model_project.mllib("train", "model.py", "--evaluate", "--fail_in=evaluate")
    hint = "Every value of evaluate()'s dict must be a number."
    summary = result.stderr.splitlines()
    (first,) = [i for i, line in enumerate(summary) if line.startswith("  user_error: ")]
    assert summary[first + 1] == " " * len("  user_error: ") + hint
    shown = model_project.mllib("runs", "show", model_project.last_run()["id"]).stdout.splitlines()
    (first,) = [i for i, line in enumerate(shown) if line.startswith("  error:    ")]
    assert shown[first + 1] == " " * len("  error:    ") + hint
