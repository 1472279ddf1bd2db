"""Where the data lives: URLs, engine setup per dialect, files, and the transaction runner."""
