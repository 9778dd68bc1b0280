"""Code shared by the controller and the workers: settings, job specs and the store."""
