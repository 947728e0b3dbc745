"""One run on disk: its directory (every file name, atomic writes, locks, resume: runs), the training loop that
fills it (train), the geometry computed from what it recorded (geometry), its figures (plots), and the shipped
grok forecaster that replays over a run (grok_forecaster)."""
