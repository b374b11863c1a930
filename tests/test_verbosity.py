"""What fit, evaluate and predict print for verbose 0, 1, 2 and 'auto', as Keras 3 prints it,
and History.params."""

import io
import re

import pytest
from test_models import small_model, toy_data

from minicnn import callbacks

TIME = r"\d+(s|ms|us)/step"
VALUE = r"\d\.\d{4}(e[+-]\d+)?"  # Keras writes values <= 1e-3 (0 included) as 0.0000e+00


def test_fit_verbose_2_prints_one_line_per_epoch_as_keras(rng, capsys):
    x, y = toy_data(rng, 40)
    model = small_model()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=2, validation_data=(x, y))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    # Keras 3: "3/3 - 0s - 12ms/step - accuracy: ... - loss: ... - val_accuracy: ..."
    pattern = (rf"^3/3 - \d+s - {TIME} - accuracy: {VALUE} - loss: {VALUE} - "
               rf"val_accuracy: {VALUE} - val_loss: {VALUE}$")
    assert re.match(pattern, lines[1]), lines[1]
    assert f"loss: {history.history['loss'][0]:.4f}" in lines[1]
    assert history.params == {"verbose": 2, "epochs": 2, "steps": 3}


def test_verbose_auto_is_1_and_history_keeps_what_was_given(rng, capsys):
    x, y = toy_data(rng, 40)
    model = small_model()
    history = model.fit(x, y, epochs=2, batch_size=32)  # verbose='auto'
    auto = capsys.readouterr().out
    assert history.params == {"verbose": "auto", "epochs": 2, "steps": 2}
    model.fit(x, y, epochs=2, batch_size=32, verbose=1)
    ones = capsys.readouterr().out
    shape = re.compile(rf"\d+ms|\d+us|\d+s|{VALUE}")
    assert shape.sub("#", auto) == shape.sub("#", ones)
    assert re.search(rf"^2/2 ━{{20}} \d+s {TIME} - accuracy: ", auto, re.M)


def test_one_epoch_prints_no_epoch_line_as_keras(rng, capsys):
    x, y = toy_data(rng, 20)
    small_model().fit(x, y, epochs=1, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("1/1 - ")


def test_evaluate_and_predict_verbosity(rng, capsys):
    x, y = toy_data(rng, 40)
    model = small_model()
    model.evaluate(x, y, verbose=2)
    line, = capsys.readouterr().out.splitlines()
    assert re.match(rf"^2/2 - \d+s - {TIME} - accuracy: {VALUE} - loss: {VALUE}$", line)
    model.evaluate(x, y, verbose=1)
    assert re.match(rf"^2/2 ━{{20}} \d+s {TIME} - accuracy: ", capsys.readouterr().out)
    model.predict(x, verbose=2)
    assert re.match(rf"^2/2 - \d+s - {TIME}\n$", capsys.readouterr().out)
    model.predict(x)  # 'auto': the bar, no metrics
    assert re.match(rf"^2/2 ━{{20}} \d+s {TIME}\n$", capsys.readouterr().out)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match=r"verbose must be 0, 1, 2 or 'auto', got 3"):
        model.predict(x, verbose=3)


def test_time_per_step_leaves_out_the_first_step(monkeypatch):
    """Numba compiles during the first step; Keras's estimate leaves that step out."""
    clock = iter([0.0, 10.0, 11.0, 12.0, 13.0, 14.0])  # start, then after steps 1..4, finish
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    bar = callbacks.Progbar(4, verbose=2, stream=stream)
    for step in range(1, 5):
        bar.update(step, {"loss": 0.5})
    bar.update(4, {"loss": 0.25}, finished=True)
    assert stream.getvalue() == "4/4 - 14s - 1s/step - loss: 0.2500\n"


def test_a_progbar_logger_given_by_the_user_replaces_the_default(rng, capsys):
    x, y = toy_data(rng, 40)
    logger = callbacks.ProgbarLogger()
    small_model().fit(x, y, epochs=2, batch_size=20, verbose=2, callbacks=[logger])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and logger.verbose == 2 and logger.steps == 2
    assert lines[1].startswith("2/2 - ")


def test_progress_values_format_as_keras():
    stream = io.StringIO()
    bar = callbacks.Progbar(1, verbose=1, stream=stream)
    bar.update(1, {"loss": 0.0005, "accuracy": 0.5}, finished=True)
    assert stream.getvalue().endswith(" - accuracy: 0.5000 - loss: 5.0000e-04\n")


def test_the_bar_redraws_only_in_a_running_notebook_kernel(monkeypatch):
    import ipykernel  # noqa: F401  (imported, as nbclient does, but no kernel runs here)
    assert not callbacks.Progbar(2, stream=io.StringIO()).dynamic

    class Shell:
        kernel = object()

    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert callbacks.Progbar(2, stream=io.StringIO()).dynamic
