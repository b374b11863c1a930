"""What a wheel holds: every package folder is listed in pyproject.toml (they are listed by
hand, see there), the tutorial ships as minicnn.examples, and the page's files as package data.
.ci/wheel-check builds the wheel and runs the commands from it."""

import pytest
from conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")


def pyproject():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    setuptools = pyproject()["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(REPO_ROOT).parts)
               for init in (REPO_ROOT / "minicnn").rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk | {"minicnn.examples"}, (
        "add the new package to [tool.setuptools] packages in pyproject.toml")


def test_the_tutorial_is_the_examples_folder_installed_as_a_package():
    setuptools = pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"minicnn.examples": "examples"}
    assert (REPO_ROOT / "examples" / "__init__.py").is_file()
    # One copy: nothing named mnist_cnn.py inside minicnn/ itself.
    assert not list((REPO_ROOT / "minicnn").rglob("mnist_cnn.py"))


def test_page_files_are_package_data():
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["minicnn"]
    web = REPO_ROOT / "minicnn" / "web"
    shipped = {path.name for pattern in patterns for path in REPO_ROOT.glob(f"minicnn/{pattern}")}
    assert shipped == {path.name for path in web.iterdir() if path.is_file()}


def test_dependencies_and_extras():
    project = pyproject()["project"]
    names = [spec.split(">")[0].split("=")[0] for spec in project["dependencies"]]
    assert "h5py" in names  # model.save("m.keras")
    extras = project["optional-dependencies"]
    assert [spec.split(">")[0] for spec in extras["onnx"]] == ["onnx"]
    test = {spec.split(">")[0] for spec in extras["test"]}
    assert {"keras", "jax", "onnx", "onnxruntime"} <= test
    assert not any(spec.startswith(("tensorflow", "torch")) for spec in extras["test"])
