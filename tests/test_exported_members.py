import inspect
import pickle

import pydantic
import pytest

import sessiontrace

PUBLIC = [getattr(sessiontrace, name) for name in sessiontrace.__all__]
CLASSES = [member for member in PUBLIC if inspect.isclass(member)]
FUNCTIONS = [member for member in PUBLIC if inspect.isfunction(member)]


def test_all_matches_public_names():
    # pytest rewrites the asserts of a plugin's whole distribution (sessiontrace is one, by its
    # pytest11 entry point), which adds its helpers' names, starting with "@", to the module.
    public = {name for name in dir(sessiontrace) if not name.startswith(("_", "@"))}
    public.add("__version__")
    modules = {"store", "cli", "testing", "integrations", "export", "ui", "pytest_plugin"}
    assert sorted(sessiontrace.__all__) == sessiontrace.__all__
    assert set(sessiontrace.__all__) == public - modules


@pytest.mark.parametrize("member", CLASSES + FUNCTIONS, ids=lambda member: member.__name__)
def test_public_classes_and_functions_say_they_are_sessiontraces(member):
    assert member.__module__ == "sessiontrace"
    assert pickle.loads(pickle.dumps(member)) is member  # pickled by the name users import
    if inspect.isclass(member):
        assert repr(member) == f"<class 'sessiontrace.{member.__name__}'>"


def test_an_instance_pickles_under_the_public_name():
    summary = sessiontrace.TrackerSummary.model_construct()
    data = pickle.dumps(summary, protocol=0)  # protocol 0 names each class as module\nname
    assert b"sessiontrace\nTrackerSummary" in data and b"_tracker" not in data
    assert type(pickle.loads(data)) is sessiontrace.TrackerSummary


@pytest.mark.parametrize(
    "model", [c for c in CLASSES if issubclass(c, pydantic.BaseModel)], ids=lambda c: c.__name__
)
def test_pydantic_models_still_resolve_their_annotations(model):
    assert model.model_rebuild(force=True)
    assert model.model_json_schema()["title"] == model.__name__
