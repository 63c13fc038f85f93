"""Application layer: each module is one use case written as a checklist of named steps."""
