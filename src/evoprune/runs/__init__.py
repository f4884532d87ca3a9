"""One run from images to a results folder: its configuration, its store and the experiment."""
