"""Load generators and benchmark runners for logsync (see ``loadtest/README.md``)."""
