"""Integration tests: the real action server and Rasa server as subprocesses."""
