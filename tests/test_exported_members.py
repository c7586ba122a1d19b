import sessiontrace


def test_all_matches_public_names():
    public = {name for name in dir(sessiontrace) if not name.startswith("_")}
    public.add("__version__")
    modules = {"store", "cli", "testing", "integrations", "export"}
    assert sorted(sessiontrace.__all__) == sessiontrace.__all__
    assert set(sessiontrace.__all__) == public - modules
