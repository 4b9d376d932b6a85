"""Coverage-guided fuzzing (atheris) of every decoder and handler that takes untrusted bytes."""
