"""Compressed models written in other runtimes' formats, exactly or not at all (``llmpress export``)."""
