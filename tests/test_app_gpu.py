"""ZeroGPU: every handler that runs the model is decorated with spaces.GPU and moves the model to CUDA
inside the call; tested with a stand-in for the `spaces` package (no GPU, no Space needed)."""

from __future__ import annotations

import pytest
import torch

from app.gpu import gpu_handler


class FakeSpaces:
    """Records what spaces.GPU decorates, and calls through."""

    def __init__(self):
        self.decorated: list[str] = []

    def GPU(self, fn):  # noqa: N802 - the name `spaces` uses
        self.decorated.append(fn.__name__)
        return fn


class FakeModel:
    def __init__(self, log):
        self.device, self.log = torch.device("cpu"), log

    def to(self, device):
        self.log.append(f"to {device}")
        self.device = torch.device(device, 0) if device == "cuda" else torch.device(device)
        return self


def test_the_model_moves_to_cuda_inside_the_decorated_call(monkeypatch):
    log: list[str] = []
    spaces = FakeSpaces()
    model = FakeModel(log)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def search(query: str) -> str:
        log.append(f"search {query} on {model.device}")
        return query.upper()

    wrapped = gpu_handler(search, model, spaces)
    assert spaces.decorated == ["search"] and log == []  # nothing moves at start-up
    assert wrapped("dog") == "DOG"
    assert log == ["to cuda", "search dog on cuda:0"]
    wrapped("cat")
    assert log[-1] == "search cat on cuda:0" and log.count("to cuda") == 1


def test_without_spaces_handlers_are_unchanged(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def fn():
        return 1

    assert gpu_handler(fn, FakeModel([])) is fn


def test_zero_gpu_loads_the_model_on_the_cpu(monkeypatch):
    from app.config import from_args
    from app.startup import _device

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device(from_args([], environ={})) == "cpu"
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert _device(from_args([], environ={})) == "cuda"


@pytest.fixture(scope="module")
def startup_state(tmp_path_factory, tiny_model):
    from shapes_library import make_shapes_library

    from app.config import from_args
    from app.startup import start

    root = tmp_path_factory.mktemp("gpu")
    lib, _ = make_shapes_library(root, tiny_model, num=3)
    return start(from_args(["--library", str(lib), "--cache-dir", str(root / "cache")], environ={}), progress=None)


def test_every_handler_that_runs_the_model_is_decorated(startup_state):
    from app.ui import build_demo

    spaces = FakeSpaces()
    demo = build_demo(startup_state, spaces=spaces)
    # text encoding (search, select, similarity, the API's search_videos and describe_video) and the
    # video tower (describe, describe_upload)
    assert sorted(set(spaces.decorated)) == sorted(
        ["search", "select", "select_moment", "describe", "describe_upload", "similarity", "search_videos",
         "describe_video"])
    undecorated = {fn.fn.__name__ for fn in demo.fns.values() if fn.fn is not None} - set(spaces.decorated)
    # the rest only show stored files or fill an input (Gradio's load_example)
    assert undecorated <= {"clear_selection", "select_library", "select_similar", "library_info", "load_example",
                           "page_galleries"}, \
        undecorated
