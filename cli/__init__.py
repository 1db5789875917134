"""`attrib`: one command line for integrators (import, attribute, works, jobs over HTTP) and admins
(keys, retrain, rollback, status, sweep on the database and trainer). No torch unless a command needs it."""
